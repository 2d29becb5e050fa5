//! Errors in the shape of Airflow's API (FastAPI's): `{"detail": "..."}` with 400, 404, 409,
//! and 422 with a list of `{loc, msg, type}` for requests that fail validation; and the
//! extractors that turn axum's own rejections into those.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Json, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::service::ServiceError;

/// Why an API request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or names something invalid: 422 with where and why.
    #[error("{msg}")]
    Validation {
        /// Where: `["query", "limit"]`, `["body", "conf"]`, …
        loc: Vec<String>,
        /// What is wrong.
        msg: String,
    },
    /// A request the state refuses (400).
    #[error("{0}")]
    BadRequest(String),
    /// Something asked for does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// Not possible in the current state, or a duplicate (409).
    #[error("{0}")]
    Conflict(String),
    /// The method is not one the path answers (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The store failed (500, logged, details withheld).
    #[error("{0}")]
    Internal(String),
}

/// Result alias of the handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A 422 about one input.
    pub fn invalid(location: &str, name: &str, msg: impl Into<String>) -> Self {
        Self::Validation {
            loc: vec![location.to_string(), name.to_string()],
            msg: msg.into(),
        }
    }
}

impl ApiError {
    /// A 400 about a parameter or field Airflow defines that this server does not
    /// implement: ignoring it would answer or do more than the client asked.
    pub fn unsupported(name: &str) -> Self {
        Self::BadRequest(format!("{name} is not supported"))
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let text = crate::redact::text(&e.to_string()).into_owned();
        match &e {
            e if e.is_not_found() => Self::NotFound(text),
            ServiceError::Invalid(_) | ServiceError::AmbiguousRun(..) => Self::BadRequest(text),
            ServiceError::Conflict(_) => Self::Conflict(text),
            _ => {
                tracing::error!(error = %e, "API request failed");
                Self::Internal("the state store failed; see the server log".into())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, detail) = match self {
            Self::Validation { loc, msg } => {
                let item = json!({"type": "value_error", "loc": loc, "msg": msg});
                (StatusCode::UNPROCESSABLE_ENTITY, json!([item]))
            }
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, json!(m)),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, json!(m)),
            Self::Conflict(m) => (StatusCode::CONFLICT, json!(m)),
            Self::MethodNotAllowed(m) => (StatusCode::METHOD_NOT_ALLOWED, json!(m)),
            Self::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, json!(m)),
        };
        (status, Json(json!({ "detail": detail }))).into_response()
    }
}

/// A JSON body, refused with 422 (not axum's plain-text 400/415) when it does not parse.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(e) => Err(ApiError::Validation {
                loc: vec!["body".into()],
                msg: e.body_text(),
            }),
        }
    }
}

/// Path parameters, refused with 422 when they do not decode.
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(e) => Err(ApiError::Validation {
                loc: vec!["path".into()],
                msg: e.body_text(),
            }),
        }
    }
}

/// The query string as name/value pairs, repeated names kept (Airflow's list parameters
/// are repeated: `tags=a&tags=b`).
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        Ok(Self(
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        ))
    }
}

impl Params {
    /// The last value of `name`.
    pub fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// 400 when any of `names` (Airflow parameters not implemented here, none with a
    /// default) is given.
    pub fn refuse(&self, names: &[&str]) -> ApiResult<()> {
        match names.iter().find(|n| self.0.iter().any(|(k, _)| k == *n)) {
            Some(name) => Err(ApiError::unsupported(name)),
            None => Ok(()),
        }
    }

    /// `name` as a number within `0..=max` (422 otherwise).
    pub fn number(&self, name: &str, max: u64) -> ApiResult<Option<u64>> {
        let Some(text) = self.one(name) else {
            return Ok(None);
        };
        match text.trim().parse::<u64>() {
            Ok(n) if n <= max => Ok(Some(n)),
            _ => Err(ApiError::invalid(
                "query",
                name,
                format!("must be an integer from 0 to {max}"),
            )),
        }
    }

    /// `name` as a boolean (`true`/`false`, `1`/`0`, as FastAPI accepts).
    pub fn boolean(&self, name: &str) -> ApiResult<Option<bool>> {
        let Some(text) = self.one(name) else {
            return Ok(None);
        };
        match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => Err(ApiError::invalid("query", name, "must be a boolean")),
        }
    }

    /// `name` as a date-time in any form pydantic accepts (422 otherwise): see
    /// [`parse_time`].
    pub fn time(&self, name: &str) -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
        let Some(text) = self.one(name) else {
            return Ok(None);
        };
        parse_time(text).map(Some).ok_or_else(|| {
            ApiError::invalid(
                "query",
                name,
                "must be a date-time (RFC 3339, e.g. 2024-01-01T00:00:00Z) or a date",
            )
        })
    }
}

/// A date-time as pydantic reads one: RFC 3339; a `+HHMM` offset (the official client
/// formats `%Y-%m-%dT%H:%M:%S.%f%z`); a space for the `T`; no offset (UTC); or a date
/// alone (its midnight, UTC).
pub fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{NaiveDate, NaiveDateTime};
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.to_utc());
    }
    let with_t = text.replacen(' ', "T", 1);
    // `%z` takes `+HHMM` and `+HH:MM`; `%#z` also `+HH`.
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
    ] {
        if let Ok(t) = chrono::DateTime::parse_from_str(&with_t, format) {
            return Some(t.to_utc());
        }
    }
    let zulu = with_t.strip_suffix(['Z', 'z']).unwrap_or(&with_t);
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(zulu, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(e: ApiError) -> (StatusCode, serde_json::Value) {
        let response = e.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn errors_are_fastapi_shaped() {
        let (status, json) = body(ApiError::invalid("query", "limit", "bad")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(json["detail"][0]["loc"], json!(["query", "limit"]));
        assert_eq!(json["detail"][0]["msg"], "bad");
        let (status, json) = body(ServiceError::UnknownDag("d".into()).into()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(json["detail"].as_str().unwrap().contains("'d'"));
        let (status, _) = body(ServiceError::Conflict("taken".into()).into()).await;
        assert_eq!(status, StatusCode::CONFLICT);
    }

    #[test]
    fn query_values_are_checked() {
        let params = Params(vec![
            ("limit".into(), "-1".into()),
            ("paused".into(), "maybe".into()),
            ("tags".into(), "a".into()),
            ("tags".into(), "b".into()),
            ("at".into(), "2024-01-01T00:00:00Z".into()),
        ]);
        assert!(params.number("limit", 100).is_err());
        assert!(params.boolean("paused").is_err());
        assert_eq!(params.all("tags"), ["a", "b"]);
        assert!(params.time("at").unwrap().is_some());
        assert_eq!(params.number("offset", 100).unwrap(), None);
    }

    #[test]
    fn times_are_read_as_pydantic_reads_them() {
        let midnight = chrono::DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        for text in [
            "2020-01-01T00:00:00Z",
            "2020-01-01T00:00:00.000000+0000",
            "2020-01-01T01:00:00.000000+0100",
            "2020-01-01T02:00:00+02:00",
            "2020-01-01 00:00:00",
            "2020-01-01T00:00:00",
            "2020-01-01T00:00",
            "2019-12-31T19:00:00-0500",
            "2020-01-01",
        ] {
            assert_eq!(parse_time(text), Some(midnight), "{text}");
        }
        for text in [
            "",
            "yesterday",
            "2020-13-01",
            "2020-01-01T25:00:00Z",
            "1577836800x",
        ] {
            assert_eq!(parse_time(text), None, "{text}");
        }
        let params = Params(vec![(
            "at".into(),
            "2020-01-01T00:00:00.000000+0000".into(),
        )]);
        assert_eq!(params.time("at").unwrap(), Some(midnight));
        let params = Params(vec![("at".into(), "soon".into())]);
        assert!(params.time("at").is_err());
    }
}
