//! `/users`, the admins' page: the users with their roles, a form to add one and a button
//! to remove each (form POSTs that redirect back with a flash message). The auth layer
//! reserves these paths for admins; cross-site posts never get here (see `web::csrf`).

use askama::Template;
use askama_web::WebTemplate;
use axum::Extension;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::extract::Path;
use super::flash::{self, Flash};
use super::{PageError, time};
use crate::service::{Principal, Role};
use crate::web::AppState;

/// One row of the table.
pub struct UserRow {
    name: String,
    role: Role,
    created: String,
    remove_url: String,
    is_me: bool,
}

/// The page.
#[derive(Template, WebTemplate)]
#[template(path = "users.html")]
pub struct UsersPage {
    rows: Vec<UserRow>,
    flash: Option<String>,
}

/// The add form.
#[derive(Debug, Deserialize)]
pub struct AddForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
}

/// `GET /users`.
pub async fn page(
    State(state): State<AppState>,
    who: Option<Extension<Principal>>,
    flash: Flash,
) -> Result<(Flash, UsersPage), PageError> {
    let me = who.map(|Extension(p)| p.name);
    let rows = state
        .service
        .users()
        .await?
        .into_iter()
        .map(|u| UserRow {
            remove_url: format!("/users/{}/remove", links_segment(&u.name)),
            is_me: me.as_deref() == Some(u.name.as_str()),
            created: time(Some(u.created_at)),
            role: u.role,
            name: u.name,
        })
        .collect();
    let message = flash.message().map(str::to_string);
    Ok((
        flash,
        UsersPage {
            rows,
            flash: message,
        },
    ))
}

/// `POST /users`: adds a user.
pub async fn add(
    State(state): State<AppState>,
    form: Result<Form<AddForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|r| PageError::new(r.status(), r.body_text()))?;
    let role: Role = form.role.parse()?;
    let user = state
        .service
        .add_user(form.username.trim(), role, &form.password)
        .await?;
    Ok(flash::redirect(
        "/users",
        &format!("Added {} ({}).", user.name, user.role),
    ))
}

/// `POST /users/{name}/remove`.
pub async fn remove(
    State(state): State<AppState>,
    who: Option<Extension<Principal>>,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    if who.is_some_and(|Extension(p)| p.name == name) {
        return Err(PageError::new(
            StatusCode::CONFLICT,
            "You cannot remove yourself; another admin (or `orchestrator users remove` on the server) can.",
        ));
    }
    state.service.remove_user(&name).await?;
    Ok(flash::redirect("/users", &format!("Removed {name}.")))
}

/// A user name as one path segment (names are letters, digits and `._-@`; `@` is kept
/// readable, anything else escaped).
fn links_segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2E", ".")
        .replace("%5F", "_")
        .replace("%2D", "-")
}
