//! Static files, compiled into the binary (no CDN): the console's stylesheet and htmx
//! (`web/static/THIRD_PARTY.md` says where htmx comes from). Each answer carries a strong
//! `ETag` (a hash of the file computed at compile time) and a day-long `Cache-Control`; a
//! browser revalidating with `If-None-Match` gets `304 Not Modified`.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// How long browsers and proxies may use a file without asking again; after that the `ETag`
/// makes asking cheap.
pub const CACHE_CONTROL: &str = "public, max-age=86400";

/// One file served from the binary.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    hash: u64,
}

impl Asset {
    const fn new(path: &'static str, content_type: &'static str, body: &'static [u8]) -> Self {
        Self {
            path,
            content_type,
            body,
            hash: fnv1a(body),
        }
    }

    /// The strong entity tag of the file, quotes included.
    pub fn etag(&self) -> String {
        format!("\"{:016x}\"", self.hash)
    }

    fn respond(&self, request_headers: &HeaderMap) -> Response {
        let etag = self.etag();
        let headers = [
            (header::ETAG, etag.clone()),
            (header::CACHE_CONTROL, CACHE_CONTROL.to_owned()),
        ];
        if not_modified(request_headers, &etag) {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        let mut response = (headers, self.body).into_response();
        let response_headers = response.headers_mut();
        response_headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        response_headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        response
    }
}

pub static APP_CSS: Asset = Asset::new(
    "/static/app.css",
    "text/css; charset=utf-8",
    include_bytes!("../static/app.css"),
);

/// htmx 2.0.11 (0BSD), `dist/htmx.min.js` of the npm package, unmodified.
pub static HTMX_JS: Asset = Asset::new(
    "/static/htmx.min.js",
    "text/javascript; charset=utf-8",
    include_bytes!("../static/htmx.min.js"),
);

/// The console's own behaviour (modal forms).
pub static APP_JS: Asset = Asset::new(
    "/static/app.js",
    "text/javascript; charset=utf-8",
    include_bytes!("../static/app.js"),
);

pub static ALL: [&Asset; 3] = [&APP_CSS, &HTMX_JS, &APP_JS];

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            APP_CSS.path,
            get(|headers: HeaderMap| async move { APP_CSS.respond(&headers) }),
        )
        .route(
            HTMX_JS.path,
            get(|headers: HeaderMap| async move { HTMX_JS.respond(&headers) }),
        )
        .route(
            APP_JS.path,
            get(|headers: HeaderMap| async move { APP_JS.respond(&headers) }),
        )
}

/// Whether `If-None-Match` names the current version (weak comparison, as RFC 9110 asks for
/// this header).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// 64-bit FNV-1a: enough to tell two versions of a file apart, and computable at compile time.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = Request::builder().uri(path);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        router::<()>()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn each_file_is_served_with_its_type_and_cache_headers() {
        for asset in ALL {
            let response = get(asset.path, &[]).await;
            assert_eq!(response.status(), StatusCode::OK, "{}", asset.path);
            let headers = response.headers().clone();
            assert_eq!(headers[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(headers[header::CACHE_CONTROL], CACHE_CONTROL);
            assert_eq!(headers[header::ETAG], asset.etag().as_str());
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            assert_eq!(&body[..], asset.body);
        }
    }

    #[tokio::test]
    async fn a_current_etag_gets_304_and_a_stale_one_the_file() {
        let etag = HTMX_JS.etag();
        for matching in [etag.clone(), format!("W/{etag}"), format!("\"x\", {etag}")] {
            let response = get(HTMX_JS.path, &[("if-none-match", &matching)]).await;
            assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{matching}");
            assert_eq!(response.headers()[header::ETAG], etag.as_str());
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            assert!(body.is_empty());
        }
        let stale = get(HTMX_JS.path, &[("if-none-match", "\"0000000000000000\"")]).await;
        assert_eq!(stale.status(), StatusCode::OK);
    }

    #[test]
    fn htmx_is_the_pinned_2_x_build() {
        let text = std::str::from_utf8(HTMX_JS.body).unwrap();
        assert!(text.starts_with("var htmx=function(){"));
        assert!(text.contains("version:\"2.0.11\""), "version string");
        assert_ne!(APP_CSS.etag(), HTMX_JS.etag());
    }
}
