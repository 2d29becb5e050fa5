//! The cross-site request guard of the whole router: a state-changing request (any method
//! but GET, HEAD, OPTIONS and TRACE) that a browser says comes from another site is refused
//! with 403 before any handler runs. Browsers say so in `Sec-Fetch-Site` (anything but
//! `same-origin`, or `none` for a typed URL) and in `Origin` (which must name the `Host` the
//! request was sent to). Requests with neither header — the CLI's `/internal/wake`, API
//! clients — pass: they are not a browser acting for another site.

use axum::extract::Request;
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::pages::PageError;

/// Middleware: refuses cross-site state-changing requests with 403.
pub async fn refuse_cross_site(request: Request, next: Next) -> Response {
    if !request.method().is_safe()
        && let Some(why) = cross_site(request.headers())
    {
        tracing::warn!(method = %request.method(), path = %request.uri().path(), why,
            "refused a cross-site request");
        let message = format!("This request came from another site ({why}) and was refused.");
        return PageError::new(StatusCode::FORBIDDEN, message).into_response();
    }
    next.run(request).await
}

/// Why the headers mark a cross-site request, or `None` when they do not.
fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return Some("Sec-Fetch-Site is not same-origin");
    }
    let origin = headers.get(ORIGIN)?;
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    let origin_authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, authority)| authority);
    match (origin_authority, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => None,
        _ => Some("Origin does not match Host"),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn same_origin_requests_and_requests_without_browser_headers_pass() {
        let host = ("host", "127.0.0.1:8888");
        assert_eq!(cross_site(&headers(&[host])), None);
        assert_eq!(cross_site(&headers(&[])), None);
        let same = [
            host,
            ("origin", "http://127.0.0.1:8888"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert_eq!(cross_site(&headers(&same)), None);
        assert_eq!(cross_site(&headers(&[("sec-fetch-site", "none")])), None);
    }

    #[test]
    fn another_site_a_foreign_origin_or_a_null_origin_is_cross_site() {
        let host = ("host", "127.0.0.1:8888");
        for bad in [
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![host, ("sec-fetch-site", "same-site")],
            vec![host, ("origin", "http://evil.example")],
            vec![host, ("origin", "http://127.0.0.1:9999")],
            vec![host, ("origin", "null")],
            vec![("origin", "http://127.0.0.1:8888")],
        ] {
            assert!(cross_site(&headers(&bad)).is_some(), "{bad:?}");
        }
    }
}
