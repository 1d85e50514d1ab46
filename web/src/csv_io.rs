//! CSV export of the companies, contacts and assets lists, and CSV import of them (issue 4).
//!
//! An import is checked whole first: every bad row is reported with its line number, field
//! and reason, and nothing is imported until the file is clean. The rows of a clean file are
//! then executed as commands whose ids derive from the file's content and the row, so sending
//! the same file again (after a failure half-way, or twice by mistake) imports nothing twice.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Multipart, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use commands::EventMeta;
use domain::asset::AssetStatus;
use domain::authz::Action;
use domain::company::{
    Company, CompanyCommand, CompanyProfile, CustomerStatus, ProfileChanges, ProfileInput,
};
use domain::contact::{Contact, ContactCommand, ContactDetails, ContactInput};
use domain::values::{Amount, CompanyName};
use projections::assets::{self, AssetQuery};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Principal;
use crate::console::{csrf_refusal, internal_page, redirect_with_flash, Cookies, FormParts};
use crate::equipment::{self, AssetBody};
use crate::error::ApiError;
use crate::AppState;

/// The largest file an import reads.
pub const MAX_BYTES: usize = 5 * 1024 * 1024;
/// The most rows one import holds.
pub const MAX_ROWS: usize = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/export/companies.csv", get(export_companies))
        .route("/export/contacts.csv", get(export_contacts))
        .route("/export/assets.csv", get(export_assets))
        .route(
            "/import",
            get(import_page)
                .post(import)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_BYTES + 64 * 1024)),
        )
}

/// A cell as spreadsheets should read it: text that starts like a formula is prefixed with
/// `'` (CSV injection), everything else as is.
fn cell(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    }
}

fn csv_response(name: &str, rows: Vec<Vec<String>>) -> Response {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        if let Err(error) = writer.write_record(row.iter().map(|v| cell(v))) {
            return internal_page(error);
        }
    }
    match writer.into_inner() {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
            bytes,
        )
            .into_response(),
        Err(error) => internal_page(error),
    }
}

async fn company_names(
    state: &AppState,
    tenant_id: Uuid,
) -> Result<Vec<(Uuid, String, bool)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, archived FROM companies WHERE tenant_id = $1 ORDER BY lower(name), id",
    )
    .bind(tenant_id)
    .fetch_all(&state.pool)
    .await
}

async fn export_companies(State(state): State<AppState>, me: Principal) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    type Row = (
        Uuid,
        String,
        rust_decimal::Decimal,
        bool,
        String,
        String,
        String,
        String,
        String,
        String,
        Vec<String>,
    );
    let rows: Result<Vec<Row>, _> = sqlx::query_as(
        "SELECT id, name, monthly_rate, archived, customer_status, billing_address, site_address,
                phone, website, notes, tags
           FROM companies WHERE tenant_id = $1
          ORDER BY lower(name), id",
    )
    .bind(me.tenant_id)
    .fetch_all(&state.pool)
    .await;
    match rows {
        Ok(rows) => {
            let mut out = vec![[
                "id",
                "name",
                "monthly_rate",
                "archived",
                "customer_status",
                "billing_address",
                "site_address",
                "phone",
                "website",
                "notes",
                "tags",
            ]
            .map(str::to_owned)
            .to_vec()];
            out.extend(rows.into_iter().map(
                |(id, name, rate, archived, status, billing, site, phone, web, notes, tags)| {
                    vec![
                        id.to_string(),
                        name,
                        format!("{rate:.2}"),
                        archived.to_string(),
                        status,
                        billing,
                        site,
                        phone,
                        web,
                        notes,
                        tags.join(", "),
                    ]
                },
            ));
            csv_response("companies.csv", out)
        }
        Err(error) => internal_page(error),
    }
}

#[derive(Debug, Deserialize, Default)]
struct ExportParams {
    company_id: Option<Uuid>,
}

async fn export_contacts(
    State(state): State<AppState>,
    me: Principal,
    params: Result<Query<ExportParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let company_id = params.ok().and_then(|Query(p)| p.company_id);
    let rows: Result<Vec<projections::contacts::ContactRow>, _> = sqlx::query_as(
        "SELECT * FROM contacts WHERE tenant_id = $1 AND ($2::uuid IS NULL OR company_id = $2)
          ORDER BY company_id, former, lower(name), id",
    )
    .bind(me.tenant_id)
    .bind(company_id)
    .fetch_all(&state.pool)
    .await;
    let names = company_names(&state, me.tenant_id).await;
    match (rows, names) {
        (Ok(rows), Ok(names)) => {
            let names: HashMap<Uuid, String> =
                names.into_iter().map(|(id, name, _)| (id, name)).collect();
            let mut out = vec![[
                "id",
                "company",
                "name",
                "email",
                "office_phone",
                "cell_phone",
                "department",
                "position",
                "primary",
                "billing",
                "status",
            ]
            .map(str::to_owned)
            .to_vec()];
            out.extend(rows.into_iter().map(|c| {
                vec![
                    c.id.to_string(),
                    names.get(&c.company_id).cloned().unwrap_or_default(),
                    c.name,
                    c.email.unwrap_or_default(),
                    c.office_phone,
                    c.cell_phone,
                    c.department,
                    c.position,
                    c.is_primary.to_string(),
                    c.billing.to_string(),
                    if c.former { "former" } else { "current" }.into(),
                ]
            }));
            csv_response("contacts.csv", out)
        }
        (Err(error), _) | (_, Err(error)) => internal_page(error),
    }
}

/// The asset columns of an export and of an import, in this order.
const ASSET_COLUMNS: [&str; 16] = [
    "company",
    "name",
    "category",
    "make",
    "model",
    "serial_number",
    "mac_address",
    "ip_address",
    "operating_system",
    "location",
    "purchase_date",
    "warranty_end",
    "vendor",
    "notes",
    "status",
    "contact",
];

async fn export_assets(
    State(state): State<AppState>,
    me: Principal,
    params: Result<Query<ExportParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewCompanies) {
        return refused.into_response();
    }
    let company_id = params.ok().and_then(|Query(p)| p.company_id);
    let loaded = async {
        let rows = assets::list(
            &state.pool,
            me.tenant_id,
            &AssetQuery {
                company_id,
                limit: 1_000_000,
                ..AssetQuery::default()
            },
        )
        .await?;
        let names = company_names(&state, me.tenant_id).await?;
        let people: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT id, name FROM contacts WHERE tenant_id = $1")
                .bind(me.tenant_id)
                .fetch_all(&state.pool)
                .await?;
        Ok::<_, sqlx::Error>((rows, names, people))
    };
    let (rows, names, people) = match loaded.await {
        Ok(loaded) => loaded,
        Err(error) => return internal_page(error),
    };
    let names: HashMap<Uuid, String> = names.into_iter().map(|(id, n, _)| (id, n)).collect();
    let people: HashMap<Uuid, String> = people.into_iter().collect();
    let mut out = vec![std::iter::once("tag")
        .chain(ASSET_COLUMNS)
        .map(str::to_owned)
        .collect::<Vec<_>>()];
    let date = |d: Option<chrono::NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
    out.extend(rows.into_iter().map(|a| {
        vec![
            a.tag,
            names.get(&a.company_id).cloned().unwrap_or_default(),
            a.name,
            a.category,
            a.make,
            a.model,
            a.serial_number,
            a.mac_address,
            a.ip_address,
            a.operating_system,
            a.location,
            date(a.purchase_date),
            date(a.warranty_end),
            a.vendor,
            a.notes,
            a.status,
            a.contact_id
                .and_then(|c| people.get(&c).cloned())
                .unwrap_or_default(),
        ]
    }));
    csv_response("assets.csv", out)
}

// ---- Import.

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Companies,
    Contacts,
    Assets,
}

impl Kind {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "companies" => Some(Self::Companies),
            "contacts" => Some(Self::Contacts),
            "assets" => Some(Self::Assets),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Companies => "companies",
            Self::Contacts => "contacts",
            Self::Assets => "assets",
        }
    }

    /// (required columns, optional columns).
    fn columns(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Self::Companies => (
                &["name"],
                &[
                    "monthly_rate",
                    "customer_status",
                    "billing_address",
                    "site_address",
                    "phone",
                    "website",
                    "notes",
                    "tags",
                    "id",
                    "archived",
                ],
            ),
            Self::Contacts => (
                &["company", "name"],
                &[
                    "email",
                    "office_phone",
                    "cell_phone",
                    "department",
                    "position",
                    "primary",
                    "billing",
                    "notes",
                    "id",
                    "status",
                ],
            ),
            Self::Assets => (
                &["company", "name", "category"],
                &[
                    "make",
                    "model",
                    "serial_number",
                    "mac_address",
                    "ip_address",
                    "operating_system",
                    "location",
                    "purchase_date",
                    "warranty_end",
                    "vendor",
                    "notes",
                    "status",
                    "contact",
                    "tag",
                ],
            ),
        }
    }

    fn action(self) -> Action {
        match self {
            Self::Companies => Action::EditCompanies,
            Self::Contacts => Action::EditContacts,
            Self::Assets => Action::EditAssets,
        }
    }
}

/// One problem of a file: its line (1 is the header), the column, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: usize,
    pub column: String,
    pub message: String,
}

/// One checked row, ready to run.
enum Planned {
    Company {
        name: CompanyName,
        rate: Amount,
        status: CustomerStatus,
        profile: CompanyProfile,
    },
    Contact {
        company_id: Uuid,
        details: ContactDetails,
    },
    Asset {
        body: AssetBody,
    },
}

/// A checked file: its rows (with their line numbers) or its problems.
pub struct Plan {
    rows: Vec<(usize, Planned)>,
    pub errors: Vec<RowError>,
    digest: String,
}

fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "true" | "yes" | "y" | "1" | "x"
    )
}

/// Reads and checks a whole file against the tenant's records.
pub async fn plan(
    state: &AppState,
    me: &Principal,
    kind: Kind,
    bytes: &[u8],
) -> Result<Plan, ApiError> {
    // The file's identity: a retried import of the same bytes names the same commands.
    let digest = commands::identity::token_digest(&String::from_utf8_lossy(bytes));
    let mut errors = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|h| h.trim().to_lowercase()).collect(),
        Err(e) => {
            return Ok(Plan {
                rows: Vec::new(),
                errors: vec![RowError {
                    line: 1,
                    column: String::new(),
                    message: format!("the header line cannot be read: {e}"),
                }],
                digest,
            })
        }
    };
    let (required, optional) = kind.columns();
    for column in required {
        if !headers.iter().any(|h| h == column) {
            errors.push(RowError {
                line: 1,
                column: (*column).to_owned(),
                message: "this column is required".into(),
            });
        }
    }
    for header in &headers {
        if !required.contains(&header.as_str()) && !optional.contains(&header.as_str()) {
            errors.push(RowError {
                line: 1,
                column: header.clone(),
                message: format!(
                    "unknown column; the columns are {}",
                    required
                        .iter()
                        .chain(optional)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    if !errors.is_empty() {
        return Ok(Plan {
            rows: Vec::new(),
            errors,
            digest,
        });
    }
    let companies = company_names(state, me.tenant_id).await?;
    let mut by_name: HashMap<String, Vec<(Uuid, bool)>> = HashMap::new();
    for (id, name, archived) in companies {
        by_name
            .entry(name.to_lowercase())
            .or_default()
            .push((id, archived));
    }
    let people: Vec<(Uuid, Uuid, String, Option<String>, bool)> = sqlx::query_as(
        "SELECT id, company_id, name, email, former FROM contacts WHERE tenant_id = $1",
    )
    .bind(me.tenant_id)
    .fetch_all(&state.pool)
    .await?;
    let (_, categories) = equipment::asset_settings(state, me.tenant_id).await?;
    let mut seen_names: HashMap<String, usize> = HashMap::new();
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        if index >= MAX_ROWS {
            errors.push(RowError {
                line,
                column: String::new(),
                message: format!("a file holds at most {MAX_ROWS} rows: split it"),
            });
            break;
        }
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                errors.push(RowError {
                    line,
                    column: String::new(),
                    message: format!("this line cannot be read: {e}"),
                });
                continue;
            }
        };
        let get = |column: &str| {
            headers
                .iter()
                .position(|h| h == column)
                .and_then(|i| record.get(i))
                .unwrap_or("")
                .to_owned()
        };
        let mut fail = |column: &str, message: String| {
            errors.push(RowError {
                line,
                column: column.to_owned(),
                message,
            })
        };
        let company_of = |fail: &mut dyn FnMut(&str, String)| -> Option<Uuid> {
            let name = get("company");
            match by_name.get(&name.to_lowercase()).map(Vec::as_slice) {
                None | Some([]) => {
                    fail("company", format!("no company is called “{name}”"));
                    None
                }
                Some([(id, false)]) => Some(*id),
                Some([(_, true)]) => {
                    fail("company", format!("“{name}” is archived: restore it first"));
                    None
                }
                Some(_) => {
                    fail(
                        "company",
                        format!("several companies are called “{name}”: rename one first"),
                    );
                    None
                }
            }
        };
        match kind {
            Kind::Companies => {
                let name = CompanyName::parse(&get("name"))
                    .map_err(|e| fail("name", e.message))
                    .ok();
                let rate_text = get("monthly_rate");
                let rate = Amount::parse(
                    "monthly_rate",
                    if rate_text.is_empty() {
                        "0"
                    } else {
                        &rate_text
                    },
                )
                .map_err(|e| fail("monthly_rate", e.message))
                .ok();
                if let Some(name) = &name {
                    let key = name.as_str().to_lowercase();
                    if by_name.contains_key(&key) {
                        fail(
                            "name",
                            format!("a company called “{}” exists already", name.as_str()),
                        );
                    } else if let Some(first) = seen_names.insert(key, line) {
                        fail("name", format!("the same name is on line {first}"));
                    }
                }
                let status_text = get("customer_status");
                let status = if status_text.is_empty() {
                    Some(CustomerStatus::Active)
                } else {
                    CustomerStatus::parse("customer_status", &status_text)
                        .map_err(|e| fail("customer_status", e.message))
                        .ok()
                };
                let (billing, site, phone, web, notes, tags) = (
                    get("billing_address"),
                    get("site_address"),
                    get("phone"),
                    get("website"),
                    get("notes"),
                    get("tags"),
                );
                let profile = ProfileChanges::parse(&ProfileInput {
                    billing_address: Some(&billing),
                    site_address: Some(&site),
                    phone: Some(&phone),
                    website: Some(&web),
                    notes: Some(&notes),
                    tags: Some(
                        tags.split([',', ';'])
                            .map(str::trim)
                            .filter(|t| !t.is_empty())
                            .collect(),
                    ),
                })
                .map(|changes| changes.applied_to(&CompanyProfile::default()))
                .map_err(|problems| {
                    for p in problems {
                        fail(p.field, p.message);
                    }
                })
                .ok();
                if let (Some(name), Some(rate), Some(status), Some(profile)) =
                    (name, rate, status, profile)
                {
                    rows.push((
                        line,
                        Planned::Company {
                            name,
                            rate,
                            status,
                            profile,
                        },
                    ));
                }
            }
            Kind::Contacts => {
                let company_id = company_of(&mut fail);
                let (name, email, office, cell, department, position, notes) = (
                    get("name"),
                    get("email"),
                    get("office_phone"),
                    get("cell_phone"),
                    get("department"),
                    get("position"),
                    get("notes"),
                );
                let details = ContactDetails::parse(&ContactInput {
                    name: &name,
                    email: &email,
                    office_phone: &office,
                    cell_phone: &cell,
                    department: &department,
                    position: &position,
                    primary: truthy(&get("primary")),
                    billing: truthy(&get("billing")),
                    notes: &notes,
                });
                match details {
                    Ok(details) => {
                        if let Some(company_id) = company_id {
                            rows.push((
                                line,
                                Planned::Contact {
                                    company_id,
                                    details,
                                },
                            ));
                        }
                    }
                    Err(problems) => {
                        for p in problems {
                            fail(p.field, p.message);
                        }
                    }
                }
            }
            Kind::Assets => {
                let company_id = company_of(&mut fail);
                let contact_id = match (company_id, get("contact")) {
                    (_, c) if c.is_empty() => None,
                    (None, _) => None,
                    (Some(company_id), wanted) => {
                        let lower = wanted.to_lowercase();
                        let found: Vec<Uuid> = people
                            .iter()
                            .filter(|(_, company, name, email, former)| {
                                *company == company_id
                                    && !former
                                    && (name.to_lowercase() == lower
                                        || email.as_deref().is_some_and(|e| e == lower))
                            })
                            .map(|(id, ..)| *id)
                            .collect();
                        match found.as_slice() {
                            [id] => Some(*id),
                            [] => {
                                fail(
                                    "contact",
                                    format!("“{wanted}” is not a current contact of that company"),
                                );
                                None
                            }
                            _ => {
                                fail(
                                    "contact",
                                    format!(
                                        "several contacts are called “{wanted}”: use their email"
                                    ),
                                );
                                None
                            }
                        }
                    }
                };
                let values: [String; 13] = [
                    get("name"),
                    get("category"),
                    get("make"),
                    get("model"),
                    get("serial_number"),
                    get("mac_address"),
                    get("ip_address"),
                    get("operating_system"),
                    get("location"),
                    get("purchase_date"),
                    get("warranty_end"),
                    get("vendor"),
                    get("notes"),
                ];
                let checked =
                    domain::asset::AssetDetails::parse(&equipment::input_of(&values), &categories);
                if let Err(problems) = &checked {
                    for p in problems {
                        fail(p.field, p.message.clone());
                    }
                }
                let status = get("status");
                if !status.is_empty() {
                    if let Err(e) = AssetStatus::parse(&status) {
                        fail("status", e.message);
                    }
                }
                if let (Some(company_id), Ok(_)) = (company_id, checked) {
                    let body = equipment::body_of(company_id, &values, &status, contact_id);
                    rows.push((line, Planned::Asset { body }));
                }
            }
        }
    }
    if rows.is_empty() && errors.is_empty() {
        errors.push(RowError {
            line: 2,
            column: String::new(),
            message: "the file has no rows".into(),
        });
    }
    Ok(Plan {
        rows,
        errors,
        digest,
    })
}

/// Runs a clean plan; returns how many rows it imported (rows of an earlier run of the same
/// file are not imported again).
pub async fn run(
    state: &AppState,
    me: &Principal,
    kind: Kind,
    plan: Plan,
) -> Result<usize, ApiError> {
    let mut done = 0;
    let mut last: Option<(&'static str, String, usize)> = None;
    for (line, row) in plan.rows {
        let command_id = Uuid::new_v5(
            &me.tenant_id,
            format!("import:{}:{}:{line}", kind.as_str(), plan.digest).as_bytes(),
        );
        let meta: EventMeta = me.meta().with_command_id(command_id);
        let id = meta.new_aggregate_id().to_string();
        let (replayed, written) = match row {
            Planned::Company {
                name,
                rate,
                status,
                profile,
            } => {
                let done = state
                    .store
                    .create::<Company>(
                        &id,
                        CompanyCommand::Register {
                            name,
                            monthly_rate: rate,
                            customer_status: status,
                            profile,
                        },
                        &(),
                        &meta,
                    )
                    .await?;
                (done.replayed, ("company", done.version))
            }
            Planned::Contact {
                company_id,
                details,
            } => {
                let done = state
                    .store
                    .create::<Contact>(
                        &id,
                        ContactCommand::Add {
                            company_id,
                            details,
                        },
                        &(),
                        &meta,
                    )
                    .await?;
                (done.replayed, ("contact", done.version))
            }
            Planned::Asset { body } => {
                let done = equipment::create(state, me, &meta, &body).await?;
                (done.replayed, ("asset", done.version))
            }
        };
        last = Some((written.0, id, written.1));
        if !replayed {
            done += 1;
        }
    }
    // The lists show the whole import once the last row is in their read models (they apply
    // the log in order).
    if let Some((aggregate_type, id, version)) = last {
        let views: &[&str] = match aggregate_type {
            "company" => &["companies", "search"],
            "contact" => &["contacts", "search"],
            _ => equipment::ASSET_VIEWS,
        };
        state
            .read_your_writes(views, aggregate_type, &id, version)
            .await;
    }
    Ok(done)
}

#[derive(Template, WebTemplate)]
#[template(path = "import.html")]
struct ImportPage {
    flash: Option<String>,
    csrf: String,
    kind: String,
    file_name: String,
    checked_rows: usize,
    errors: Vec<RowError>,
    message: Option<String>,
}

async fn import_page(
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
) -> Response {
    if !(me.may(Action::EditCompanies)
        || me.may(Action::EditContacts)
        || me.may(Action::EditAssets))
    {
        return me.forbidden().into_response();
    }
    ImportPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        kind: "assets".into(),
        file_name: String::new(),
        checked_rows: 0,
        errors: Vec::new(),
        message: None,
    }
    .into_response()
}

async fn import(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    let form = match FormParts::read(
        multipart,
        &cookies,
        "A file is at most 5 MB and 10,000 rows.",
    )
    .await
    {
        Ok(form) => form,
        Err(answer) => return answer,
    };
    let (csrf, kind, mode) = (form.text("csrf"), form.text("kind"), form.text("mode"));
    let (file_name, bytes) = form.file("file");
    if let Some(refused) = csrf_refusal(&cookies, &headers, &csrf) {
        return refused;
    }
    let Some(kind_value) = Kind::parse(&kind) else {
        return refusal(
            &cookies,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Choose what the file holds: companies, contacts or assets.",
        );
    };
    if let Err(refused) = me.require(kind_value.action()) {
        return refused.into_response();
    }
    if bytes.is_empty() {
        return refusal(
            &cookies,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Choose a CSV file to import.",
        );
    }
    if bytes.len() > MAX_BYTES {
        return refusal(
            &cookies,
            StatusCode::PAYLOAD_TOO_LARGE,
            "The file is larger than 5 MB: split it.",
        );
    }
    let checked = match plan(&state, &me, kind_value, &bytes).await {
        Ok(plan) => plan,
        Err(error) => return internal_page(error),
    };
    let page = |errors: Vec<RowError>, rows: usize, message: Option<String>| ImportPage {
        flash: cookies.flash.clone(),
        csrf: cookies.csrf.clone(),
        kind: kind.clone(),
        file_name: file_name.clone(),
        checked_rows: rows,
        errors,
        message,
    };
    if !checked.errors.is_empty() {
        let errors = checked.errors.clone();
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            page(errors, checked.rows.len(), None),
        )
            .into_response();
    }
    let rows = checked.rows.len();
    if mode != "import" {
        return page(
            Vec::new(),
            rows,
            Some(format!(
                "{rows} row(s) are ready to import. Nothing was imported yet: choose “Import” to do it."
            )),
        )
        .into_response();
    }
    match run(&state, &me, kind_value, checked).await {
        Ok(done) => {
            let to = match kind_value {
                Kind::Companies => "/companies",
                _ => "/import",
            };
            let skipped = rows - done;
            let message = if skipped == 0 {
                format!("Imported {done} {}.", kind_value.as_str())
            } else {
                format!(
                    "Imported {done} {}; {skipped} row(s) had been imported from this file before.",
                    kind_value.as_str()
                )
            };
            redirect_with_flash(to, &message)
        }
        Err(error) => internal_page(error),
    }
}

fn refusal(cookies: &Cookies, status: StatusCode, message: &str) -> Response {
    crate::console::error_page(status, cookies, "The import cannot go on", message)
}
