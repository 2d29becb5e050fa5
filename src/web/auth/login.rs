//! Logging in: `POST /auth/token` in Airflow 3's shape (a JSON or form body with
//! `username` and `password`; 201 `{"access_token": ...}`), available whether or not auth is
//! on; the dashboard's `GET`/`POST /login` (a form; success sets the session cookie and
//! goes back to `next`), and `POST /logout`. Failed attempts count against the client's
//! address and get the same answer whether or not the user exists.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Gate, Refusal, SESSION_COOKIE, next_path, over_tls, session_cookie_header};
use crate::service::{AuthMode, TOKEN_LIFETIME};
use crate::web::pages::PageError;

/// The body of `POST /auth/token` (Airflow's `LoginBody`: both fields, nothing else).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

/// `POST /auth/token`.
pub async fn token(State(gate): State<Gate>, request: Request) -> Response {
    let ip = super::client_ip(&request);
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, crate::web::BODY_LIMIT).await {
        Ok(body) => body,
        Err(_) => return detail(StatusCode::BAD_REQUEST, "cannot read the request body"),
    };
    let login = match parse_login(&parts.headers, &body) {
        Ok(login) => login,
        Err((status, message)) => return detail(status, &message),
    };
    if login.username.is_empty() || login.password.is_empty() {
        return detail(
            StatusCode::BAD_REQUEST,
            "Username and password must be provided",
        );
    }
    let principal = match gate.login(ip, &login.username, &login.password).await {
        Ok(Some(p)) => p,
        Ok(None) => return detail(StatusCode::UNAUTHORIZED, "Invalid credentials"),
        Err(refusal) => return super::refused_api(refusal),
    };
    match gate.0.service.issue_token(&principal).await {
        Ok(token) => (StatusCode::CREATED, Json(json!({"access_token": token}))).into_response(),
        Err(e) => super::refused_api(Refusal::Service(e)),
    }
}

/// The login body from JSON or a urlencoded form, as Airflow takes it.
fn parse_login(headers: &HeaderMap, body: &Bytes) -> Result<LoginBody, (StatusCode, String)> {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match kind.as_str() {
        "application/json" => serde_json::from_slice(body).map_err(|e| {
            let message = format!("the body must be {{\"username\": ..., \"password\": ...}}: {e}");
            (StatusCode::UNPROCESSABLE_ENTITY, message)
        }),
        "application/x-www-form-urlencoded" => {
            let mut login = LoginBody {
                username: String::new(),
                password: String::new(),
            };
            for (key, value) in url::form_urlencoded::parse(body) {
                match key.as_ref() {
                    "username" => login.username = value.into_owned(),
                    "password" => login.password = value.into_owned(),
                    _ => {}
                }
            }
            Ok(login)
        }
        _ => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type: send application/json or a urlencoded form".into(),
        )),
    }
}

fn detail(status: StatusCode, message: &str) -> Response {
    crate::web::error(status, message.to_string())
}

/// The login page.
#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub struct LoginPage {
    next: String,
    error: Option<String>,
    username: String,
}

/// The login page's query.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /login`: the form, or straight on while auth is off.
pub async fn page(
    State(gate): State<Gate>,
    query: Result<Query<NextQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let next = next_path(query.ok().and_then(|Query(q)| q.next).as_deref());
    if let Ok(AuthMode::Off) = gate.0.service.auth_mode().await {
        return Redirect::to(&next).into_response();
    }
    LoginPage {
        next,
        error: None,
        username: String::new(),
    }
    .into_response()
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`: sets the session cookie and goes to `next`, or shows the form again.
pub async fn submit(
    State(gate): State<Gate>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, PageError> {
    let ip = super::client_ip(&request);
    let form: Result<Form<LoginForm>, FormRejection> =
        <Form<LoginForm> as axum::extract::FromRequest<()>>::from_request(request, &()).await;
    let Form(form) = form.map_err(|e| PageError::new(e.status(), e.body_text()))?;
    let next = next_path(Some(&form.next));
    let again = |status: StatusCode, error: String| {
        let page = LoginPage {
            next: next.clone(),
            error: Some(error),
            username: form.username.clone(),
        };
        (status, page).into_response()
    };
    if form.username.is_empty() || form.password.is_empty() {
        return Ok(again(
            StatusCode::BAD_REQUEST,
            "Enter a user name and a password.".into(),
        ));
    }
    let principal = match gate.login(ip, &form.username, &form.password).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            let message = "Invalid user name or password.".to_string();
            return Ok(again(StatusCode::UNAUTHORIZED, message));
        }
        Err(Refusal::RateLimited(wait)) => {
            let mut response = again(StatusCode::TOO_MANY_REQUESTS, super::wait_message(wait));
            super::set_retry_after(&mut response, wait);
            return Ok(response);
        }
        Err(Refusal::Service(e)) => return Err(e.into()),
    };
    let token = gate.0.service.issue_token(&principal).await?;
    let cookie =
        session_cookie_header(&token, over_tls(&headers), TOKEN_LIFETIME).ok_or_else(|| {
            PageError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot set the session")
        })?;
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response())
}

/// `POST /logout`: clears the session cookie.
pub async fn logout(headers: HeaderMap) -> Response {
    let secure = if over_tls(&headers) { "; Secure" } else { "" };
    let clear = format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}");
    match axum::http::HeaderValue::from_str(&clear) {
        Ok(value) => ([(header::SET_COOKIE, value)], Redirect::to("/login")).into_response(),
        Err(_) => Redirect::to("/login").into_response(),
    }
}
