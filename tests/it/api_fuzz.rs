//! Property: no request to any `/api/v1` endpoint, valid or malformed, gets a 5xx, and every
//! 4xx there is a problem document.
//!
//! The endpoints come from the OpenAPI document the service serves, so a new endpoint is
//! covered as soon as it is documented. Requests are generated with proptest: path ids that
//! are this tenant's, another tenant's, random UUIDs, random or very long or non-UTF-8 text;
//! random query strings; bodies that almost follow the schema, random JSON, text that is not
//! JSON, bodies over the limit; right and wrong content types; the owner's, a technician's,
//! another tenant's, a garbage or no token; good and bad `Idempotency-Key`s; and now and then
//! a method the path does not serve. They run through the router in process.

use axum::http::{Method, Uri};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};
use st_tests::{Reply, TestApp};

/// How many requests one run sends (about 60 operations since issue 5: ~30 each).
const CASES: u32 = 2000;

/// One documented operation.
#[derive(Debug, Clone)]
struct Operation {
    path: String,
    method: Method,
    /// The request body's schema, resolved (`None`: the operation takes no body).
    body: Option<Value>,
}

/// What the generated requests can use: the operations and the ids and tokens of the world.
struct World {
    operations: Vec<Operation>,
    /// Ids of records of this tenant and of another one (companies, people, tokens).
    ids: Vec<String>,
    owner_token: String,
    tech_token: String,
    stranger_token: String,
}

/// A path parameter.
#[derive(Debug, Clone)]
enum Segment {
    Known(usize),
    Uuid(u128),
    Text(String),
    Long(usize, char),
    Special(usize),
}

const SPECIAL_SEGMENTS: &[&str] = &[
    "",
    "..",
    ".",
    "%00",
    "%FF",
    "%C3%28",
    "%2F",
    "%20",
    "null",
    "0",
    "-1",
    "%25",
    "~",
    "%E2%80%AE",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "{id}",
    "01234567-89ab-cdef-0123-456789abcdef0",
];

/// The query string.
#[derive(Debug, Clone)]
enum Query {
    None,
    Pairs(Vec<(usize, String)>),
    Raw(Vec<usize>),
}

const QUERY_KEYS: &[&str] = &[
    "limit",
    "after",
    "q",
    "status",
    "customer_status",
    "tag",
    "x",
    "",
    "limit[]",
    "name",
];
const QUERY_PIECES: &[&str] = &[
    "a",
    "=",
    "&",
    "%20",
    "%FF",
    "%",
    "%zz",
    "limit",
    "after",
    "q",
    "status",
    "-1",
    "0",
    "1",
    "500",
    "501",
    "99999999999999999999",
    "archived",
    "all",
    "active",
    "prospect",
    "vip",
    "0123456789abcdef0123456789abcdef41",
    "[]",
    ";",
    "+",
    "%00",
    "%E2%82%AC",
    "1e3",
    "0x10",
];

/// The body.
#[derive(Debug, Clone)]
enum Body {
    None,
    /// The schema's example with each property kept, dropped or replaced, maybe an extra one.
    SchemaIsh(Vec<Option<Option<Value>>>, bool),
    Json(Value),
    Text(String),
    Huge(usize),
}

const CONTENT_TYPES: &[Option<&str>] = &[
    Some("application/json"),
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    None,
    Some("text/plain"),
    Some("application/x-www-form-urlencoded"),
    Some("application/merge-patch+json"),
    Some("application/problem+json"),
    Some("]["),
];

#[derive(Debug, Clone)]
enum Auth {
    Owner,
    Technician,
    Stranger,
    None,
    Garbage(usize),
}

const GARBAGE_AUTH: &[&str] = &[
    "Bearer st_not-a-token",
    "Bearer ",
    "Bearer",
    "bearer st_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "Basic b3duZXI6cGFzc3dvcmQ=",
    "Token abc",
    "Bearer a b c",
];

#[derive(Debug, Clone)]
enum Key {
    None,
    Fixed(u8),
    TooLong,
    Empty,
}

const OTHER_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

#[derive(Debug, Clone)]
struct Case {
    operation: usize,
    /// A method other than the documented one (index into `OTHER_METHODS`).
    method: Option<usize>,
    segment: Segment,
    query: Query,
    body: Body,
    content_type: usize,
    auth: Auth,
    key: Key,
}

/// Random text, any Unicode (controls and NUL included).
fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter),
        1 => proptest::collection::vec(proptest::char::range('a', 'z'), 0..max)
            .prop_map(String::from_iter),
    ]
}

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        text(20).prop_map(Value::String),
        Just(json!("500.00")),
        Just(json!("technician")),
        Just(json!("ann@example.com")),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((text(8), inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn case(world_operations: usize, world_ids: usize) -> impl Strategy<Value = Case> {
    let segment = prop_oneof![
        4 => (0..world_ids).prop_map(Segment::Known),
        2 => any::<u128>().prop_map(Segment::Uuid),
        2 => text(40).prop_map(Segment::Text),
        1 => (1000usize..6000, any::<char>()).prop_map(|(n, c)| Segment::Long(n, c)),
        2 => (0..SPECIAL_SEGMENTS.len()).prop_map(Segment::Special),
    ];
    let query = prop_oneof![
        4 => Just(Query::None),
        2 => proptest::collection::vec(
            (
                0..QUERY_KEYS.len(),
                prop_oneof![
                    text(12),
                    (0..QUERY_PIECES.len()).prop_map(|i| QUERY_PIECES[i].to_owned())
                ]
            ),
            0..4
        )
        .prop_map(Query::Pairs),
        1 => proptest::collection::vec(0..QUERY_PIECES.len(), 0..8).prop_map(Query::Raw),
    ];
    let body = prop_oneof![
        2 => Just(Body::None),
        // The schema's example as it is (bodies with many fields are rarely all plausible).
        4 => Just(Body::SchemaIsh(vec![], false)),
        5 => (
            proptest::collection::vec(
                prop_oneof![
                    8 => Just(None),
                    1 => Just(Some(None)),
                    2 => json_value().prop_map(|v| Some(Some(v))),
                ],
                8
            ),
            proptest::bool::weighted(0.2)
        )
            .prop_map(|(fields, extra)| Body::SchemaIsh(fields, extra)),
        3 => json_value().prop_map(Body::Json),
        2 => text(60).prop_map(Body::Text),
        1 => (65_000usize..70_000).prop_map(Body::Huge),
    ];
    let auth = prop_oneof![
        5 => Just(Auth::Owner),
        2 => Just(Auth::Technician),
        2 => Just(Auth::Stranger),
        1 => Just(Auth::None),
        1 => (0..GARBAGE_AUTH.len()).prop_map(Auth::Garbage),
    ];
    let key = prop_oneof![
        6 => Just(Key::None),
        2 => (0u8..4).prop_map(Key::Fixed),
        1 => Just(Key::TooLong),
        1 => Just(Key::Empty),
    ];
    (
        0..world_operations,
        proptest::option::weighted(0.1, 0..OTHER_METHODS.len()),
        segment,
        query,
        body,
        prop_oneof![3 => Just(0), 1 => 0..CONTENT_TYPES.len()],
        auth,
        key,
    )
        .prop_map(
            |(operation, method, segment, query, body, content_type, auth, key)| Case {
                operation,
                method,
                segment,
                query,
                body,
                content_type,
                auth,
                key,
            },
        )
}

/// Percent-encodes everything but the unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A value a schema's property would accept, more or less.
fn plausible(schema: &Value) -> Value {
    if let Some(example) = schema.get("example") {
        return example.clone();
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    let kind = match &schema["type"] {
        Value::String(t) => t.as_str(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ => "string",
    };
    match kind {
        "boolean" => json!(true),
        "integer" | "number" => json!(1),
        "array" => json!([]),
        "object" => json!({}),
        "null" => Value::Null,
        _ => json!("x"),
    }
}

/// The request a case stands for: method, path and query, headers, body.
fn render(
    world: &World,
    doc: &Value,
    case: &Case,
) -> (Method, String, Vec<(String, String)>, String) {
    let operation = &world.operations[case.operation];
    let method = match case.method {
        Some(i) => Method::from_bytes(OTHER_METHODS[i].as_bytes()).unwrap(),
        None => operation.method.clone(),
    };
    let segment = match &case.segment {
        Segment::Known(i) => world.ids[*i].clone(),
        Segment::Uuid(n) => uuid::Uuid::from_u128(*n).to_string(),
        Segment::Text(t) => encode(t),
        Segment::Long(n, c) => encode(&c.to_string().repeat(*n)),
        Segment::Special(i) => SPECIAL_SEGMENTS[*i].to_owned(),
    };
    let mut path: String = operation
        .path
        .split('/')
        .map(|part| {
            if part.starts_with('{') && part.ends_with('}') {
                segment.as_str()
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    match &case.query {
        Query::None => {}
        Query::Pairs(pairs) => {
            let query: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", QUERY_KEYS[*k], encode(v)))
                .collect();
            path = format!("{path}?{}", query.join("&"));
        }
        Query::Raw(pieces) => {
            let raw: String = pieces.iter().map(|i| QUERY_PIECES[*i]).collect();
            path = format!("{path}?{raw}");
        }
    }
    let body = match &case.body {
        Body::None => String::new(),
        Body::SchemaIsh(fields, extra) => {
            let schema = operation.body.clone().unwrap_or_else(|| json!({}));
            let mut object = Map::new();
            let properties = schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (i, (name, property)) in properties.iter().enumerate() {
                let property = match property.get("$ref").and_then(Value::as_str) {
                    Some(r) => doc.pointer(&r[1..]).cloned().unwrap_or_default(),
                    None => property.clone(),
                };
                match fields.get(i).cloned().flatten() {
                    None => {
                        object.insert(name.clone(), plausible(&property));
                    }
                    Some(None) => {}
                    Some(Some(value)) => {
                        object.insert(name.clone(), value);
                    }
                }
            }
            if *extra {
                object.insert("unexpected".into(), json!(1));
            }
            Value::Object(object).to_string()
        }
        Body::Json(value) => value.to_string(),
        Body::Text(text) => text.clone(),
        Body::Huge(n) => format!("{{\"name\": \"{}\"}}", "x".repeat(*n)),
    };
    let mut headers = Vec::new();
    if let Some(content_type) = CONTENT_TYPES[case.content_type] {
        headers.push(("content-type".to_owned(), content_type.to_owned()));
    }
    let bearer = |t: &str| format!("Bearer {t}");
    match &case.auth {
        Auth::Owner => headers.push(("authorization".into(), bearer(&world.owner_token))),
        Auth::Technician => headers.push(("authorization".into(), bearer(&world.tech_token))),
        Auth::Stranger => headers.push(("authorization".into(), bearer(&world.stranger_token))),
        Auth::None => {}
        Auth::Garbage(i) => headers.push(("authorization".into(), GARBAGE_AUTH[*i].to_owned())),
    }
    match &case.key {
        Key::None => {}
        Key::Fixed(n) => headers.push(("idempotency-key".into(), format!("fuzz-{n}"))),
        Key::TooLong => headers.push(("idempotency-key".into(), "k".repeat(201))),
        Key::Empty => headers.push(("idempotency-key".into(), String::new())),
    }
    (method, path, headers, body)
}

/// What is wrong with an answer (`None`: nothing).
fn judge(method: &Method, reply: &Reply) -> Option<String> {
    let status = reply.status.as_u16();
    if status >= 500 {
        return Some(format!("{status}: {}", reply.text));
    }
    if (400..500).contains(&status) {
        if reply.content_type != "application/problem+json" {
            return Some(format!(
                "{status} is not a problem document ({:?}): {}",
                reply.content_type, reply.text
            ));
        }
        if method != Method::HEAD {
            let problem: Value = match serde_json::from_str(&reply.text) {
                Ok(problem) => problem,
                Err(e) => {
                    return Some(format!(
                        "{status}: the problem is not JSON ({e}): {}",
                        reply.text
                    ))
                }
            };
            if problem["status"] != status || !problem["detail"].is_string() {
                return Some(format!("{status}: a malformed problem: {}", reply.text));
            }
        }
    }
    None
}

/// The documented operations under `/api/v1`.
fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            let body = op["requestBody"]["content"]["application/json"]["schema"]
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| doc.pointer(&r[1..]))
                .cloned();
            out.push(Operation {
                path: path.clone(),
                method,
                body,
            });
        }
    }
    out
}

/// Builds the world the requests probe: two tenants with companies, people and tokens.
async fn world(app: &TestApp) -> (World, Value) {
    let doc = app
        .request(Method::GET, "/api/v1/openapi.json", None)
        .await
        .json();
    let stranger = app.other_tenant("Globex", "boss@globex.test").await;
    let tech =
        crate::tokens::person(app, domain::identity::Role::Technician, "t@acme.test", None).await;
    let victim =
        crate::tokens::person(app, domain::identity::Role::Accountant, "a@acme.test", None).await;
    let post = |who: Option<&st_tests::Person>, path: &str, body: Value| {
        let auth = who.map(|w| format!("Bearer {}", w.token));
        let path = path.to_owned();
        async move {
            let path = path.as_str();
            let headers: Vec<(&str, &str)> = auth
                .as_deref()
                .map(|a| ("authorization", a))
                .into_iter()
                .collect();
            let reply = app
                .send_as(None, Method::POST, path, Some(&body.to_string()), &headers)
                .await;
            assert_eq!(reply.status.as_u16(), 201, "{path}: {}", reply.text);
            reply.json()
        }
    };
    let owner = Some(&app.owner);
    let company = post(owner, "/api/v1/companies", json!({"name": "Acme"})).await;
    let theirs = post(
        Some(&stranger),
        "/api/v1/companies",
        json!({"name": "Globex"}),
    )
    .await;
    let spare = post(owner, "/api/v1/tokens", json!({"name": "spare"})).await;
    let their_token = post(Some(&stranger), "/api/v1/tokens", json!({"name": "theirs"})).await;
    // The tokens the requests authenticate with; their ids stay out of the paths, so a
    // generated revoke does not end the run's own credentials.
    let owner_auth = post(owner, "/api/v1/tokens", json!({"name": "fuzz"})).await;
    // Assets and a credential, ours and theirs, so the asset and vault paths meet real records.
    let asset = post(
        owner,
        "/api/v1/assets",
        json!({"company_id": company["id"], "name": "Fuzzed PC", "category": "computer"}),
    )
    .await;
    let their_asset = post(
        Some(&stranger),
        "/api/v1/assets",
        json!({"company_id": theirs["id"], "name": "Their PC", "category": "computer"}),
    )
    .await;
    let credential = post(
        owner,
        &format!(
            "/api/v1/assets/{}/credentials",
            asset["id"].as_str().unwrap()
        ),
        json!({"label": "Admin", "password": "fuzz-secret"}),
    )
    .await;
    // Work orders, ours and theirs, so the work-order paths meet real records.
    let order = post(
        owner,
        "/api/v1/work-orders",
        json!({"company_id": company["id"], "title": "Fuzzed order", "asset_ids": [asset["id"]]}),
    )
    .await;
    let their_order = post(
        Some(&stranger),
        "/api/v1/work-orders",
        json!({"company_id": theirs["id"], "title": "Their order"}),
    )
    .await;
    let ids = vec![
        order["id"].as_str().unwrap().to_owned(),
        their_order["id"].as_str().unwrap().to_owned(),
        asset["id"].as_str().unwrap().to_owned(),
        their_asset["id"].as_str().unwrap().to_owned(),
        credential["id"].as_str().unwrap().to_owned(),
        company["id"].as_str().unwrap().to_owned(),
        theirs["id"].as_str().unwrap().to_owned(),
        spare["id"].as_str().unwrap().to_owned(),
        their_token["id"].as_str().unwrap().to_owned(),
        victim.user_id.to_string(),
        stranger.user_id.to_string(),
        app.owner.user_id.to_string(),
    ];
    app.settle().await;
    (
        World {
            operations: operations(&doc),
            ids,
            owner_token: owner_auth["token"].as_str().unwrap().to_owned(),
            tech_token: tech.token,
            stranger_token: stranger.token,
        },
        doc,
    )
}

#[test]
fn no_request_to_the_api_gets_a_5xx() {
    // One runtime for the whole run, as `#[tokio::test]` would build it; each case blocks on
    // its request (the projection runners make progress meanwhile).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(TestApp::new());
    let (world, doc) = runtime.block_on(world(&app));
    let paths: std::collections::BTreeSet<&str> =
        world.operations.iter().map(|o| o.path.as_str()).collect();
    for expected in [
        "/api/v1/companies",
        "/api/v1/tokens/{id}",
        "/api/v1/sign-in",
    ] {
        assert!(
            paths.contains(expected),
            "{expected} is documented: {paths:?}"
        );
    }

    // The judge has teeth.
    let fake = |status: u16, content_type: &str, text: &str| Reply {
        status: axum::http::StatusCode::from_u16(status).unwrap(),
        content_type: content_type.into(),
        headers: Default::default(),
        text: text.into(),
    };
    assert!(judge(
        &Method::GET,
        &fake(
            500,
            "application/problem+json",
            r#"{"status":500,"detail":"x"}"#
        )
    )
    .is_some());
    assert!(judge(&Method::GET, &fake(400, "text/plain", "bad")).is_some());
    assert!(judge(
        &Method::GET,
        &fake(
            404,
            "application/problem+json",
            r#"{"status":404,"detail":"x"}"#
        )
    )
    .is_none());

    // First a sweep of the edges every operation must survive: each odd path segment, and
    // each method, with the owner's token and a plausible body.
    let mut edges = Vec::new();
    for operation in 0..world.operations.len() {
        let templated = world.operations[operation].path.contains('{');
        let segments = if templated { SPECIAL_SEGMENTS.len() } else { 1 };
        for special in 0..segments {
            for method in std::iter::once(None).chain((0..OTHER_METHODS.len()).map(Some)) {
                if method.is_some() && special > 0 {
                    continue;
                }
                edges.push(Case {
                    operation,
                    method,
                    segment: Segment::Special(special),
                    query: Query::None,
                    body: Body::SchemaIsh(vec![], false),
                    content_type: 0,
                    auth: Auth::Owner,
                    key: Key::None,
                });
            }
        }
    }
    let mut failures = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for case in &edges {
        let (method, path, headers, body) = render(&world, &doc, case);
        if Uri::try_from(path.as_str()).is_err() || !seen.insert((method.clone(), path.clone())) {
            continue;
        }
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let reply =
            runtime.block_on(app.send_body_as(None, method.clone(), &path, &body, &headers));
        if let Some(wrong) = judge(&method, &reply) {
            failures.push(format!("{method} {path} → {wrong}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} edge requests failed:\n{}",
        failures.len(),
        seen.len(),
        failures.join("\n")
    );

    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    });
    let sent = std::cell::Cell::new(0usize);
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, usize>::new());
    let result = runner.run(&case(world.operations.len(), world.ids.len()), |case| {
        let (method, path, headers, body) = render(&world, &doc, &case);
        if Uri::try_from(path.as_str()).is_err() {
            return Err(TestCaseError::reject("not a URI"));
        }
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let reply =
            runtime.block_on(app.send_body_as(None, method.clone(), &path, &body, &headers));
        sent.set(sent.get() + 1);
        *statuses
            .borrow_mut()
            .entry(reply.status.as_u16())
            .or_default() += 1;
        match judge(&method, &reply) {
            None => Ok(()),
            Some(wrong) => Err(TestCaseError::fail(format!(
                "{method} {path}\nheaders: {headers:?}\nbody: {}\n→ {wrong}",
                body.chars().take(300).collect::<String>()
            ))),
        }
    });
    let (sent, statuses) = (sent.get(), statuses.into_inner());
    eprintln!("sent {sent} requests; statuses: {statuses:?}");
    if let Err(failure) = result {
        panic!("{failure}");
    }
    // The run reached past the front door: successes and refusals of several kinds.
    for status in [200u16, 201, 400, 401, 404, 422] {
        assert!(
            statuses.contains_key(&status),
            "no {status} among {statuses:?}"
        );
    }
    drop(app);
}
