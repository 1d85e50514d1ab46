//! Errors of the HTTP layer. API errors are `application/problem+json` (RFC 9457); the request
//! id is added to every problem on the way out by `request_context`, which also hands the id
//! to the console's pages. Internal errors — and panics, caught by `panic_response` — are
//! logged and answered with "internal error" and the request id, nothing more.

use std::any::Any;
use std::convert::Infallible;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use commands::CommandError;
use domain::{ErrorKind, HasErrorKind, ValidationError};
use serde::Serialize;
use utoipa::ToSchema;

/// A problem document (RFC 9457), the body of every API error.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "/problems/validation",
    "title": "The request has invalid fields",
    "status": 422,
    "detail": "monthly_rate: must not be negative",
    "errors": [{"field": "monthly_rate", "message": "must not be negative"}],
    "request_id": "0b5c3f8e-2d1a-4c7e-9f3b-6a1d2e4f5a6b"
}))]
pub struct Problem {
    /// A URI reference naming the kind of problem: `about:blank` (the status says it all),
    /// `/problems/validation` or `/problems/conflict`.
    #[serde(rename = "type")]
    #[schema(value_type = String, format = "uri-reference", example = "about:blank")]
    pub kind: &'static str,
    /// A short summary of the kind of problem.
    #[schema(value_type = String, example = "Not found")]
    pub title: &'static str,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599, example = 404)]
    pub status: u16,
    /// What went wrong with this request, for people.
    pub detail: String,
    /// One entry per invalid field (validation problems only; absent otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<FieldError>, required = false)]
    pub errors: Vec<ValidationError>,
    /// The id of the request (also in the `x-request-id` response header): quote it when
    /// reporting a problem; the server's log has the details under this id.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    pub request_id: Option<String>,
}

// The schema of `domain::ValidationError`.
/// One invalid field of a request.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldError {
    /// The field, as named in the request body.
    #[schema(example = "monthly_rate")]
    pub field: String,
    /// What is wrong with it.
    #[schema(example = "must not be negative")]
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("validation failed")]
    Invalid(Vec<ValidationError>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{detail}")]
    Rejected { status: StatusCode, detail: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }

    pub fn problem(&self) -> Problem {
        let (status, kind, title) = match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "about:blank", "Bad request"),
            Self::Invalid(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "/problems/validation",
                "The request has invalid fields",
            ),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "about:blank", "Not found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "/problems/conflict", "Conflict"),
            Self::Rejected { status, .. } => (
                *status,
                "about:blank",
                status.canonical_reason().unwrap_or("Bad request"),
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "about:blank",
                "Internal server error",
            ),
        };
        let detail = match self {
            Self::Invalid(errors) => errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            Self::Internal(_) => "internal error; quote the request id when reporting it".into(),
            other => other.to_string(),
        };
        Problem {
            kind,
            title,
            status: status.as_u16(),
            detail,
            errors: match self {
                Self::Invalid(errors) => errors.clone(),
                _ => Vec::new(),
            },
            request_id: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(error) = &self {
            tracing::error!(%error, "internal error");
        }
        problem_response(self.problem())
    }
}

fn problem_response(problem: Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, problem_body(&problem)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response.extensions_mut().insert(problem);
    response
}

fn problem_body(problem: &Problem) -> String {
    serde_json::to_string(problem).unwrap_or_else(|_| "{}".into())
}

/// The id of the current request (the `x-request-id` header, set by the router when the client
/// sent none). An extractor, and a request extension set by `request_context`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .or_else(|| header_request_id(&parts.headers).map(RequestId))
            .unwrap_or_else(|| RequestId("-".into())))
    }
}

tokio::task_local! {
    static CURRENT_REQUEST_ID: String;
}

/// The id of the request being handled, for pages rendered deep inside a handler (the console's
/// error pages). `None` outside a request.
pub fn current_request_id() -> Option<String> {
    CURRENT_REQUEST_ID.try_with(Clone::clone).ok()
}

fn header_request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(&crate::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Whether errors at `path` are answered with problem documents (the API, health) rather than
/// the console's pages.
pub fn wants_problem(path: &str) -> bool {
    path.starts_with("/api/") || path == "/healthz"
}

/// Makes the request id available to handlers and pages (`RequestId`, `current_request_id`),
/// adds it to every problem document leaving the service, and turns a caught panic into the
/// console's friendly error page outside the API.
pub async fn request_context(mut request: Request, next: Next) -> Response {
    let request_id = header_request_id(request.headers());
    let problem_path = wants_problem(request.uri().path());
    if let Some(id) = &request_id {
        request.extensions_mut().insert(RequestId(id.clone()));
    }
    // PostgreSQL text cannot hold a NUL character: a query string with one is refused here,
    // once for every route, instead of failing in the database behind some filter.
    let nul_in_query = request
        .uri()
        .query()
        .is_some_and(|q| q.to_ascii_lowercase().contains("%00"));
    let run = async move {
        let mut response = if !nul_in_query {
            next.run(request).await
        } else if problem_path {
            ApiError::BadRequest("the query string must not contain NUL characters (%00)".into())
                .into_response()
        } else {
            crate::console::bad_address_page(
                "The address contains a NUL character (%00), which no page accepts.",
            )
        };
        if response.extensions().get::<Panicked>().is_some() && !problem_path {
            return crate::console::server_error_page();
        }
        if let Some(mut problem) = response.extensions_mut().remove::<Problem>() {
            problem.request_id = current_request_id();
            let (parts, _) = response.into_parts();
            return Response::from_parts(parts, problem_body(&problem).into());
        }
        response
    };
    match request_id {
        Some(id) => CURRENT_REQUEST_ID.scope(id, run).await,
        None => run.await,
    }
}

/// Marks the response of a caught panic, so `request_context` can answer with a page where a
/// person is waiting for one.
#[derive(Debug, Clone, Copy)]
pub struct Panicked;

/// The answer to a handler that panicked (`CatchPanicLayer`): the panic is logged, the client
/// gets a problem+json 500 with nothing of the panic's message (`request_context` adds the
/// request id, or swaps in the console's error page outside the API).
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    tracing::error!(panic = %message, "a handler panicked");
    let mut response = problem_response(ApiError::Internal(message).problem());
    response.extensions_mut().insert(Panicked);
    response
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let detail = match &rejection {
            JsonRejection::JsonDataError(e) => {
                // serde's message, without axum's generic prefix.
                let text = e.body_text();
                text.split_once(": ")
                    .map_or(text.clone(), |(_, rest)| rest.to_owned())
            }
            JsonRejection::JsonSyntaxError(e) => {
                let text = e.body_text();
                format!(
                    "the body is not valid JSON: {}",
                    text.split_once(": ")
                        .map_or(text.as_str(), |(_, rest)| rest)
                )
            }
            JsonRejection::MissingJsonContentType(_) => {
                "send the body as JSON with `Content-Type: application/json`".into()
            }
            JsonRejection::BytesRejection(e) => {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    format!("the body is larger than {} bytes", crate::api::BODY_LIMIT)
                } else {
                    e.body_text()
                }
            }
            other => other.body_text(),
        };
        Self::Rejected {
            status: rejection.status(),
            detail,
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        let text = rejection.body_text();
        Self::BadRequest(format!(
            "bad query string: {}",
            text.split_once(": ")
                .map_or(text.as_str(), |(_, rest)| rest)
        ))
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::internal(error)
    }
}

impl<E: std::error::Error + HasErrorKind> From<CommandError<E>> for ApiError {
    fn from(error: CommandError<E>) -> Self {
        match error {
            CommandError::Domain(e) => match e.kind() {
                ErrorKind::NotFound => Self::NotFound(e.to_string()),
                ErrorKind::Conflict => Self::Conflict(e.to_string()),
                ErrorKind::Invalid => Self::Rejected {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    detail: e.to_string(),
                },
            },
            CommandError::NotFound => Self::NotFound("not found".into()),
            CommandError::Conflict => Self::Conflict(error.to_string()),
            CommandError::Corrupt(_) | CommandError::Store(_) => Self::internal(error),
        }
    }
}

/// Unknown paths: problem+json under `/api/`, the console's page elsewhere.
pub async fn not_found_fallback(uri: axum::http::Uri) -> Response {
    if wants_problem(uri.path()) {
        ApiError::NotFound(format!("no such endpoint: {}", uri.path())).into_response()
    } else {
        crate::console::not_found_page()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::company::CompanyError;

    #[test]
    fn each_error_kind_maps_to_its_status() {
        let status = |e: ApiError| e.problem().status;
        assert_eq!(
            status(CommandError::Domain(CompanyError::NotFound).into()),
            404
        );
        assert_eq!(
            status(CommandError::Domain(CompanyError::Archived).into()),
            409
        );
        assert_eq!(status(CommandError::<CompanyError>::Conflict.into()), 409);
        assert_eq!(status(CommandError::<CompanyError>::NotFound.into()), 404);
        assert_eq!(
            status(CommandError::<CompanyError>::Store("boom".into()).into()),
            500
        );
        assert_eq!(status(ApiError::Invalid(vec![])), 422);
    }

    #[test]
    fn internal_errors_say_nothing_about_internals() {
        let problem = ApiError::internal("password authentication failed for user x").problem();
        assert!(!problem.detail.contains("password"));
        assert_eq!(problem.status, 500);
    }

    #[test]
    fn a_panic_becomes_a_problem_500_that_says_nothing_of_it() {
        for panic in [
            Box::new("secret &str") as Box<dyn Any + Send>,
            Box::new(String::from("secret String")),
            Box::new(42_u8),
        ] {
            let response = panic_response(panic);
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "application/problem+json"
            );
            assert!(response.extensions().get::<Panicked>().is_some());
            let problem = response.extensions().get::<Problem>().unwrap();
            assert_eq!(problem.status, 500);
            assert!(!problem.detail.contains("secret"), "{}", problem.detail);
            assert!(problem.detail.contains("request id"));
        }
    }

    #[test]
    fn problems_are_for_the_api_and_health_pages_for_the_rest() {
        assert!(wants_problem("/api/v1/companies"));
        assert!(wants_problem("/api/nowhere"));
        assert!(wants_problem("/healthz"));
        assert!(!wants_problem("/companies"));
        assert!(!wants_problem("/apiary"));
        assert!(!wants_problem("/"));
    }

    #[test]
    fn validation_problems_list_their_fields() {
        let problem =
            ApiError::Invalid(vec![ValidationError::new("name", "must not be empty")]).problem();
        assert_eq!(problem.errors[0].field, "name");
        assert_eq!(problem.detail, "name: must not be empty");
    }
}
