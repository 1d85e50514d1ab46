//! The OpenAPI document served at `/api/v1/openapi.json`: a well-formed OpenAPI 3 document
//! (every `$ref` resolves), describing every endpoint with its problem responses, and
//! describing what the endpoints really answer.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use st_tests::TestApp;

/// Every endpoint of the service, with the problem statuses each one documents.
/// Reveals a credential's secrets: no body, and every call is its own recorded event.
const REVEAL: &str = "/api/v1/credentials/{id}/reveal";
/// Starting a timer takes no body.
const TIMER_START: &str = "/api/v1/work-orders/{id}/timer/start";
/// A status link is shown once, so a retry cannot answer with the first outcome: no key.
const LINKS: &str = "/api/v1/work-orders/{id}/links";
/// Resending a message takes no body.
const RESEND: &str = "/api/v1/notifications/{id}/resend";
/// A template's preview changes nothing: no key.
const PREVIEW: &str = "/api/v1/notification-templates/{kind}/preview";
/// A billing run is idempotent by itself (a billed period is never billed again), and its
/// preview changes nothing: no key.
const RUNS: &str = "/api/v1/billing/runs";
const RUNS_PREVIEW: &str = "/api/v1/billing/runs/preview";

const OPERATIONS: &[(&str, &str, &[u16])] = &[
    ("/api/v1/assets", "get", &[400, 401, 403, 500]),
    (
        "/api/v1/assets",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    ("/api/v1/assets/{id}", "get", &[400, 401, 403, 404, 500]),
    (
        "/api/v1/assets/{id}",
        "patch",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/assets/{id}/credentials",
        "get",
        &[400, 401, 403, 404, 500],
    ),
    (
        "/api/v1/assets/{id}/credentials",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/companies/{id}/credentials",
        "get",
        &[400, 401, 403, 404, 500],
    ),
    (
        "/api/v1/companies/{id}/credentials",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/credentials/{id}",
        "get",
        &[400, 401, 403, 404, 500],
    ),
    (
        "/api/v1/credentials/{id}",
        "patch",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/credentials/{id}",
        "delete",
        &[400, 401, 403, 404, 500],
    ),
    (
        "/api/v1/credentials/{id}/reveal",
        "post",
        &[400, 401, 403, 404, 409, 500],
    ),
    (
        "/api/v1/credentials/{id}/shares",
        "post",
        &[400, 401, 403, 404, 409, 422, 500],
    ),
    (
        "/api/v1/credentials/{id}/shares/{share_id}",
        "delete",
        &[400, 401, 403, 404, 409, 500],
    ),
    ("/api/v1/search", "get", &[400, 401, 403, 500]),
    ("/api/v1/companies", "get", &[400, 401, 403, 500]),
    (
        "/api/v1/companies",
        "post",
        &[400, 401, 403, 409, 413, 415, 422, 500],
    ),
    ("/api/v1/companies/{id}", "get", &[400, 401, 403, 404, 500]),
    (
        "/api/v1/companies/{id}",
        "patch",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    ("/api/v1/users", "get", &[401, 403, 500]),
    (
        "/api/v1/users",
        "post",
        &[400, 401, 403, 409, 413, 415, 422, 500],
    ),
    ("/api/v1/users/{id}", "get", &[400, 401, 403, 404, 500]),
    (
        "/api/v1/users/{id}",
        "patch",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/users/{id}",
        "delete",
        &[400, 401, 403, 404, 409, 500],
    ),
    ("/api/v1/tokens", "get", &[401, 403, 500]),
    (
        "/api/v1/tokens",
        "post",
        &[400, 401, 403, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/tokens/{id}",
        "delete",
        &[400, 401, 403, 404, 409, 500],
    ),
    (
        "/api/v1/sign-in",
        "post",
        &[400, 401, 403, 413, 415, 422, 429, 500],
    ),
    (
        "/api/v1/companies/{id}/contacts",
        "get",
        &[400, 401, 403, 404, 500],
    ),
    (
        "/api/v1/companies/{id}/contacts",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    ("/api/v1/contacts/{id}", "get", &[400, 401, 403, 404, 500]),
    (
        "/api/v1/contacts/{id}",
        "patch",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    ("/api/v1/settings/business-hours", "get", &[401, 403, 500]),
    (
        "/api/v1/settings/business-hours",
        "put",
        &[400, 401, 403, 409, 413, 415, 422, 500],
    ),
    ("/api/v1/settings/sla-policies", "get", &[401, 403, 500]),
    (
        "/api/v1/settings/sla-policies",
        "put",
        &[400, 401, 403, 409, 413, 415, 422, 500],
    ),
    ("/api/v1/settings/work-types", "get", &[401, 403, 500]),
    (
        "/api/v1/settings/work-types",
        "put",
        &[400, 401, 403, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/users/{id}/labour-cost",
        "put",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/companies/{id}/coverage",
        "get",
        &[400, 401, 403, 404, 500],
    ),
    (
        "/api/v1/companies/{id}/coverage",
        "put",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    ("/api/v1/tenant", "get", &[401, 403, 500]),
    (
        "/api/v1/tenant",
        "patch",
        &[400, 401, 403, 413, 415, 422, 500],
    ),
    ("/api/v1/work-orders", "get", &[400, 401, 403, 500]),
    (
        "/api/v1/work-orders",
        "post",
        &[400, 401, 403, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/work-orders/{id}",
        "get",
        &[400, 401, 403, 404, 500],
    ),
    (
        "/api/v1/work-orders/{id}",
        "patch",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/work-orders/{id}/comments",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/work-orders/{id}/time-entries",
        "get",
        &[400, 401, 403, 404, 500],
    ),
    (
        "/api/v1/work-orders/{id}/time-entries",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/work-orders/{id}/time-entries/{entry_id}",
        "delete",
        &[400, 401, 403, 404, 409, 500],
    ),
    (
        "/api/v1/work-orders/{id}/materials",
        "get",
        &[400, 401, 403, 404, 500],
    ),
    (
        "/api/v1/work-orders/{id}/materials",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/work-orders/{id}/materials/{material_id}",
        "delete",
        &[400, 401, 403, 404, 409, 500],
    ),
    (
        "/api/v1/work-orders/{id}/timer/start",
        "post",
        &[400, 401, 403, 404, 409, 500],
    ),
    (
        "/api/v1/work-orders/{id}/timer/stop",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/work-orders/{id}/links",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/work-orders/{id}/links/{link_id}",
        "delete",
        &[400, 401, 403, 404, 409, 500],
    ),
    ("/api/v1/unbilled-work", "get", &[401, 403, 500]),
    (
        "/api/v1/contacts/{id}/notifications",
        "get",
        &[400, 401, 403, 404, 500],
    ),
    (
        "/api/v1/contacts/{id}/notifications",
        "put",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    ("/api/v1/notifications", "get", &[400, 401, 403, 422, 500]),
    (
        "/api/v1/notifications/{id}",
        "get",
        &[400, 401, 403, 404, 500],
    ),
    (
        "/api/v1/notifications/{id}/resend",
        "post",
        &[400, 401, 403, 404, 409, 500],
    ),
    (
        "/api/v1/notifications/test",
        "post",
        &[400, 401, 403, 409, 413, 415, 422, 500],
    ),
    ("/api/v1/notification-templates", "get", &[401, 403, 500]),
    (
        "/api/v1/notification-templates/{kind}",
        "get",
        &[401, 403, 404, 500],
    ),
    (
        "/api/v1/notification-templates/{kind}",
        "put",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/notification-templates/{kind}",
        "delete",
        &[400, 401, 403, 404, 409, 500],
    ),
    (
        "/api/v1/notification-templates/{kind}/preview",
        "post",
        &[400, 401, 403, 404, 413, 415, 422, 500],
    ),
    ("/api/v1/settings/notifications", "get", &[401, 403, 500]),
    (
        "/api/v1/settings/notifications/email",
        "put",
        &[400, 401, 403, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/settings/notifications/email",
        "delete",
        &[400, 401, 403, 409, 500],
    ),
    (
        "/api/v1/settings/notifications/sms",
        "put",
        &[400, 401, 403, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/settings/notifications/sms",
        "delete",
        &[400, 401, 403, 409, 500],
    ),
    (
        "/api/v1/companies/{id}/billing",
        "put",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/billing/runs",
        "post",
        &[400, 401, 403, 413, 415, 422, 500],
    ),
    (
        "/api/v1/billing/runs/preview",
        "post",
        &[400, 401, 403, 413, 415, 422, 500],
    ),
    (
        "/api/v1/payments",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/payments/{id}/unapply",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/payments/{id}/refunds",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/payments/{id}/reverse",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/invoices",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/invoices/{id}/issue",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/invoices/{id}/void",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/invoices/{id}/credit-notes",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/billing/apply-credit/{id}",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    ("/api/v1/invoices", "get", &[400, 401, 403, 422, 500]),
    ("/api/v1/invoices/{id}", "get", &[400, 401, 403, 404, 500]),
    (
        "/api/v1/invoices/{id}/pdf",
        "get",
        &[400, 401, 403, 404, 500],
    ),
    ("/api/v1/payments", "get", &[400, 401, 403, 422, 500]),
    ("/api/v1/payments/{id}", "get", &[400, 401, 403, 404, 500]),
    (
        "/api/v1/companies/{id}/balance",
        "get",
        &[400, 401, 403, 404, 500],
    ),
    (
        "/api/v1/companies/{id}/statement",
        "get",
        &[400, 401, 403, 404, 422, 500],
    ),
    (
        "/api/v1/reports/ar-aging",
        "get",
        &[400, 401, 403, 422, 500],
    ),
    (
        "/api/v1/reports/ar-aging.csv",
        "get",
        &[400, 401, 403, 422, 500],
    ),
    ("/api/v1/settings/billing", "get", &[401, 403, 500]),
    (
        "/api/v1/settings/billing",
        "put",
        &[400, 401, 403, 413, 415, 422, 500],
    ),
    ("/api/v1/services", "get", &[401, 403, 500]),
    (
        "/api/v1/services",
        "post",
        &[400, 401, 403, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/services/{id}",
        "put",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/companies/{id}/subscriptions",
        "get",
        &[400, 401, 403, 404, 500],
    ),
    (
        "/api/v1/companies/{id}/subscriptions",
        "post",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    (
        "/api/v1/companies/{id}/subscriptions/{subscription_id}",
        "put",
        &[400, 401, 403, 404, 409, 413, 415, 422, 500],
    ),
    ("/healthz", "get", &[500]),
    ("/api/v1/openapi.json", "get", &[500]),
];

/// The operations anyone may call: no `Authorization` needed.
const PUBLIC: &[&str] = &["/healthz", "/api/v1/openapi.json"];

/// Trades an email and password for a token: no bearer token needed, but it answers 401.
const SIGN_IN: &str = "/api/v1/sign-in";

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document(app: &TestApp) -> Value {
    let reply = app.request(Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(
        reply.content_type.starts_with("application/json"),
        "{}",
        reply.content_type
    );
    reply.json()
}

/// Follows a local JSON reference (`#/a/b~1c`) from the document's root.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

/// A value, or what its `$ref` points to.
fn deref<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            resolve(doc, reference).unwrap_or_else(|| panic!("{reference} does not resolve"))
        }
        None => value,
    }
}

/// Every `$ref` in the document, with where it was found.
fn refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "$ref" {
                    out.push((
                        at.to_owned(),
                        child.as_str().unwrap_or("<not a string>").into(),
                    ));
                } else {
                    refs(child, &format!("{at}/{key}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                refs(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_well_formed_openapi_3() {
    let app = TestApp::new().await;
    let doc = document(&app).await;

    let version = doc["openapi"].as_str().expect("openapi is a string");
    assert!(version.starts_with("3.1."), "OpenAPI 3.1, not {version}");
    assert!(doc["info"]["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(doc["info"]["version"].is_string());
    assert!(doc["paths"].is_object());

    // Every reference is local and resolves, and points where its kind belongs.
    let mut found = Vec::new();
    refs(&doc, "", &mut found);
    assert!(found.len() > 20, "the document uses components: {found:?}");
    for (at, reference) in &found {
        assert!(
            reference.starts_with("#/components/"),
            "{at}: {reference} is not a local component"
        );
        assert!(
            resolve(&doc, reference).is_some(),
            "{at}: {reference} does not resolve"
        );
        if at.ends_with("/schema") || at.contains("/properties/") || at.ends_with("/items") {
            assert!(
                reference.starts_with("#/components/schemas/"),
                "{at}: {reference}"
            );
        }
    }

    // Exactly the endpoints that exist, each fully described.
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .map(move |method| (path.clone(), method.clone()))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|(p, m, _)| ((*p).to_owned(), (*m).to_owned()))
        .collect();
    assert_eq!(documented, expected);

    let mut operation_ids = BTreeSet::new();
    for (path, method, problems) in OPERATIONS {
        let op = &doc["paths"][path][method];
        let name = format!("{method} {path}");
        let id = op["operationId"].as_str().expect("operationId");
        assert!(
            operation_ids.insert(id.to_owned()),
            "{name}: duplicate {id}"
        );
        assert!(op["summary"].is_string(), "{name}: summary");

        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|code| code.starts_with('2')),
            "{name}: no success response"
        );
        for (code, response) in responses {
            assert!(
                deref(&doc, response)["description"].is_string(),
                "{name} {code}: description"
            );
        }
        for status in *problems {
            let response = responses
                .get(&status.to_string())
                .unwrap_or_else(|| panic!("{name}: no {status} response"));
            let response = deref(&doc, response);
            let schema = &response["content"]["application/problem+json"]["schema"];
            assert_eq!(
                schema["$ref"], "#/components/schemas/Problem",
                "{name} {status}: not a problem document"
            );
            assert!(response["headers"]["x-request-id"].is_object());
        }

        // Path templates have their parameters.
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let param = segment.trim_matches(|c| c == '{' || c == '}');
            let p = params
                .iter()
                .find(|p| p["name"] == param && p["in"] == "path")
                .unwrap_or_else(|| panic!("{name}: no path parameter {param}"));
            assert_eq!(p["required"], true);
            if param == "kind" {
                // A kind of message: one of a documented list, not an id.
                let kinds = &deref(&doc, &p["schema"])["enum"];
                assert!(
                    kinds
                        .as_array()
                        .is_some_and(|k| k.contains(&json!("work_order_created"))),
                    "{name}: {kinds}"
                );
            } else {
                assert_eq!(p["schema"]["format"], "uuid");
            }
        }

        // Every operation but the public ones asks for the bearer token and says what a
        // missing or bad one gets (401); sign-in needs none but answers 401 to wrong
        // credentials.
        let security = op["security"].as_array().cloned().unwrap_or_default();
        let secured = security.iter().any(|r| r.get("bearer").is_some());
        if PUBLIC.contains(path) {
            assert!(security.is_empty(), "{name}: public, yet {security:?}");
            assert!(!responses.contains_key("401"), "{name}");
        } else if *path == SIGN_IN {
            assert_eq!(security, [json!({})], "{name}: needs no token");
            assert!(responses.contains_key("401"), "{name}: no 401");
        } else {
            assert!(secured, "{name}: does not declare the bearer security");
            assert_eq!(
                responses["401"]["$ref"], "#/components/responses/Unauthorized",
                "{name}: no 401"
            );
            assert_eq!(
                responses["403"]["$ref"], "#/components/responses/Forbidden",
                "{name}: no 403"
            );
        }
        for requirement in &security {
            for scheme in requirement.as_object().unwrap().keys() {
                assert!(
                    doc["components"]["securitySchemes"][scheme].is_object(),
                    "{name}: unknown security scheme {scheme}"
                );
            }
        }
        for tag in op["tags"].as_array().expect("tags") {
            assert!(
                doc["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["name"] == *tag && t["description"].is_string()),
                "{name}: tag {tag} is not declared"
            );
        }
        if let Some(throttled) = responses.get("429") {
            assert!(
                deref(&doc, throttled)["headers"]["Retry-After"].is_object(),
                "{name}: 429 without Retry-After"
            );
        }

        if (*method == "post" || *method == "patch")
            && ![REVEAL, TIMER_START, RESEND].contains(path)
        {
            let body = &op["requestBody"];
            assert_eq!(body["required"], true, "{name}");
            let schema = deref(&doc, &body["content"]["application/json"]["schema"]);
            assert_eq!(schema["additionalProperties"], false, "{name}");
        }
        // Writes may be retried safely (sign-in makes a new token each time: no key).
        // A reveal takes no body and is recorded each time it is asked: no key either.
        if ["post", "patch"].contains(method)
            && ![SIGN_IN, REVEAL, LINKS, PREVIEW, RUNS, RUNS_PREVIEW].contains(path)
        {
            let key = params
                .iter()
                .find(|p| p["name"] == "Idempotency-Key")
                .unwrap_or_else(|| panic!("{name}: no Idempotency-Key"));
            assert_eq!(key["in"], "header");
            assert_eq!(key["required"], false);
            assert_eq!(key["schema"]["maxLength"], 200);
        }
    }

    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert!(scheme["description"]
        .as_str()
        .unwrap()
        .contains("Authorization: Bearer"));
}

#[tokio::test]
async fn the_schemas_say_what_the_contracts_say() {
    let app = TestApp::new().await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];

    // Money as decimal strings, instants as date-time, ids as UUIDs.
    let company = &schemas["Company"]["properties"];
    assert_eq!(company["monthly_rate"]["type"], "string");
    assert_eq!(company["monthly_rate"]["example"], "500.00");
    assert!(company["monthly_rate"]["pattern"].is_string());
    assert_eq!(company["id"]["format"], "uuid");
    assert_eq!(company["created_at"]["format"], "date-time");
    assert_eq!(company["updated_at"]["format"], "date-time");
    for body in ["CreateCompany", "UpdateCompany"] {
        let rate = &schemas[body]["properties"]["monthly_rate"];
        assert!(rate["type"] == "string" || rate["type"] == json!(["string", "null"]));
        assert!(rate["pattern"].is_string(), "{body}");
    }

    // The problem document.
    let problem = &schemas["Problem"];
    for field in ["type", "title", "status", "detail", "errors", "request_id"] {
        assert!(problem["properties"][field].is_object(), "Problem.{field}");
    }
    let required: BTreeSet<&str> = problem["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        required,
        BTreeSet::from(["type", "title", "status", "detail"])
    );
    let field_error = deref(&doc, &problem["properties"]["errors"]["items"]);
    assert!(field_error["properties"]["field"].is_object());
    assert!(field_error["properties"]["message"].is_object());

    // The list's query parameters.
    let params: BTreeMap<String, Value> = doc["paths"]["/api/v1/companies"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["in"], "query");
            (p["name"].as_str().unwrap().to_owned(), p.clone())
        })
        .collect();
    assert_eq!(
        params.keys().map(String::as_str).collect::<Vec<_>>(),
        ["after", "customer_status", "limit", "q", "status", "tag"]
    );
    assert_eq!(
        deref(&doc, &params["status"]["schema"])["enum"],
        json!(["active", "archived", "all"])
    );
    let customer_statuses = json!(["prospect", "active", "suspended", "former"]);
    assert_eq!(
        deref(&doc, &params["customer_status"]["schema"])["enum"],
        customer_statuses
    );
    assert_eq!(params["limit"]["schema"]["minimum"], 1);
    assert_eq!(params["limit"]["schema"]["maximum"], 500);
    assert_eq!(params["after"]["schema"]["type"], "string");

    // The company's lifecycle is `customer_status`; `status` keeps meaning archived or not.
    assert_eq!(
        deref(&doc, &company["status"])["enum"],
        json!(["active", "archived"])
    );
    assert_eq!(
        deref(&doc, &company["customer_status"])["enum"],
        customer_statuses
    );
    assert_eq!(company["tags"]["type"], "array");
    assert_eq!(company["billing_contacts"]["items"]["format"], "uuid");
    for body in ["CreateCompany", "UpdateCompany"] {
        let properties = &schemas[body]["properties"];
        for field in [
            "customer_status",
            "billing_address",
            "site_address",
            "phone",
            "website",
            "notes",
            "tags",
        ] {
            assert!(properties[field].is_object(), "{body}.{field}");
        }
    }
    let list = &schemas["CompanyList"];
    assert!(list["properties"]["next"].is_object());
    assert!(list["properties"]["next_after"].is_object());
}

/// Checks `value` against the parts of JSON Schema the document uses (types, required,
/// properties, additionalProperties, items, enum, uuid and date-time formats).
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = deref(doc, schema);
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let ok = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
        if !ok {
            errors.push(format!("{at}: {actual}, expected {types:?}"));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} not in {allowed:?}"));
        }
    }
    if let (Some(format), Some(text)) =
        (schema.get("format").and_then(Value::as_str), value.as_str())
    {
        let ok = match format {
            "uuid" => uuid::Uuid::parse_str(text).is_ok(),
            "date-time" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            _ => true,
        };
        if !ok {
            errors.push(format!("{at}: {text:?} is not a {format}"));
        }
    }
    if let Value::Object(map) = value {
        for key in schema["required"].as_array().into_iter().flatten() {
            let key = key.as_str().unwrap();
            if !map.contains_key(key) {
                errors.push(format!("{at}: {key} is missing"));
            }
        }
        let properties = schema["properties"].as_object();
        for (key, child) in map {
            match properties.and_then(|p| p.get(key)) {
                Some(property) => check(doc, property, child, &format!("{at}.{key}"), errors),
                None => errors.push(format!("{at}: {key} is not documented")),
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(doc, item_schema, item, &format!("{at}[{i}]"), errors);
        }
    }
}

fn assert_matches(doc: &Value, path: &str, method: &str, status: u16, reply: &st_tests::Reply) {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.text);
    let response = deref(
        doc,
        &doc["paths"][path][method]["responses"][status.to_string()],
    );
    let media = reply.content_type.split(';').next().unwrap().trim();
    let schema = &response["content"][media]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status}: {media} is not documented"
    );
    let mut errors = Vec::new();
    check(doc, schema, &reply.json(), "$", &mut errors);
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:#?}\n{}",
        reply.text
    );
}

#[tokio::test]
async fn the_endpoints_answer_as_documented() {
    let app = TestApp::new().await;
    let doc = document(&app).await;
    let companies = "/api/v1/companies";
    let one = "/api/v1/companies/{id}";

    // The checks below have teeth.
    assert!(resolve(&doc, "#/components/schemas/Nope").is_none());
    let mut errors = Vec::new();
    check(
        &doc,
        &json!({"$ref": "#/components/schemas/Company"}),
        &json!({"id": "not-a-uuid", "status": "gone", "extra": 1}),
        "$",
        &mut errors,
    );
    for expected in [
        "not a uuid",
        "not in",
        "name is missing",
        "extra is not documented",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{expected}: {errors:?}"
        );
    }

    let created = app
        .send(
            Method::POST,
            companies,
            Some(r#"{"name": "Acme", "monthly_rate": "500"}"#),
            &[("idempotency-key", "openapi-test")],
        )
        .await;
    assert_matches(&doc, companies, "post", 201, &created);
    let id = created.json()["id"].as_str().unwrap().to_owned();

    let second = app
        .request(
            Method::POST,
            companies,
            Some(
                r#"{"name": "Beta", "customer_status": "prospect", "tags": ["vip"],
                     "billing_address": "1 Main St\nSpringfield", "website": "beta.example"}"#,
            ),
        )
        .await;
    assert_matches(&doc, companies, "post", 201, &second);
    let list = app
        .request(Method::GET, &format!("{companies}?limit=1"), None)
        .await;
    assert_matches(&doc, companies, "get", 200, &list);
    assert!(
        list.json()["next"].is_string() && list.json()["next_after"].is_string(),
        "a page with more after it has a cursor"
    );
    let last = app
        .request(
            Method::GET,
            &format!(
                "{companies}?limit=1&after={}",
                list.json()["next"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_matches(&doc, companies, "get", 200, &last);
    assert!(last.json()["next"].is_null(), "{}", last.text);
    assert!(last.json().get("next_after").is_none());
    let bad_limit = app
        .request(Method::GET, &format!("{companies}?limit=0"), None)
        .await;
    assert_matches(&doc, companies, "get", 400, &bad_limit);

    let read = app
        .request(Method::GET, &format!("{companies}/{id}"), None)
        .await;
    assert_matches(&doc, one, "get", 200, &read);
    let missing = app
        .request(
            Method::GET,
            &format!("{companies}/{}", uuid::Uuid::nil()),
            None,
        )
        .await;
    assert_matches(&doc, one, "get", 404, &missing);

    let invalid = app
        .request(
            Method::PATCH,
            &format!("{companies}/{id}"),
            Some(r#"{"name": "", "monthly_rate": "-1"}"#),
        )
        .await;
    assert_matches(&doc, one, "patch", 422, &invalid);
    assert_eq!(invalid.json()["errors"].as_array().unwrap().len(), 2);
    let not_json = app
        .send_body(
            Method::PATCH,
            &format!("{companies}/{id}"),
            "name=x",
            &[("content-type", "text/plain")],
        )
        .await;
    assert_matches(&doc, one, "patch", 415, &not_json);
    let archived = app
        .request(
            Method::PATCH,
            &format!("{companies}/{id}"),
            Some(r#"{"archived": true}"#),
        )
        .await;
    assert_matches(&doc, one, "patch", 200, &archived);
    let refused = app
        .request(
            Method::PATCH,
            &format!("{companies}/{id}"),
            Some(r#"{"name": "Nope"}"#),
        )
        .await;
    assert_matches(&doc, one, "patch", 409, &refused);

    app.settle().await;
    let health = app.request(Method::GET, "/healthz", None).await;
    assert_matches(&doc, "/healthz", "get", 200, &health);
}

#[tokio::test]
async fn the_token_endpoints_answer_as_documented() {
    let app = TestApp::new().await;
    let doc = document(&app).await;
    let tokens = "/api/v1/tokens";
    let one = "/api/v1/tokens/{id}";
    let sign_in = "/api/v1/sign-in";

    let key = [("idempotency-key", "openapi-token")];
    let created = app
        .send(Method::POST, tokens, Some(r#"{"name": "docs"}"#), &key)
        .await;
    assert_matches(&doc, tokens, "post", 201, &created);
    let again = app
        .send(Method::POST, tokens, Some(r#"{"name": "docs"}"#), &key)
        .await;
    assert_matches(&doc, tokens, "post", 409, &again);
    let invalid = app
        .request(Method::POST, tokens, Some(r#"{"name": " "}"#))
        .await;
    assert_matches(&doc, tokens, "post", 422, &invalid);
    let list = app.request(Method::GET, tokens, None).await;
    assert_matches(&doc, tokens, "get", 200, &list);
    assert_eq!(list.json()["items"].as_array().unwrap().len(), 2);
    let nobody = app.send_as(None, Method::GET, tokens, None, &[]).await;
    assert_matches(&doc, tokens, "get", 401, &nobody);

    let id = created.json()["id"].as_str().unwrap().to_owned();
    let revoked = app
        .request(Method::DELETE, &format!("{tokens}/{id}"), None)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);
    assert!(revoked.text.is_empty());
    assert!(doc["paths"][one]["delete"]["responses"]["204"].is_object());
    let twice = app
        .request(Method::DELETE, &format!("{tokens}/{id}"), None)
        .await;
    assert_matches(&doc, one, "delete", 409, &twice);
    let missing = app
        .request(
            Method::DELETE,
            &format!("{tokens}/{}", uuid::Uuid::nil()),
            None,
        )
        .await;
    assert_matches(&doc, one, "delete", 404, &missing);
    let bad = app
        .request(Method::DELETE, &format!("{tokens}/x"), None)
        .await;
    assert_matches(&doc, one, "delete", 400, &bad);

    let body = |password: &str| {
        json!({"email": app.owner.email, "password": password, "token_name": "docs"}).to_string()
    };
    let signed_in = app
        .send_as(
            None,
            Method::POST,
            sign_in,
            Some(&body(&app.owner.password)),
            &[],
        )
        .await;
    assert_matches(&doc, sign_in, "post", 201, &signed_in);
    for _ in 0..5 {
        let wrong = app
            .send_as(
                None,
                Method::POST,
                sign_in,
                Some(&body("wrong password")),
                &[],
            )
            .await;
        assert_matches(&doc, sign_in, "post", 401, &wrong);
    }
    let locked = app
        .send_as(
            None,
            Method::POST,
            sign_in,
            Some(&body("wrong password")),
            &[],
        )
        .await;
    assert_matches(&doc, sign_in, "post", 429, &locked);
}

#[tokio::test]
async fn the_notification_endpoints_answer_as_documented() {
    let app = TestApp::new().await;
    let doc = document(&app).await;
    let send = |method: Method, path: String, body: Option<Value>| {
        let app = &app;
        async move {
            app.request(method, &path, body.map(|b| b.to_string()).as_deref())
                .await
        }
    };
    let settings = "/api/v1/settings/notifications";
    let email = "/api/v1/settings/notifications/email";
    let sms = "/api/v1/settings/notifications/sms";
    let log = "/api/v1/notifications";
    let one = "/api/v1/notifications/{id}";
    let templates = "/api/v1/notification-templates";
    let template = "/api/v1/notification-templates/{kind}";

    let none = send(Method::GET, settings.into(), None).await;
    assert_matches(&doc, settings, "get", 200, &none);
    let bad = send(
        Method::PUT,
        email.into(),
        Some(json!({"url": "ftp://x", "from": "x"})),
    )
    .await;
    assert_matches(&doc, email, "put", 422, &bad);
    let set = send(
        Method::PUT,
        email.into(),
        Some(json!({"url": "smtp://127.0.0.1:9?tls=none", "from": "a@acme.test"})),
    )
    .await;
    assert_matches(&doc, email, "put", 200, &set);
    let gateway = send(
        Method::PUT,
        sms.into(),
        Some(
            json!({"provider": "gateway", "url": "https://sms.example.test/send",
            "template": "to={to}&text={body}", "from": "Acme"}),
        ),
    )
    .await;
    assert_matches(&doc, sms, "put", 200, &gateway);

    let queued = send(
        Method::POST,
        format!("{log}/test"),
        Some(json!({"channel": "email", "to": "ann@example.test"})),
    )
    .await;
    assert_matches(&doc, "/api/v1/notifications/test", "post", 201, &queued);
    let id = queued.json()["id"].as_str().unwrap().to_owned();
    app.settle().await;
    assert_matches(
        &doc,
        log,
        "get",
        200,
        &send(Method::GET, log.into(), None).await,
    );
    assert_matches(
        &doc,
        log,
        "get",
        422,
        &send(Method::GET, format!("{log}?status=lost"), None).await,
    );
    assert_matches(
        &doc,
        one,
        "get",
        200,
        &send(Method::GET, format!("{log}/{id}"), None).await,
    );
    assert_matches(
        &doc,
        "/api/v1/notifications/{id}/resend",
        "post",
        409,
        &send(Method::POST, format!("{log}/{id}/resend"), None).await,
    );

    assert_matches(
        &doc,
        templates,
        "get",
        200,
        &send(Method::GET, templates.into(), None).await,
    );
    let body =
        json!({"subject": "Hi {organisation}", "text": "Hello", "html": "<p>Hi</p>", "sms": ""});
    assert_matches(
        &doc,
        template,
        "put",
        200,
        &send(Method::PUT, format!("{templates}/test"), Some(body.clone())).await,
    );
    assert_matches(
        &doc,
        "/api/v1/notification-templates/{kind}/preview",
        "post",
        200,
        &send(
            Method::POST,
            format!("{templates}/test/preview"),
            Some(body),
        )
        .await,
    );
    assert_matches(
        &doc,
        template,
        "delete",
        200,
        &send(Method::DELETE, format!("{templates}/test"), None).await,
    );
    assert_matches(
        &doc,
        template,
        "get",
        404,
        &send(Method::GET, format!("{templates}/postcard"), None).await,
    );
    assert_matches(
        &doc,
        sms,
        "delete",
        200,
        &send(Method::DELETE, sms.into(), None).await,
    );
}
