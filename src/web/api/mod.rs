//! The Airflow-compatible REST API, `/api/v2` (Airflow 3's paths, parameters and JSON
//! shapes), over the same [`Service`](crate::service::Service) as the dashboard and the CLI,
//! with its OpenAPI document generated from the handlers (utoipa) at
//! `/api/v2/openapi.json`. Errors are JSON (`{"detail": ...}`), also for unknown paths and
//! methods under `/api/`.

mod dags;
mod error;
mod misc;
mod models;
mod runs;
mod task_instances;
mod users;

use axum::Router;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ApiResult};
pub use misc::health;

use super::AppState;

/// Path of the OpenAPI document.
pub const OPENAPI_PATH: &str = "/api/v2/openapi.json";

/// Default page size of listings (Airflow's).
const DEFAULT_LIMIT: u64 = 50;
/// Largest page size (Airflow's `maximum_page_limit`); larger limits are capped.
const MAX_LIMIT: u64 = 100;

/// `limit` of a listing: default 50, capped at 100.
fn page_limit(params: &error::Params) -> ApiResult<usize> {
    let limit = params
        .number("limit", i64::MAX as u64)?
        .unwrap_or(DEFAULT_LIMIT);
    Ok(usize::try_from(limit.min(MAX_LIMIT)).unwrap_or(usize::MAX))
}

/// An error: `{"detail": "..."}`.
#[derive(ToSchema)]
#[allow(dead_code)] // documents the error shape; errors are built by `ApiError`
pub struct DetailBody {
    /// What went wrong.
    detail: String,
}

/// One validation problem.
#[derive(ToSchema)]
#[allow(dead_code)] // documents the error shape
pub struct ValidationErrorItem {
    /// Where: `["query", "limit"]`, `["body", "conf"]`.
    loc: Vec<String>,
    /// What is wrong.
    msg: String,
    /// Kind of problem.
    #[schema(rename = "type")]
    kind: String,
}

/// A request that failed validation (422).
#[derive(ToSchema)]
#[allow(dead_code)] // documents the error shape
pub struct ValidationErrorBody {
    /// The problems.
    detail: Vec<ValidationErrorItem>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "orchestrator: Airflow-compatible REST API", description = "The core of Apache Airflow 3's stable REST API (/api/v2)."),
    modifiers(&Security),
    security(("HTTPBearer" = []), ("HTTPBasic" = [])),
)]
struct ApiDoc;

/// Declares the bearer (`/auth/token`) and basic security schemes.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "HTTPBearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "HTTPBasic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// The API's routes and their OpenAPI document.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(dags::list))
        .routes(routes!(dags::get, dags::patch))
        .routes(routes!(dags::details))
        .routes(routes!(dags::tasks))
        .routes(routes!(dags::task))
        .routes(routes!(dags::source))
        .routes(routes!(runs::list, runs::trigger))
        .routes(routes!(runs::get, runs::patch))
        .routes(routes!(runs::clear))
        .routes(routes!(task_instances::list))
        .routes(routes!(task_instances::get, task_instances::patch))
        .routes(routes!(task_instances::clear))
        .routes(routes!(task_instances::logs))
        .routes(routes!(misc::import_errors))
        .routes(routes!(misc::health))
        .routes(routes!(misc::version))
        .routes(routes!(users::list, users::add))
        .routes(routes!(users::patch, users::remove))
        .split_for_parts()
}

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api();
    doc.paths
        .paths
        .insert(OPENAPI_PATH.to_string(), openapi_path());
    doc.paths.paths.insert(TOKEN_PATH.to_string(), token_path());
    doc
}

/// Where tokens come from (served by [`crate::web::auth`], documented here with the API).
const TOKEN_PATH: &str = "/auth/token";

/// `POST /auth/token` (Airflow 3's shape): a JSON `{"username", "password"}` body, 201
/// `{"access_token"}`.
fn token_path() -> utoipa::openapi::path::PathItem {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    use utoipa::openapi::request_body::RequestBodyBuilder;
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, ResponseBuilder, Type};
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let login = ObjectBuilder::new()
        .property("username", string())
        .property("password", string())
        .required("username")
        .required("password")
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ));
    let token = ObjectBuilder::new()
        .property("access_token", string())
        .required("access_token");
    let json = |schema: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>| {
        ContentBuilder::new().schema(Some(schema)).build()
    };
    let error = |description: &str, schema: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                json(Ref::from_schema_name(schema).into()),
            )
            .build()
    };
    let op = OperationBuilder::new()
        .operation_id(Some("create_token"))
        .summary(Some("A bearer token for a user name and password"))
        .tag("Login")
        .request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", json(login.into()))
                .required(Some(utoipa::openapi::Required::True))
                .build(),
        ))
        // Signing in needs no credentials.
        .securities(Some([SecurityRequirement::default()]))
        .response(
            "201",
            ResponseBuilder::new()
                .description("A signed token, valid for 24 hours")
                .content("application/json", json(token.into()))
                .build(),
        )
        .response("400", error("A field is empty", "DetailBody"))
        .response("401", error("Invalid credentials", "DetailBody"))
        .response("422", error("The body is not a login", "DetailBody"))
        .response("429", error("Too many failed logins", "DetailBody"))
        .build();
    PathItem::new(HttpMethod::Post, op)
}

/// The document's own entry.
fn openapi_path() -> utoipa::openapi::path::PathItem {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    use utoipa::openapi::{ContentBuilder, ObjectBuilder, ResponseBuilder};
    let response = ResponseBuilder::new()
        .description("This document")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new()))
                .build(),
        )
        .build();
    let op = OperationBuilder::new()
        .operation_id(Some("openapi"))
        .summary(Some("The OpenAPI document of this API"))
        .response("200", response)
        .build();
    PathItem::new(HttpMethod::Get, op)
}

/// The API router: `/api/v2/...`, the document, and JSON 404/405 under `/api/`.
pub fn router() -> Router<AppState> {
    let (routes, _) = api();
    let doc = openapi();
    routes
        .route(OPENAPI_PATH, get(move || async move { Json(doc) }))
        .method_not_allowed_fallback(method_not_allowed)
        .route("/api", any(not_found))
        .route("/api/{*rest}", any(not_found))
}

async fn not_found(uri: Uri) -> Response {
    ApiError::NotFound(format!("no API endpoint at {}", uri.path())).into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    ApiError::MethodNotAllowed(format!("{} does not answer {method}", uri.path())).into_response()
}
