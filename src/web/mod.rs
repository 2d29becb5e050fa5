//! The HTTP front-end of `serve`: the dashboard's pages and form actions (`pages`), the
//! Airflow-compatible REST API (`api`, `/api/v2`, with `/health`), the Prometheus scrape
//! (`/metrics`), logins (`auth`), and the wake-up the CLI sends after it changes the store.
//! Handlers stay thin: extract → call the service → respond. Guards on the whole router: a
//! body size limit, the cross-site request refusal (`csrf`), authentication and roles
//! (`auth`), and HTML 404/405 pages for unknown paths and methods (JSON under `/api/`).

pub mod api;
pub mod assets;
pub mod auth;
mod csrf;
mod graph_svg;
mod pages;
mod server;

pub use server::{
    DEFAULT_MAX_CONNECTIONS, HEADER_READ_TIMEOUT, IDLE_TIMEOUT, STREAM_KEEP_ALIVE,
    connection_limit, raise_open_file_limit, serve,
};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use http_body_util::LengthLimitError;
use serde_json::json;

use crate::service::Service;

/// Request bodies larger than this are refused with 413, on every route.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Path the CLI posts to after queueing a run, pausing a DAG, etc.
pub const WAKE_PATH: &str = "/internal/wake";

/// Shared state of the handlers: the one service every front-end goes through.
#[derive(Clone)]
pub struct AppState {
    /// The store, the live DAG bag and the engine.
    pub service: Service,
}

/// Builds the router of a server listening on loopback.
pub fn router(state: AppState) -> Router {
    router_for(state, csrf::HostPolicy::Loopback)
}

/// Builds the router of a server listening at `bind`: one on loopback answers only to
/// loopback host names.
pub fn router_on(state: AppState, bind: std::net::SocketAddr) -> Router {
    let policy = match bind.ip().is_loopback() {
        true => csrf::HostPolicy::Loopback,
        false => csrf::HostPolicy::Any,
    };
    router_for(state, policy)
}

fn router_for(state: AppState, hosts: csrf::HostPolicy) -> Router {
    let gate = auth::Gate::new(state.service.clone());
    Router::new()
        .route("/", get(pages::dags::dags))
        .route("/dags/{dag_id}", get(pages::dag::dag))
        .route("/dags/{dag_id}/source", get(pages::source::source))
        .route("/dags/{dag_id}/trigger", post(pages::dag_actions::trigger))
        .route("/dags/{dag_id}/pause", post(pages::dag_actions::pause))
        .route("/dags/{dag_id}/unpause", post(pages::dag_actions::unpause))
        .route("/dags/{dag_id}/runs/{run_id}", get(pages::run::page))
        .route(
            "/dags/{dag_id}/runs/{run_id}/clear",
            post(pages::run::clear),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}",
            get(pages::log::page),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/clear",
            post(pages::run::clear_task),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/mark",
            post(pages::run::mark),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs/stream",
            get(pages::log::stream),
        )
        .merge(assets::router())
        .merge(api::router())
        .route("/users", get(pages::users::page).post(pages::users::add))
        .route("/users/{name}/remove", post(pages::users::remove))
        .route("/health", get(api::health))
        .route("/metrics", get(metrics))
        .route(WAKE_PATH, post(wake))
        .merge(auth::routes(gate.clone()))
        .fallback(pages::not_found)
        .method_not_allowed_fallback(pages::method_not_allowed)
        // Inside the guards below: a cross-site or misdirected request is refused before
        // any credentials are checked (or counted as a failed login).
        .layer(middleware::from_fn_with_state(gate, auth::guard))
        .layer(middleware::from_fn(csrf::refuse_cross_site))
        .layer(middleware::from_fn_with_state(hosts, csrf::guard_host))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(limit_body))
        .with_state(state)
}

/// Refuses bodies over [`BODY_LIMIT`] before any handler runs, so routes that never read
/// their body (`/internal/wake`) refuse them too: a declared length is checked as is, a
/// chunked body is read up to the limit (as an extractor would) and handed on.
async fn limit_body(request: Request, next: Next) -> Response {
    match declared_length(request.headers()) {
        Some(length) if length > BODY_LIMIT as u64 => return too_large(),
        Some(_) => return next.run(request).await,
        None if !request.headers().contains_key(header::TRANSFER_ENCODING) => {
            return next.run(request).await;
        }
        None => {}
    }
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) if is_over_limit(&e) => too_large(),
        // The client broke off or sent a malformed chunk: no handler needs to see it.
        Err(_) => error(
            StatusCode::BAD_REQUEST,
            "cannot read the request body".into(),
        ),
    }
}

/// Whether reading a body failed on [`BODY_LIMIT`] (rather than on the client).
fn is_over_limit(e: &axum::Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<LengthLimitError>())
}

/// The `Content-Length` of a request (hyper has already refused malformed ones).
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn too_large() -> Response {
    let detail = format!("the request body exceeds the limit of {BODY_LIMIT} bytes");
    error(StatusCode::PAYLOAD_TOO_LARGE, detail)
}

/// A JSON error in the shape of Airflow's API errors.
pub(crate) fn error(status: StatusCode, detail: String) -> Response {
    let title = status.canonical_reason().unwrap_or_default();
    let body = json!({"title": title, "status": status.as_u16(), "detail": detail});
    (status, Json(body)).into_response()
}

/// The Prometheus scrape: the text exposition, or 404 where no metrics are kept.
async fn metrics(State(state): State<AppState>) -> Response {
    match state.service.metrics_text().await {
        Ok(Some(text)) => {
            ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "this process keeps no metrics".into(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "metrics scrape failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the metrics cannot be read now; see the server log".into(),
            )
        }
    }
}

/// `POST /internal/wake`: once users exist, only with the store's wake secret (which only
/// those who can read the state store have: the local CLI).
async fn wake(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let presented = headers
        .get(crate::client::WAKE_SECRET_HEADER)
        .and_then(|v| v.to_str().ok());
    match state.service.wake_allowed(presented).await {
        Ok(true) => {}
        Ok(false) => {
            let detail = "waking the scheduler needs the wake secret of the state store";
            return error(StatusCode::FORBIDDEN, detail.into());
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot check the wake secret");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    let Some(engine) = state.service.engine() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    match engine.wake().await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request as HttpRequest;
    use tower::ServiceExt;

    use super::*;

    /// A route that never reads its body, like `/internal/wake`.
    fn app() -> Router {
        Router::new()
            .route("/", post(|| async { StatusCode::NO_CONTENT }))
            .layer(middleware::from_fn(limit_body))
    }

    async fn status(request: HttpRequest<Body>) -> StatusCode {
        app().oneshot(request).await.unwrap().status()
    }

    fn chunked(bytes: usize) -> HttpRequest<Body> {
        HttpRequest::post("/")
            .header(header::TRANSFER_ENCODING, "chunked")
            .body(Body::from(vec![b'x'; bytes]))
            .unwrap()
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_even_by_a_route_that_ignores_it() {
        let declared = HttpRequest::post("/")
            .header(header::CONTENT_LENGTH, (BODY_LIMIT + 1).to_string())
            .body(Body::empty())
            .unwrap();
        assert_eq!(status(declared).await, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            status(chunked(BODY_LIMIT + 1)).await,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[tokio::test]
    async fn a_body_the_client_breaks_off_is_a_bad_request_not_too_large() {
        let broken = futures_util::stream::iter([Err::<Vec<u8>, _>(std::io::Error::other("gone"))]);
        let request = HttpRequest::post("/")
            .header(header::TRANSFER_ENCODING, "chunked")
            .body(Body::from_stream(broken))
            .unwrap();
        assert_eq!(status(request).await, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_body_within_the_limit_passes() {
        assert_eq!(status(chunked(BODY_LIMIT)).await, StatusCode::NO_CONTENT);
        let empty = HttpRequest::post("/").body(Body::empty()).unwrap();
        assert_eq!(status(empty).await, StatusCode::NO_CONTENT);
    }
}
