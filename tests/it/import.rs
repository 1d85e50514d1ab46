//! CSV import and export through the console: a file with bad rows is reported line by line
//! and nothing is imported; the corrected file imports every row; sending it again imports
//! nothing twice; exports read back with the same columns; roles enforced.

use axum::http::{Method, StatusCode};
use domain::identity::Role;
use serde_json::json;
use st_tests::{Reply, TestApp};

async fn upload(
    app: &TestApp,
    who: Option<&st_tests::Person>,
    kind: &str,
    mode: &str,
    csv: &str,
) -> Reply {
    let who = Some(who.unwrap_or(&app.owner));
    let page = app.send_as(who, Method::GET, "/import", None, &[]).await;
    let token = page.csrf_cookie();
    let boundary = "----st-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{token}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\n{kind}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{kind}.csv\"\r\nContent-Type: text/csv\r\n\r\n{csv}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"mode\"\r\n\r\n{mode}\r\n\
         --{boundary}--\r\n"
    );
    app.send_body_as(
        who,
        Method::POST,
        "/import",
        &body,
        &[
            (
                "content-type",
                &format!("multipart/form-data; boundary={boundary}"),
            ),
            ("cookie", &format!("st_csrf={token}")),
        ],
    )
    .await
}

#[tokio::test]
async fn a_bad_file_is_reported_by_line_and_nothing_is_imported_until_it_is_clean() {
    let app = TestApp::new().await;
    let created = app
        .request(
            Method::POST,
            "/api/v1/companies",
            Some(&json!({"name": "Hooli"}).to_string()),
        )
        .await;
    let hooli = created.json()["id"].as_str().unwrap().to_owned();
    app.request(
        Method::POST,
        &format!("/api/v1/companies/{hooli}/contacts"),
        Some(r#"{"name": "Gavin Belson", "email": "gavin@hooli.test"}"#),
    )
    .await;
    app.settle().await;
    let before = app.db.count("SELECT count(*) FROM events").await;

    let bad = "company,name,category,serial_number,mac_address,contact\n\
               Hooli,Nucleus server,server,SRV-1,00:11:22:33:44:55,Gavin Belson\n\
               Pied Piper,Laptop,laptop,,,\n\
               Hooli,,toaster,,zz,Nobody Here\n\
               Hooli,Box,network,SN-2,,gavin@hooli.test\n";
    let report = upload(&app, None, "assets", "import", bad).await;
    assert_eq!(
        report.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{} {:?}",
        report.text,
        report.headers
    );
    for expected in [
        "<td>3</td><td>company</td><td>no company is called “Pied Piper”</td>",
        "<td>4</td><td>name</td>",
        "<td>4</td><td>category</td>",
        "<td>4</td><td>mac_address</td>",
        "<td>4</td><td>contact</td><td>“Nobody Here” is not a current contact of that company</td>",
    ] {
        assert!(
            report.text.contains(expected),
            "{expected} missing in the report"
        );
    }
    assert!(report.text.contains("nothing imported"));
    assert_eq!(
        app.db.count("SELECT count(*) FROM events").await,
        before,
        "nothing imported"
    );

    let unknown_column = upload(
        &app,
        None,
        "assets",
        "check",
        "company,name,category,colour\nHooli,x,other,red\n",
    )
    .await;
    assert_eq!(unknown_column.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        unknown_column.text.contains("colour"),
        "{}",
        unknown_column.text
    );

    // Corrected: a check first imports nothing, then the import imports every row.
    let good = "company,name,category,serial_number,mac_address,contact\n\
                Hooli,Nucleus server,server,SRV-1,00:11:22:33:44:55,Gavin Belson\n\
                Hooli,Box,network,SN-2,,gavin@hooli.test\n";
    let checked = upload(&app, None, "assets", "check", good).await;
    assert_eq!(checked.status, StatusCode::OK, "{}", checked.text);
    assert!(checked.text.contains("2 row(s) are ready to import"));
    assert_eq!(app.db.count("SELECT count(*) FROM events").await, before);
    let imported = upload(&app, None, "assets", "import", good).await;
    assert_eq!(imported.status, StatusCode::SEE_OTHER, "{}", imported.text);
    app.settle().await;
    let list = app
        .request(
            Method::GET,
            &format!("/api/v1/assets?company_id={hooli}"),
            None,
        )
        .await
        .json();
    let tags: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["ACME-00001", "ACME-00002"]);
    assert!(
        list["items"][0]["contact_id"].is_string(),
        "assigned by name"
    );
    assert!(
        list["items"][1]["contact_id"].is_string(),
        "assigned by email"
    );

    // The same file again: nothing twice.
    let again = upload(&app, None, "assets", "import", good).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    app.settle().await;
    assert_eq!(app.db.count("SELECT count(*) FROM assets").await, 2);

    // Companies and contacts import too; duplicates are refused.
    let companies = upload(
        &app,
        None,
        "companies",
        "import",
        "name,monthly_rate\nRaviga,1500\nEndFrame,\n",
    )
    .await;
    assert_eq!(
        companies.status,
        StatusCode::SEE_OTHER,
        "{}",
        companies.text
    );
    let duplicate = upload(
        &app,
        None,
        "companies",
        "check",
        "name\nRaviga\nBachmanity\nBachmanity\n",
    )
    .await;
    assert_eq!(duplicate.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        duplicate.text.contains("exists already")
            && duplicate.text.contains("the same name is on line 3")
    );
    app.settle().await;
    let contacts = upload(
        &app,
        None,
        "contacts",
        "import",
        "company,name,email,billing\nRaviga,Monica Hall,monica@raviga.test,yes\n",
    )
    .await;
    assert_eq!(contacts.status, StatusCode::SEE_OTHER, "{}", contacts.text);
    app.settle().await;

    // Exports carry what was imported (and defuse spreadsheet formulas).
    let export = app.request(Method::GET, "/export/assets.csv", None).await;
    assert_eq!(export.status, StatusCode::OK);
    assert!(export.content_type.starts_with("text/csv"));
    assert!(export.text.starts_with("tag,company,name,category"));
    assert!(
        export
            .text
            .contains("ACME-00001,Hooli,Nucleus server,server"),
        "{}",
        export.text
    );
    let people = app
        .request(Method::GET, "/export/contacts.csv", None)
        .await
        .text;
    assert!(
        people.contains("Raviga,Monica Hall,monica@raviga.test"),
        "{people}"
    );
    let firms = app
        .request(Method::GET, "/export/companies.csv", None)
        .await
        .text;
    assert!(firms.contains("Raviga,1500.00"), "{firms}");

    // An accountant may export but not import assets.
    let accountant = app
        .person(&app.owner, Role::Accountant, "books@acme.test", None)
        .await;
    let refused = upload(&app, Some(&accountant), "assets", "import", good).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}
