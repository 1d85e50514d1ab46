//! Errors of the HTTP layer. API errors are `application/problem+json` (RFC 9457); the request
//! id is added to every problem on the way out by `render_problems`. Internal errors are
//! logged and answered with "internal error" and the request id, nothing more.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use commands::CommandError;
use domain::{ErrorKind, HasErrorKind, ValidationError};
use serde::Serialize;

/// One problem document.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ValidationError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
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

/// Adds the request id to every problem document leaving the service.
pub async fn render_problems(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(&crate::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut response = next.run(request).await;
    if let Some(mut problem) = response.extensions_mut().remove::<Problem>() {
        problem.request_id = request_id;
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, problem_body(&problem).into());
    }
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
    if uri.path().starts_with("/api/") {
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
    fn validation_problems_list_their_fields() {
        let problem =
            ApiError::Invalid(vec![ValidationError::new("name", "must not be empty")]).problem();
        assert_eq!(problem.errors[0].field, "name");
        assert_eq!(problem.detail, "name: must not be empty");
    }
}
