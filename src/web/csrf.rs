//! The cross-site request guard of the whole router: a state-changing request (any method
//! but GET, HEAD, OPTIONS and TRACE) that a browser says comes from another site is refused
//! with 403 before any handler runs. Browsers say so in `Sec-Fetch-Site` (anything but
//! `same-origin`, or `none` for a typed URL) and in `Origin` (which must name the `Host` the
//! request was sent to). Requests with neither header — the CLI's `/internal/wake`, API
//! clients — pass: they are not a browser acting for another site.
//!
//! Two more defences against other sites live here: while `serve` listens on loopback, a
//! request naming any other `Host` is refused (DNS rebinding: a site whose name resolves to
//! 127.0.0.1 would otherwise be same-origin with the dashboard), and every response forbids
//! being framed (clickjacking) and content sniffing.

use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
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

/// Which `Host` names requests may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostPolicy {
    /// Only loopback names (`localhost`, `*.localhost`, `127.0.0.1`, `[::1]`, any port):
    /// the server listens on loopback, so no other name can legitimately reach it.
    Loopback,
    /// Any name (the server listens on the network; authentication guards it).
    Any,
}

/// Middleware: refuses a request whose `Host` the policy does not allow (421), and marks
/// every response as not to be framed or sniffed.
pub async fn guard_host(
    State(policy): State<HostPolicy>,
    request: Request,
    next: Next,
) -> Response {
    if policy == HostPolicy::Loopback
        && let Some(host) = request.headers().get(HOST)
        && !is_loopback_host(host)
    {
        tracing::warn!(host = ?host, path = %request.uri().path(), "refused a request for another host");
        let message = "This server answers only to localhost names (it listens on loopback). \
                       Behind a reverse proxy, forward the Host as localhost.";
        return PageError::new(StatusCode::MISDIRECTED_REQUEST, message).into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

/// Whether a `Host` header names this machine's loopback interface.
fn is_loopback_host(host: &HeaderValue) -> bool {
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        // `[::1]:8888`, `127.0.0.1:8888`, `localhost:8888`; a bare `[::1]` has a colon
        // inside its brackets only.
        Some((name, port)) if !port.contains(']') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name == "[::1]"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
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

    #[tokio::test]
    async fn another_host_is_misdirected_and_no_response_may_be_framed() {
        use axum::body::Body;
        use axum::routing::get;
        use tower::ServiceExt;
        let app = |policy| {
            axum::Router::new()
                .route("/", get(|| async { "ok" }))
                .layer(axum::middleware::from_fn_with_state(policy, guard_host))
        };
        let get_as = |host: &'static str| {
            axum::http::Request::get("/")
                .header("host", host)
                .body(Body::empty())
                .unwrap()
        };
        let response = app(HostPolicy::Loopback)
            .oneshot(get_as("evil.example:8888"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
        let response = app(HostPolicy::Loopback)
            .oneshot(get_as("localhost:8888"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-frame-options"], "DENY");
        assert_eq!(
            response.headers()["content-security-policy"],
            "frame-ancestors 'none'"
        );
        let response = app(HostPolicy::Any)
            .oneshot(get_as("orchestrator.example:8888"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[test]
    fn only_loopback_host_names_pass_the_loopback_policy() {
        for ok in [
            "localhost",
            "localhost:8888",
            "LOCALHOST.:1",
            "app.localhost:8888",
            "127.0.0.1:8888",
            "127.1.2.3",
            "[::1]:8888",
            "[::1]",
        ] {
            assert!(is_loopback_host(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in [
            "evil.example:8888",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1:8888",
            "[::2]:8888",
            "",
        ] {
            assert!(!is_loopback_host(&HeaderValue::from_static(bad)), "{bad}");
        }
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
