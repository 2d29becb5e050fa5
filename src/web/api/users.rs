//! `/api/v2/users`: list, add, change and remove users (admins only: the auth layer
//! reserves these paths for the `admin` role). Not an Airflow API: Airflow 3 manages users
//! in its auth manager, outside the REST API.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, Body, PathParams};
use crate::service::{Principal, Role, ServiceError, User};
use crate::web::AppState;

/// What a user may do: `viewer` reads, `op` also acts, `admin` also manages users.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserRole {
    /// Reads everything.
    Viewer,
    /// Also triggers, pauses, clears and marks.
    Op,
    /// Also manages users.
    Admin,
}

impl From<UserRole> for Role {
    fn from(r: UserRole) -> Self {
        match r {
            UserRole::Viewer => Self::Viewer,
            UserRole::Op => Self::Op,
            UserRole::Admin => Self::Admin,
        }
    }
}

impl From<Role> for UserRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Viewer => Self::Viewer,
            Role::Op => Self::Op,
            Role::Admin => Self::Admin,
        }
    }
}

/// A user (never with the password hash).
#[derive(Serialize, ToSchema)]
pub struct UserResponse {
    /// Login name.
    pub username: String,
    /// Role.
    pub role: UserRole,
    /// When the user was added.
    pub created_at: DateTime<Utc>,
}

impl From<User> for UserResponse {
    fn from(u: User) -> Self {
        Self {
            username: u.name,
            role: u.role.into(),
            created_at: u.created_at,
        }
    }
}

/// Every user, by name.
#[derive(Serialize, ToSchema)]
pub struct UserCollectionResponse {
    /// The users.
    pub users: Vec<UserResponse>,
    /// How many there are.
    pub total_entries: u64,
}

/// Body of `POST /api/v2/users`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPostBody {
    /// 1 to 64 letters, digits, `.`, `_`, `-` or `@`.
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    pub username: String,
    /// Not empty, at most 1024 bytes.
    #[schema(min_length = 1, max_length = 1024)]
    pub password: String,
    /// Role.
    pub role: UserRole,
}

/// Body of `PATCH /api/v2/users/{username}`: what to change (absent fields stay).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatchBody {
    /// New role.
    #[serde(default)]
    pub role: Option<UserRole>,
    /// New password (tokens issued before stop working); not empty, at most 1024 bytes.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 1024)]
    pub password: Option<String>,
}

/// A refused field as a 422: the service's checks of names and passwords.
fn invalid_field(field: &str, e: ServiceError) -> ApiError {
    match e {
        ServiceError::Invalid(msg) => ApiError::invalid("body", field, msg),
        other => other.into(),
    }
}

/// 409 when the caller would take their own admin role away: they could not undo it.
fn refuse_self_lockout(who: Option<&Principal>, username: &str) -> ApiResult<()> {
    match who {
        Some(p) if p.name == username => Err(ApiError::Conflict(format!(
            "'{username}' cannot remove or demote themselves; another admin (or `orchestrator users` on the server) can"
        ))),
        _ => Ok(()),
    }
}

/// Lists users.
#[utoipa::path(get, path = "/api/v2/users", tag = "User",
    responses((status = 200, body = UserCollectionResponse)))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<UserCollectionResponse>> {
    let users: Vec<UserResponse> = state
        .service
        .users()
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(UserCollectionResponse {
        total_entries: users.len() as u64,
        users,
    }))
}

/// Adds a user (the first one turns authentication on).
#[utoipa::path(post, path = "/api/v2/users", tag = "User",
    request_body = UserPostBody,
    responses((status = 201, body = UserResponse), (status = 409, body = super::DetailBody),
        (status = 422, body = super::ValidationErrorBody)))]
pub async fn add(
    State(state): State<AppState>,
    Body(body): Body<UserPostBody>,
) -> ApiResult<(StatusCode, Json<UserResponse>)> {
    if body.password.is_empty() {
        return Err(ApiError::invalid(
            "body",
            "password",
            "the password must not be empty",
        ));
    }
    let user = state
        .service
        .add_user(&body.username, body.role.into(), &body.password)
        .await
        .map_err(|e| invalid_field("username", e))?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Changes a user's role or password.
#[utoipa::path(patch, path = "/api/v2/users/{username}", tag = "User",
    params(("username" = String, Path)),
    request_body = UserPatchBody,
    responses((status = 200, body = UserResponse), (status = 404, body = super::DetailBody),
        (status = 409, body = super::DetailBody), (status = 422, body = super::ValidationErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    who: Option<Extension<Principal>>,
    PathParams(username): PathParams<String>,
    Body(body): Body<UserPatchBody>,
) -> ApiResult<Json<UserResponse>> {
    if body.password.as_deref() == Some("") {
        return Err(ApiError::invalid(
            "body",
            "password",
            "the password must not be empty",
        ));
    }
    // Unknown users are a 404 before anything else is checked or changed.
    let mut user = state.service.user(&username).await?;
    if let Some(role) = body.role.map(Role::from) {
        if role != Role::Admin {
            refuse_self_lockout(who.as_deref(), &username)?;
        }
        user = state.service.set_role(&username, role).await?;
    }
    if let Some(password) = &body.password {
        state
            .service
            .set_password(&username, password)
            .await
            .map_err(|e| invalid_field("password", e))?;
    }
    Ok(Json(user.into()))
}

/// Removes a user; their tokens stop working at once.
#[utoipa::path(delete, path = "/api/v2/users/{username}", tag = "User",
    params(("username" = String, Path)),
    responses((status = 204), (status = 404, body = super::DetailBody),
        (status = 409, body = super::DetailBody)))]
pub async fn remove(
    State(state): State<AppState>,
    who: Option<Extension<Principal>>,
    PathParams(username): PathParams<String>,
) -> ApiResult<StatusCode> {
    refuse_self_lockout(who.as_deref(), &username)?;
    state.service.remove_user(&username).await?;
    Ok(StatusCode::NO_CONTENT)
}
