//! The dashboard's static files (`assets/`: the stylesheet, small scripts, the icon),
//! embedded in the binary so `serve` works from any directory, and served at
//! `/static/{name}`. Templates link them through [`url`], which appends a hash of the
//! content: a browser keeps a versioned URL for a year and still sees a new build at once,
//! since the new build links a new URL.
//!
//! To add a file: put it in `assets/` and add a line to [`ASSETS`].

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// FNV-1a of `body`, computed at compile time.
    hash: u64,
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $name)),
            hash: fnv1a(include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/assets/",
                $name
            ))),
        }
    };
}

/// Every file served under `/static/`.
static ASSETS: [Asset; 3] = [
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// Versioned URLs are immutable: their content can never change under them.
const CACHE_VERSIONED: &str = "public, max-age=31536000, immutable";
/// Unversioned (or stale-versioned) URLs are revalidated with the ETag on every use.
const CACHE_REVALIDATE: &str = "no-cache";

/// A 64-bit FNV-1a hash: not cryptographic, only a cache key that changes with the file.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The URL of an embedded asset, versioned by its content:
/// `url("style.css")` is `/static/style.css?v=<hash>`. In templates:
/// `{{ crate::web::assets::url("style.css") }}`. An unknown name gives its unversioned
/// URL (which answers 404), so a typo shows up as a missing file in the browser.
pub fn url(name: &str) -> String {
    match find(name) {
        Some(asset) => format!("/static/{}?v={:016x}", asset.name, asset.hash),
        None => format!("/static/{name}"),
    }
}

/// The routes serving the assets (`GET`/`HEAD /static/{name}`).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/static/{name}", get(serve))
}

/// Looks the name up in the embedded table only: a request value is never used as a path.
async fn serve(
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(asset) = find(&name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let version = format!("v={:016x}", asset.hash);
    let versioned = query.is_some_and(|q| q.split('&').any(|pair| pair == version));
    let cache = if versioned {
        CACHE_VERSIONED
    } else {
        CACHE_REVALIDATE
    };
    let etag = format!("\"{:016x}\"", asset.hash);
    let common = [
        (header::ETAG, header_value(&etag)),
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if matches_etag(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let content_type = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    )];
    (common, content_type, asset.body).into_response()
}

/// Whether `If-None-Match` names this ETag (or `*`).
fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// A header value from text that is ASCII by construction (hex digits and quotes).
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(uri: &str, if_none_match: Option<&str>) -> Response {
        let mut request = Request::get(uri);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        router::<()>()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    fn header(response: &Response, name: header::HeaderName) -> &str {
        response.headers()[name].to_str().unwrap()
    }

    #[tokio::test]
    async fn the_versioned_stylesheet_is_css_cached_for_a_year() {
        let response = get(&url("style.css"), None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, header::CONTENT_TYPE),
            "text/css; charset=utf-8"
        );
        assert_eq!(header(&response, header::CACHE_CONTROL), CACHE_VERSIONED);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(body.starts_with(b"/* orchestrator dashboard"));
    }

    #[tokio::test]
    async fn an_unversioned_or_stale_url_is_revalidated_and_a_matching_etag_gives_304() {
        let plain = get("/static/app.js", None).await;
        assert_eq!(
            header(&plain, header::CONTENT_TYPE),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(header(&plain, header::CACHE_CONTROL), CACHE_REVALIDATE);
        let stale = get("/static/app.js?v=0000000000000000", None).await;
        assert_eq!(header(&stale, header::CACHE_CONTROL), CACHE_REVALIDATE);
        let etag = header(&plain, header::ETAG).to_string();
        let again = get("/static/app.js", Some(&format!("W/\"x\", {etag}"))).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&again, header::ETAG), etag);
        let changed = get("/static/app.js", Some("\"0\"")).await;
        assert_eq!(changed.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_names_and_paths_are_404() {
        for uri in [
            "/static/nope.css",
            "/static/..%2FCargo.toml",
            "/static/style.css/x",
        ] {
            assert_eq!(
                get(uri, None).await.status(),
                StatusCode::NOT_FOUND,
                "{uri}"
            );
        }
    }

    #[test]
    fn urls_carry_the_content_hash_and_unknown_names_stay_unversioned() {
        let style = url("style.css");
        assert!(style.starts_with("/static/style.css?v="), "{style}");
        assert_eq!(style.len(), "/static/style.css?v=".len() + 16);
        assert_ne!(url("app.js"), style);
        assert_eq!(url("missing.css"), "/static/missing.css");
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
