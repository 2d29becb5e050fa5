//! Authentication and roles for the whole router. Off while no user exists on a server that
//! may run open (loopback, or `--insecure-no-auth`; checked per request, so `orchestrator
//! users add` takes effect on a running server); a server beyond loopback refuses every
//! private request while no user exists, even after the last one is removed. Once a user
//! exists, every request but the public ones (login, token, health, version, `/static/` assets, and the
//! CLI's wake-up with its own secret) needs a principal, from `Authorization: Bearer
//! <token>`, `Authorization: Basic`, or the dashboard's session cookie (a signed token).
//! The role a request needs follows from its method and path alone: reads need `viewer`,
//! anything else `op`, user management `admin`; so routes added later are covered without
//! code of their own. The principal goes into the request's extensions (for handlers) and
//! into a task-local (for the page header). Failed logins are rate-limited per client
//! address (`limit`); credentials are never logged.

mod limit;
mod login;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

pub use limit::{FAILED_LOGIN_BURST, FAILED_LOGIN_PERIOD};

use super::pages::PageError;
use super::pages::links::is_local_path;
use crate::service::{AuthMode, Principal, Role, Service};

/// Name of the dashboard's session cookie (a token from [`Service::issue_token`]).
pub const SESSION_COOKIE: &str = "orchestrator_session";

/// Paths anyone may reach, signed in or not.
const PUBLIC_PATHS: [&str; 8] = [
    "/login",
    "/logout",
    "/auth/token",
    "/health",
    "/api/v2/monitor/health",
    "/api/v2/version",
    // The API's description, as Airflow serves it: no data, and clients fetch it first.
    "/api/v2/openapi.json",
    "/favicon.ico",
];

/// Path prefixes only admins may use (user management).
const ADMIN_PREFIXES: [&str; 2] = ["/api/v2/users", "/users"];

tokio::task_local! {
    static SIGNED_IN: Principal;
}

/// The user the current request acts as, when auth is on (for templates).
pub fn signed_in() -> Option<Principal> {
    SIGNED_IN.try_with(Clone::clone).ok()
}

/// Whether the current request may use state-changing actions (for templates: a viewer
/// sees no buttons it cannot use).
pub fn can_operate() -> bool {
    signed_in().is_none_or(|p| p.role.allows(Role::Op))
}

/// The auth layer's state: the service, failed logins per address, recent basic auths.
#[derive(Clone)]
pub struct Gate(Arc<GateInner>);

struct GateInner {
    service: Service,
    failures: limit::FailedLogins,
    basic: limit::BasicCache,
}

impl Gate {
    /// The layer's state over `service`.
    pub fn new(service: Service) -> Self {
        Self(Arc::new(GateInner {
            service,
            failures: limit::FailedLogins::new(),
            basic: limit::BasicCache::new(),
        }))
    }

    /// Checks a name and password, counting a failure against `ip`; `Err` carries how long
    /// the address must wait when it is over its quota.
    async fn login(
        &self,
        ip: IpAddr,
        name: &str,
        password: &str,
    ) -> Result<Option<Principal>, Refusal> {
        if let Some(wait) = self.0.failures.wait(ip) {
            return Err(Refusal::RateLimited(wait));
        }
        let principal = self.0.service.authenticate(name, password).await?;
        if principal.is_none() {
            tracing::info!(client = %ip, "failed login");
            if let Some(wait) = self.0.failures.fail(ip) {
                return Err(Refusal::RateLimited(wait));
            }
        }
        Ok(principal)
    }

    /// The principal of a request's credentials (`None`: none, or not valid).
    async fn principal(
        &self,
        credentials: Credentials,
        ip: IpAddr,
    ) -> Result<Option<Principal>, Refusal> {
        let service = &self.0.service;
        match credentials {
            Credentials::Bearer(token) => Ok(service.verify_token(&token).await?),
            Credentials::Basic(name, password) => {
                // Before the cache: a locked-out address must not learn from a cached hit
                // that it found the password.
                if let Some(wait) = self.0.failures.wait(ip) {
                    return Err(Refusal::RateLimited(wait));
                }
                if let Some((user, at)) = self.0.basic.get(&name, &password) {
                    return Ok(service.current_principal(&user, at).await?);
                }
                let verified_at = chrono::Utc::now().timestamp();
                let found = self.login(ip, &name, &password).await?;
                if found.is_some() {
                    self.0.basic.put(&name, &password, verified_at);
                }
                Ok(found)
            }
            Credentials::Session(token) => Ok(service.verify_token(&token).await?),
            Credentials::Malformed | Credentials::None => Ok(None),
        }
    }
}

/// Why a request was refused before reaching its handler.
#[derive(Debug)]
enum Refusal {
    /// Too many failed logins from this address.
    RateLimited(Duration),
    /// The store failed.
    Service(crate::service::ServiceError),
}

impl From<crate::service::ServiceError> for Refusal {
    fn from(e: crate::service::ServiceError) -> Self {
        Self::Service(e)
    }
}

/// The routes of logging in and out and of `POST /auth/token`.
pub fn routes<S>(gate: Gate) -> Router<S> {
    Router::new()
        .route(
            "/auth/token",
            post(login::token).fallback(method_not_allowed),
        )
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", post(login::logout))
        .with_state(gate)
}

/// A JSON 405 for `/auth/` paths, as under `/api/` (the router's default is a page).
async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    let detail = format!("{} does not answer {method}", uri.path());
    super::error(StatusCode::METHOD_NOT_ALLOWED, detail)
}

/// Middleware: admits a request only with a principal whose role allows it, while auth is
/// on; refuses it with 401 (JSON for API paths, a redirect to the login page for pages)
/// or 403.
pub async fn guard(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if is_public(path) {
        return next.run(request).await;
    }
    match gate.0.service.auth_mode().await {
        Ok(AuthMode::Off) => return next.run(request).await,
        Ok(AuthMode::On) => {}
        Ok(AuthMode::NoUsers) => return no_users(&request),
        Err(e) => return refused(&request, Refusal::Service(e)),
    }
    let found = credentials(request.headers());
    let principal = match gate.principal(found, client_ip(&request)).await {
        Ok(Some(p)) => p,
        Ok(None) => return unauthenticated(&request),
        Err(refusal) => return refused(&request, refusal),
    };
    let required = required_role(request.method(), path);
    if !principal.role.allows(required) {
        return forbidden(&request, &principal, required);
    }
    request.extensions_mut().insert(principal.clone());
    SIGNED_IN.scope(principal, next.run(request)).await
}

/// Whether anyone may reach `path`. Assets are one segment under `/static/`, so no
/// `/static/../x` passes as public.
fn is_public(path: &str) -> bool {
    let asset = path
        .strip_prefix("/static/")
        .is_some_and(|name| !name.is_empty() && !name.contains('/') && !name.starts_with('.'));
    PUBLIC_PATHS.contains(&path) || asset || path == super::WAKE_PATH
}

/// The role a request needs.
pub fn required_role(method: &Method, path: &str) -> Role {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if ADMIN_PREFIXES.iter().any(|p| under(p)) {
        Role::Admin
    } else if method == Method::GET || method == Method::HEAD {
        Role::Viewer
    } else {
        Role::Op
    }
}

/// Whether a path answers in JSON (API clients), rather than with pages.
fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/auth/") || path == "/metrics"
}

/// Credentials a request carries.
enum Credentials {
    Bearer(String),
    Basic(String, String),
    Session(String),
    /// An `Authorization` header of another scheme or not decodable.
    Malformed,
    None,
}

fn credentials(headers: &HeaderMap) -> Credentials {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return authorization(value).unwrap_or(Credentials::Malformed);
    }
    match session_cookie(headers) {
        Some(token) => Credentials::Session(token),
        None => Credentials::None,
    }
}

fn authorization(value: &HeaderValue) -> Option<Credentials> {
    let (scheme, rest) = value.to_str().ok()?.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Credentials::Bearer(rest.to_string()));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(rest).ok()?).ok()?;
    let (name, password) = decoded.split_once(':')?;
    Some(Credentials::Basic(name.to_string(), password.to_string()))
}

/// The session cookie's value, if the request carries one.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == SESSION_COOKIE && !value.is_empty())
        .map(|(_, value)| value.to_string())
}

/// The client's address, as the listener saw it (a reverse proxy's when behind one).
fn client_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// Whether the client reached us over TLS (said by a proxy in `X-Forwarded-Proto`).
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').next().is_some_and(|p| p.trim() == "https"))
}

/// Where the login page sends the user afterwards: a local path, never the login page.
pub fn next_path(next: Option<&str>) -> String {
    match next {
        Some(n) if is_local_path(n) && !n.starts_with("/login") => n.to_string(),
        _ => "/".to_string(),
    }
}

fn unauthenticated(request: &Request) -> Response {
    let path = request.uri().path();
    if is_api(path) {
        let detail = match request.headers().contains_key(header::AUTHORIZATION) {
            true => "Invalid or expired credentials",
            false => "Not authenticated",
        };
        let mut response = super::error(StatusCode::UNAUTHORIZED, detail.into());
        let headers = response.headers_mut();
        for challenge in ["Bearer", "Basic realm=\"orchestrator\", charset=\"UTF-8\""] {
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        return response;
    }
    let method = request.method();
    let back = request
        .uri()
        .path_and_query()
        .map_or(path, |pq| pq.as_str());
    let target = match (method == Method::GET || method == Method::HEAD) && back != "/" {
        true => format!(
            "/login?next={}",
            utf8_percent_encode(back, NON_ALPHANUMERIC)
        ),
        false => "/login".to_string(),
    };
    Redirect::to(&target).into_response()
}

/// 503 on a server that must authenticate while no user exists: no credentials can pass,
/// so the answer says how to add one rather than asking for a login.
fn no_users(request: &Request) -> Response {
    let detail = "No user exists, and this server listens beyond loopback, so it refuses every \
                  request until one is added: run `orchestrator users add NAME --role admin` \
                  with its state database";
    match is_api(request.uri().path()) {
        true => super::error(StatusCode::SERVICE_UNAVAILABLE, detail.into()),
        false => {
            PageError::new(StatusCode::SERVICE_UNAVAILABLE, format!("{detail}.")).into_response()
        }
    }
}

fn forbidden(request: &Request, who: &Principal, required: Role) -> Response {
    let detail = format!(
        "user '{}' has the role {}; this needs {required}",
        who.name, who.role
    );
    match is_api(request.uri().path()) {
        true => super::error(StatusCode::FORBIDDEN, detail),
        false => {
            PageError::new(StatusCode::FORBIDDEN, format!("Not allowed: {detail}.")).into_response()
        }
    }
}

fn refused(request: &Request, refusal: Refusal) -> Response {
    match (is_api(request.uri().path()), refusal) {
        (true, refusal) => refused_api(refusal),
        (false, Refusal::RateLimited(wait)) => too_many(false, wait),
        (false, Refusal::Service(e)) => {
            tracing::error!(error = %e, "cannot check credentials");
            let detail = "cannot check credentials; see the server log";
            PageError::new(StatusCode::SERVICE_UNAVAILABLE, detail).into_response()
        }
    }
}

/// 429 with `Retry-After`, in JSON or as a page.
fn too_many(api: bool, wait: Duration) -> Response {
    let mut response = match api {
        true => super::error(StatusCode::TOO_MANY_REQUESTS, wait_message(wait)),
        false => PageError::new(StatusCode::TOO_MANY_REQUESTS, wait_message(wait)).into_response(),
    };
    set_retry_after(&mut response, wait);
    response
}

/// A refusal from an API route (`/auth/token`).
fn refused_api(refusal: Refusal) -> Response {
    match refusal {
        Refusal::RateLimited(wait) => too_many(true, wait),
        Refusal::Service(e) => {
            tracing::error!(error = %e, "cannot check credentials");
            let detail = "cannot check credentials; see the server log";
            super::error(StatusCode::SERVICE_UNAVAILABLE, detail.into())
        }
    }
}

fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// What a rate-limited client is told.
fn wait_message(wait: Duration) -> String {
    let secs = whole_seconds(wait);
    format!("Too many failed logins from this address; try again in {secs} s.")
}

fn set_retry_after(response: &mut Response, wait: Duration) {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(whole_seconds(wait)));
}

/// The `Set-Cookie` value of a session holding `token`.
fn session_cookie_header(token: &str, secure: bool, max_age: Duration) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        max_age.as_secs()
    );
    HeaderValue::from_str(&cookie).ok()
}

#[cfg(test)]
mod tests;
