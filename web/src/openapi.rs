//! The OpenAPI document at `GET /api/v1/openapi.json`, generated from the handlers'
//! `#[utoipa::path]` annotations and the types' `ToSchema` derives (utoipa), so it describes
//! the code that runs. Also the reusable problem+json responses the operations refer to.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response as OpenApiResponse, ResponseBuilder};
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use crate::{api, error, health};

/// The name of the bearer security scheme in `components.securitySchemes`.
pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "SupportTracker API",
        description = "The JSON API of SupportTracker.\n\n\
            - Money is a decimal string such as `\"500.00\"`, never a JSON number; instants are \
              RFC 3339 (`date-time`); ids are UUIDs.\n\
            - Errors are `application/problem+json` (RFC 9457) and carry the request's id \
              (also in the `x-request-id` response header): quote it when reporting a problem.\n\
            - Authentication: `Authorization: Bearer <token>` on every endpoint but \
              `/healthz` and this document. A token acts as the person who created it, with \
              that person's current role (see docs/roles.md); records of other tenants answer \
              404. Missing or invalid token: 401; role not allowed: 403.\n\
            - `POST` and `PATCH` accept an `Idempotency-Key` header: a retried request with the \
              same key changes nothing more and answers with the first outcome.",
    ),
    paths(
        api::list_companies,
        api::create_company,
        api::get_company,
        api::update_company,
        crate::tokens::list_tokens,
        crate::tokens::create_token,
        crate::tokens::revoke_token,
        crate::tokens::sign_in,
        crate::team::list_users,
        crate::team::invite_user,
        crate::team::get_user,
        crate::team::update_user,
        crate::team::remove_user,
        crate::contacts::list_contacts,
        crate::contacts::create_contact,
        crate::contacts::get_contact,
        crate::contacts::update_contact,
        crate::contacts::get_preferences,
        crate::contacts::set_preferences,
        crate::settings::get_tenant,
        crate::settings::update_tenant,
        crate::service_settings::get_business_hours,
        crate::service_settings::set_business_hours,
        crate::service_settings::get_sla_policies,
        crate::service_settings::set_sla_policies,
        crate::service_settings::get_work_types,
        crate::service_settings::set_work_types,
        crate::service_settings::set_labour_cost,
        crate::service_settings::get_coverage,
        crate::service_settings::set_coverage,
        crate::equipment::list_assets,
        crate::equipment::create_asset,
        crate::equipment::get_asset,
        crate::equipment::update_asset,
        crate::credentials::list_for_asset,
        crate::credentials::create_for_asset,
        crate::credentials::list_for_company,
        crate::credentials::create_for_company,
        crate::credentials::get_credential,
        crate::credentials::update_credential,
        crate::credentials::remove_credential,
        crate::credentials::reveal_credential,
        crate::credentials::share_credential,
        crate::credentials::revoke_share,
        crate::search::search_api,
        crate::work_orders::list_work_orders,
        crate::work_orders::create_work_order,
        crate::work_orders::get_work_order,
        crate::work_orders::update_work_order,
        crate::work_orders::add_comment,
        crate::work_orders::list_time_entries,
        crate::work_orders::add_time_entry,
        crate::work_orders::remove_time_entry_api,
        crate::work_orders::list_materials_api,
        crate::work_orders::add_material_api,
        crate::work_orders::remove_material_api,
        crate::work_orders::start_timer_api,
        crate::work_orders::stop_timer_api,
        crate::work_orders::issue_link_api,
        crate::work_orders::revoke_link_api,
        crate::work_orders::unbilled_api,
        crate::notify::api::list_notifications,
        crate::notify::api::get_notification,
        crate::notify::api::resend_notification,
        crate::notify::api::send_test_notification,
        crate::notify::api::list_templates,
        crate::notify::api::get_template,
        crate::notify::api::set_template,
        crate::notify::api::reset_template,
        crate::notify::api::preview_template,
        crate::notify::api::get_settings,
        crate::notify::api::set_email,
        crate::notify::api::remove_email,
        crate::notify::api::set_sms,
        crate::notify::api::remove_sms,
        crate::billing::api::set_billing_api,
        crate::billing::api::run_billing,
        crate::billing::api::preview_billing,
        crate::billing::api::create_payment,
        crate::billing::api::unapply_payment,
        crate::billing::api::refund_payment,
        crate::billing::api::reverse_payment,
        crate::billing::api::create_invoice_api,
        crate::billing::api::issue_invoice,
        crate::billing::api::void_invoice,
        crate::billing::api::credit_invoice,
        crate::billing::api::apply_credit,
        crate::billing::reports::list_invoices,
        crate::billing::reports::get_invoice,
        crate::billing::reports::invoice_pdf,
        crate::billing::reports::list_payments,
        crate::billing::reports::get_payment,
        crate::billing::reports::company_balance,
        crate::billing::reports::company_statement,
        crate::billing::reports::ar_aging,
        crate::billing::reports::ar_aging_csv,
        crate::billing::reports::get_billing_settings,
        crate::billing::reports::set_billing_settings,
        crate::billing::catalogue::list_services,
        crate::billing::catalogue::create_service,
        crate::billing::catalogue::update_service,
        crate::billing::catalogue::list_subscriptions,
        crate::billing::catalogue::create_subscription,
        crate::billing::catalogue::update_subscription,
        health::healthz,
        openapi_json,
    ),
    components(
        schemas(
            api::CompanyJson,
            api::CompanyStatus,
            api::CompanyList,
            api::CreateCompanyBody,
            api::UpdateCompanyBody,
            api::CompanyStatusFilter,
            api::CustomerStatusJson,
            crate::equipment::AssetJson,
            crate::equipment::AssetList,
            crate::equipment::AssetBody,
            crate::credentials::CredentialJson,
            crate::credentials::CredentialList,
            crate::credentials::CredentialBody,
            crate::credentials::RevealedJson,
            crate::credentials::ShareBody,
            crate::credentials::ShareJson,
            crate::search::SearchResult,
            crate::search::SearchResults,
            crate::work_orders::WorkOrderJson,
            crate::work_orders::WorkOrderList,
            crate::work_orders::SlaJson,
            crate::work_orders::OpenBody,
            crate::work_orders::ChangeBody,
            crate::work_orders::CommentBody,
            crate::work_orders::TimeBody,
            crate::work_orders::TimeEntryJson,
            crate::work_orders::TimeEntries,
            crate::work_orders::MaterialBody,
            crate::work_orders::MaterialJson,
            crate::work_orders::Materials,
            crate::work_orders::StopBody,
            crate::work_orders::LinkBody,
            crate::work_orders::IssuedLink,
            crate::work_orders::UnbilledJson,
            crate::work_orders::UnbilledList,
            crate::tokens::TokenJson,
            crate::tokens::TokenList,
            crate::tokens::NewTokenJson,
            crate::tokens::CreateTokenBody,
            crate::tokens::SignInBody,
            crate::team::UserJson,
            crate::team::UserList,
            crate::team::UserRole,
            crate::team::UserStatus,
            crate::team::InviteUserBody,
            crate::team::UpdateUserBody,
            crate::contacts::ContactJson,
            crate::contacts::ContactList,
            crate::contacts::ContactBody,
            crate::contacts::PreferencesJson,
            crate::contacts::PreferencesBody,
            crate::notify::api::NotificationStatus,
            crate::notify::api::NotificationKind,
            crate::notify::api::NotificationChannel,
            crate::notify::api::NotificationJson,
            crate::notify::api::ContentJson,
            crate::notify::api::NotificationEventJson,
            crate::notify::api::NotificationList,
            crate::notify::api::TestBody,
            crate::notify::api::TemplateJson,
            crate::notify::api::TemplateEntry,
            crate::notify::api::TemplateList,
            crate::notify::api::PreviewEmailJson,
            crate::notify::api::PreviewJson,
            crate::notify::api::ProviderJson,
            crate::notify::api::SettingsJson,
            crate::billing::api::BillingBody,
            crate::billing::api::BillingJson,
            crate::billing::api::RunBody,
            crate::billing::api::RunJson,
            crate::billing::run::Billed,
            crate::billing::api::PaymentBody,
            crate::billing::ops::PaymentOutcome,
            crate::billing::ops::AllocationJson,
            crate::billing::api::UnapplyBody,
            crate::billing::api::RefundBody,
            crate::billing::api::ReverseBody,
            crate::billing::api::LineBody,
            crate::billing::api::InvoiceBody,
            crate::billing::api::InvoiceCreated,
            crate::billing::api::IssueBody,
            crate::billing::api::VoidBody,
            crate::billing::api::CreditBody,
            crate::billing::api::CreditNoteJson,
            crate::billing::api::BalanceJson,
            crate::billing::api::ApplyCreditBody,
            crate::billing::reports::InvoiceList,
            crate::billing::reports::InvoiceDetail,
            crate::billing::reports::PaymentList,
            crate::billing::reports::BillingSettings,
            crate::billing::reports::LateFeeBody,
            crate::billing::reports::OpaqueJson,
            crate::billing::catalogue::ServiceBody,
            crate::billing::catalogue::ServiceJson,
            crate::billing::catalogue::ServiceList,
            crate::billing::catalogue::SubscriptionBody,
            crate::billing::catalogue::SubscriptionJson,
            crate::billing::catalogue::SubscriptionList,
            crate::notify::api::EmailBody,
            crate::notify::api::SmsBody,
            crate::settings::TenantJson,
            crate::settings::UpdateTenantBody,
            crate::service_settings::BusinessHoursJson,
            crate::service_settings::SlaPolicyJson,
            crate::service_settings::SlaPoliciesJson,
            crate::service_settings::WorkTypeJson,
            crate::service_settings::WorkTypesJson,
            crate::service_settings::LabourCostJson,
            crate::service_settings::CoverageJson,
            error::Problem,
            error::FieldError,
            health::Health,
            health::HealthStatus,
            health::Database,
            health::ProjectionStatusSchema,
            health::PositionSchema,
        ),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            TooManyRequests,
            NotFound,
            Conflict,
            PayloadTooLarge,
            UnsupportedMediaType,
            Unprocessable,
            InternalError,
        ),
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "companies", description = "The service's customer companies"),
        (name = "tokens", description = "API tokens: create, list and revoke them, or sign in for one"),
        (name = "team", description = "The people of the tenant: invite them, change their role, disable, enable or remove them"),
        (name = "contacts", description = "A customer company's people"),
        (name = "assets", description = "A customer's equipment, tagged per tenant without gaps"),
        (name = "credentials", description = "The credentials vault: secrets are sealed, revealed only on request (and recorded), shared by limited links"),
        (name = "search", description = "One search over companies, contacts, assets and credential labels"),
        (name = "work orders", description = "Work orders: raise, assign, move through their lifecycle, comment, log time (billable or contract), SLA due times in business hours, status links"),
        (name = "notifications", description = "Email and SMS to customers and staff: the delivery log (what was sent, to whom, what became of it), resending, test messages, the wording of every kind of message, the organisation's own SMTP server and SMS provider (secrets are never shown)"),
        (name = "billing", description = "Contracts billed monthly in advance by runs (scheduled, or by hand with a preview), ad-hoc invoices and drafts, invoice PDFs, payments applied oldest due date first with credit carried to the next invoice, unapplying, refunds, bounced checks, credit notes and voids, balances, statements, the AR aging report (as of any date, JSON or CSV), reminders and late fees"),
        (name = "settings", description = "The organisation's name, currency and time zone; the service desk's business hours, SLA policies, work types and rates, labour costs; a company's contract coverage"),
        (name = "service", description = "Health and this document"),
    ),
)]
pub struct ApiDoc;

/// Declares `Authorization: Bearer <token>` (the operations that need it say so).
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // utoipa fills the licence from the crate's manifest, which names none.
        openapi.info.license = None;
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <token>`: an API token created in the console \
                         (Account › API tokens), through the API, or by `supporttracker \
                         bootstrap`. It acts as its person with their current role.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document, built once.
pub fn document() -> &'static str {
    static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    });
    &DOCUMENT
}

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/api/v1/openapi.json", get(openapi_json))
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "service",
    operation_id = "openapi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API",
            body = Object, content_type = "application/json"),
        (status = 500, response = InternalError),
    )
)]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

/// A problem+json response referring to the `Problem` schema, with an example.
fn problem(description: &str, example: serde_json::Value) -> OpenApiResponse {
    ResponseBuilder::new()
        .description(description)
        .header(
            "x-request-id",
            HeaderBuilder::new()
                .schema(Some(Object::with_type(Type::String)))
                .description(Some("The request's id, also in the problem's `request_id`"))
                .build(),
        )
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .example(Some(example))
                .build(),
        )
        .build()
}

macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident => $description:literal, $example:expr;)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl<'r> utoipa::ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<OpenApiResponse>) {
                (stringify!($name), problem($description, $example).into())
            }
        }
    )*};
}

const EXAMPLE_ID: &str = "0b5c3f8e-2d1a-4c7e-9f3b-6a1d2e4f5a6b";

problem_responses! {
    /// 400: a malformed request (bad id, query string, header or JSON syntax).
    BadRequest => "Malformed request: an id that is not a UUID, a bad query string or \
        `Idempotency-Key`, or a body that is not JSON",
        json!({"type": "about:blank", "title": "Bad request", "status": 400,
            "detail": "company id \"42\" is not valid: ids are UUIDs", "request_id": EXAMPLE_ID});
    /// 401: no token, or one that is unknown, revoked, or whose person is disabled.
    Unauthorized => "No valid API token: send `Authorization: Bearer <token>` with a token \
        that is not revoked and whose person is enabled",
        json!({"type": "about:blank", "title": "Unauthorized", "status": 401,
            "detail": "a valid API token is required: send `Authorization: Bearer <token>`",
            "request_id": EXAMPLE_ID});
    /// 403: the token's person has a role that does not allow this.
    Forbidden => "The token's person has a role that does not allow this (see docs/roles.md)",
        json!({"type": "about:blank", "title": "Forbidden", "status": 403,
            "detail": "your role does not allow this; see docs/roles.md",
            "request_id": EXAMPLE_ID});
    /// 429: too many failed sign-ins for this account or from this address.
    TooManyRequests => "Too many failed sign-ins for this account or from this address; \
        `Retry-After` says how many seconds to wait",
        json!({"type": "about:blank", "title": "Too Many Requests", "status": 429,
            "detail": "too many failed sign-ins; try again in 30 s",
            "request_id": EXAMPLE_ID});
    /// 404: no such record (or one of another tenant), or no such endpoint.
    NotFound => "No such record (records of other tenants do not exist for you)",
        json!({"type": "about:blank", "title": "Not found", "status": 404,
            "detail": "company 3f0c9a52-8d0e-4b8e-9a57-1f1c2a3b4c5d not found",
            "request_id": EXAMPLE_ID});
    /// 409: the record's state refuses the change, or a concurrent change won.
    Conflict => "The record's state refuses this change (for example it is archived), or \
        someone changed it at the same moment",
        json!({"type": "/problems/conflict", "title": "Conflict", "status": 409,
            "detail": "the company is archived", "request_id": EXAMPLE_ID});
    /// 413: the body is larger than the API reads.
    PayloadTooLarge => "The body is larger than 65536 bytes",
        json!({"type": "about:blank", "title": "Payload Too Large", "status": 413,
            "detail": "the body is larger than 65536 bytes", "request_id": EXAMPLE_ID});
    /// 415: the body is not sent as JSON.
    UnsupportedMediaType => "The body is not sent as `application/json`",
        json!({"type": "about:blank", "title": "Unsupported Media Type", "status": 415,
            "detail": "send the body as JSON with `Content-Type: application/json`",
            "request_id": EXAMPLE_ID});
    /// 422: well-formed JSON with invalid fields; `errors` lists each one.
    Unprocessable => "Invalid fields (each one in `errors`), unknown fields, or a body that \
        is not a JSON object",
        json!({"type": "/problems/validation", "title": "The request has invalid fields",
            "status": 422, "detail": "name: must not be empty; monthly_rate: must not be negative",
            "errors": [
                {"field": "name", "message": "must not be empty"},
                {"field": "monthly_rate", "message": "must not be negative"}
            ],
            "request_id": EXAMPLE_ID});
    /// 500: the server failed; the log has the details under the request id.
    InternalError => "The server failed; nothing about the cause is sent. Quote the request \
        id when reporting it",
        json!({"type": "about:blank", "title": "Internal server error", "status": 500,
            "detail": "internal error; quote the request id when reporting it",
            "request_id": EXAMPLE_ID});
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_json() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "SupportTracker API");
        assert!(doc["components"]["securitySchemes"][BEARER].is_object());
    }
}
