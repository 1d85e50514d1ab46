//! Files kept with records: an asset's documents and a work order's attachments. The bytes
//! live in `asset_document_blobs` (by SHA-256, once per tenant), outside the event log; the
//! record's events carry name, type, size and hash. The type is judged from the bytes, never
//! from what the browser claims, and downloads are attachments in a sandbox.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use domain::asset::AssetDocument;
use domain::authz::Action;
use domain::workorder::WorkOrderCommand;
use uuid::Uuid;

use crate::auth::Principal;
use crate::console::{
    csrf_refusal, error_page, internal_page, not_found_page, path_uuid, redirect_with_flash,
    two_ids, Cookies, FormParts,
};
use crate::AppState;

/// The largest document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 10 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/work-orders/{id}/attachments", post(attach_to_work_order))
        .route(
            "/work-orders/{id}/attachments/{document_id}",
            get(download_work_order_attachment),
        )
        .layer(axum::extract::DefaultBodyLimit::max(
            MAX_DOCUMENT_BYTES + 64 * 1024,
        ))
}

/// The document's type, read from its bytes: PDF, PNG, JPEG, GIF, WebP, or plain UTF-8 text.
/// Anything else is refused.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if !bytes.is_empty() && !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok() {
        Some("text/plain; charset=utf-8")
    } else {
        None
    }
}

/// A file name safe to store and to send back: its last path part, without control
/// characters or quotes, at most 200 characters.
pub fn clean_file_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | ';'))
        .take(200)
        .collect();
    let cleaned = cleaned.trim().to_owned();
    if cleaned.is_empty() {
        "document".into()
    } else {
        cleaned
    }
}

/// Checks an upload and stores its bytes; the page to answer with when it is refused.
pub(crate) async fn store(
    state: &AppState,
    tenant_id: Uuid,
    cookies: &Cookies,
    id: Uuid,
    file_name: &str,
    bytes: &[u8],
) -> Result<AssetDocument, Response> {
    if bytes.is_empty() {
        return Err(error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            cookies,
            "No document",
            "Choose a file to attach.",
        ));
    }
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            cookies,
            "Too large",
            "A document is at most 10 MB.",
        ));
    }
    let Some(content_type) = sniff(bytes) else {
        return Err(error_page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            cookies,
            "This kind of file is not accepted",
            "Attach a PDF, an image (PNG, JPEG, GIF, WebP) or a plain text file.",
        ));
    };
    let sha256 = commands::identity::token_digest_bytes(bytes);
    sqlx::query(
        "INSERT INTO asset_document_blobs (tenant_id, sha256, content) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant_id)
    .bind(&sha256)
    .bind(bytes)
    .execute(&state.pool)
    .await
    .map_err(internal_page)?;
    Ok(AssetDocument {
        id,
        file_name: clean_file_name(file_name),
        content_type: content_type.to_owned(),
        size: bytes.len() as u64,
        sha256,
    })
}

/// The download of a stored document: an attachment, never rendered by the browser.
pub async fn download(state: &AppState, tenant_id: Uuid, document: &AssetDocument) -> Response {
    let content: Result<Option<Vec<u8>>, _> = sqlx::query_scalar(
        "SELECT content FROM asset_document_blobs WHERE tenant_id = $1 AND sha256 = $2",
    )
    .bind(tenant_id)
    .bind(&document.sha256)
    .fetch_optional(&state.pool)
    .await;
    match content {
        Ok(Some(bytes)) => (
            [
                (header::CONTENT_TYPE, document.content_type.clone()),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"{}\"; filename*=UTF-8''{}",
                        document
                            .file_name
                            .replace(|c: char| !c.is_ascii_graphic() && c != ' ', "_"),
                        crate::console::percent_encode(&document.file_name)
                    ),
                ),
                (header::CACHE_CONTROL, "private, no-store".to_owned()),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; sandbox".to_owned(),
                ),
            ],
            bytes,
        )
            .into_response(),
        Ok(None) => not_found_page(),
        Err(error) => internal_page(error),
    }
}

async fn attach_to_work_order(
    State(state): State<AppState>,
    me: Principal,
    axum::Extension(cookies): axum::Extension<Cookies>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    multipart: axum::extract::Multipart,
) -> Response {
    let form = match FormParts::read(multipart, &cookies, "A document is at most 10 MB.").await {
        Ok(form) => form,
        Err(answer) => return answer,
    };
    let csrf = form.text("csrf");
    let (file_name, bytes) = form.file("file");
    if let Some(refused) = csrf_refusal(&cookies, &headers, &csrf) {
        return refused;
    }
    if let Err(refused) = me.require(Action::EditWorkOrders) {
        return refused.into_response();
    }
    let Some(id) = path_uuid(path) else {
        return not_found_page();
    };
    if crate::work_orders::load(&state, &me, id).await.is_err() {
        return not_found_page();
    }
    let meta = me.meta();
    let document = match store(
        &state,
        me.tenant_id,
        &cookies,
        Uuid::new_v5(&meta.command_id, b"attachment"),
        &file_name,
        &bytes,
    )
    .await
    {
        Ok(document) => document,
        Err(page) => return page,
    };
    let name = document.file_name.clone();
    match crate::work_orders::run(&state, &meta, id, WorkOrderCommand::Attach { document }).await {
        Ok(done) => {
            state
                .read_your_writes(
                    crate::work_orders::VIEWS,
                    "work_order",
                    &done.aggregate_id,
                    done.version,
                )
                .await;
            redirect_with_flash(
                &format!("/work-orders/{id}#attachments"),
                &format!("Attached {name}."),
            )
        }
        Err(error) => error_page(
            StatusCode::CONFLICT,
            &cookies,
            "Not attached",
            &error.to_string(),
        ),
    }
}

async fn download_work_order_attachment(
    State(state): State<AppState>,
    me: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    if let Err(refused) = me.require(Action::ViewWorkOrders) {
        return refused.into_response();
    }
    let Some((id, document_id)) = two_ids(path) else {
        return not_found_page();
    };
    let Ok(order) = crate::work_orders::load(&state, &me, id).await else {
        return not_found_page();
    };
    match order.attachments.iter().find(|d| d.id == document_id) {
        Some(document) => download(&state, me.tenant_id, document).await,
        None => not_found_page(),
    }
}
