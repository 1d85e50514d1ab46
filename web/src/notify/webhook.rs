//! Twilio's status callbacks: `POST /webhooks/twilio/{tenant}/{notification}` (the URL the
//! worker gives Twilio with each SMS). A callback counts only when its `X-Twilio-Signature`
//! verifies with the tenant's auth token over the URL Twilio called (`ST_PUBLIC_URL` + path)
//! and the form's parameters; anything else is refused with 403 and changes nothing. Twilio
//! retries callbacks: a report already recorded appends nothing.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use commands::{CommandError, ConflictPolicy, EventMeta};
use domain::notification::{Channel, Notification, NotificationCommand, NotificationError};
use uuid::Uuid;

use super::deliver::{provider, Provider};
use super::sms::{parse_status_callback, verify_twilio_signature};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/twilio/{tenant_id}/{id}", post(status_callback))
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

async fn status_callback(
    State(state): State<AppState>,
    Path((tenant_id, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (Ok(tenant_id), Ok(id)) = (Uuid::parse_str(&tenant_id), Uuid::parse_str(&id)) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let Some(signature) = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return plain(StatusCode::FORBIDDEN, "missing X-Twilio-Signature");
    };
    let Ok(params) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return plain(StatusCode::BAD_REQUEST, "the body must be a form");
    };
    let tenant = match state
        .store
        .load::<domain::tenant::Tenant>(tenant_id, &tenant_id.to_string())
        .await
    {
        Ok((tenant, _)) if tenant.created => tenant,
        Ok(_) | Err(CommandError::NotFound) => return plain(StatusCode::NOT_FOUND, "not found"),
        Err(error) => {
            tracing::error!(%error, "twilio callback: loading the tenant");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "try again later");
        }
    };
    let token = match provider(&state, tenant_id, &tenant, Channel::Sms).await {
        Ok((Some(Provider::Twilio(settings)), _)) => settings.auth_token,
        Ok(_) => return plain(StatusCode::FORBIDDEN, "no Twilio account is set up"),
        Err(error) => {
            tracing::error!(%error, "twilio callback: the SMS settings");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "try again later");
        }
    };
    let url = format!(
        "{}{}",
        state.settings().public_url,
        uri.path_and_query()
            .map(|p| p.as_str())
            .unwrap_or(uri.path())
    );
    if !verify_twilio_signature(&token, &url, &params, signature) {
        tracing::warn!(%tenant_id, notification = %id, "twilio callback with a bad signature refused");
        return plain(StatusCode::FORBIDDEN, "the signature does not verify");
    }
    let Some(update) = parse_status_callback(&params) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "MessageSid and MessageStatus are required",
        );
    };
    let notification = match state
        .store
        .load::<Notification>(tenant_id, &id.to_string())
        .await
    {
        Ok((n, _)) if n.queued.is_some() => n,
        Ok(_) | Err(CommandError::NotFound) => return plain(StatusCode::NOT_FOUND, "not found"),
        Err(error) => {
            tracing::error!(%error, "twilio callback: loading the notification");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "try again later");
        }
    };
    if notification
        .provider_message_id
        .as_deref()
        .is_some_and(|sid| sid != update.message_sid)
    {
        return plain(StatusCode::CONFLICT, "this message has another MessageSid");
    }
    let meta = EventMeta::new(tenant_id, "webhook:twilio").with_command_id(Uuid::new_v5(
        &id,
        format!("twilio/{}/{}", update.message_sid, update.status).as_bytes(),
    ));
    match state
        .store
        .execute::<Notification>(
            &id.to_string(),
            NotificationCommand::RecordDelivery {
                status: update.status,
                error_code: update.error_code,
                at: Utc::now(),
            },
            &(),
            &meta,
            ConflictPolicy::RetryOnce,
        )
        .await
    {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        // A report for a message whose sending was not recorded as sent (yet).
        Err(CommandError::Domain(NotificationError::NotSent)) => {
            plain(StatusCode::CONFLICT, "this message is not recorded as sent")
        }
        Err(error) => {
            tracing::error!(%error, "twilio callback: recording the report");
            plain(StatusCode::SERVICE_UNAVAILABLE, "try again later")
        }
    }
}
