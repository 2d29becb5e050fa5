//! HTML pages (askama templates in `templates/`, values HTML-escaped by askama) and their
//! form actions. Handlers stay thin: extract → call the [`Service`](crate::service::Service)
//! → render. Shared here: the error page every handler's failure becomes, and the formats
//! of times and durations.

pub mod dag;
pub mod dag_actions;
mod dag_parts;
#[cfg(test)]
mod dag_tests;
pub mod dags;
mod extract;
#[cfg(test)]
mod fixture;
pub mod flash;
mod gantt;
pub mod links;
pub mod log;
pub mod run;
pub mod source;
pub mod users;

use askama::Template;
use askama_web::WebTemplate;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use crate::service::ServiceError;

/// The page shown when a handler fails: 404 for unknown DAGs, runs, tasks and tries,
/// 400/409 for requests the state refuses, 500 (logged, details withheld) otherwise.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    /// An error page with this status and message (shown escaped).
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 404 with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<ServiceError> for PageError {
    fn from(e: ServiceError) -> Self {
        let status = match &e {
            e if e.is_not_found() => StatusCode::NOT_FOUND,
            ServiceError::Invalid(_) | ServiceError::AmbiguousRun(..) => StatusCode::BAD_REQUEST,
            ServiceError::Conflict(_) => StatusCode::CONFLICT,
            _ => {
                tracing::error!(error = %e, "dashboard request failed");
                return Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the state store failed; see the server log",
                );
            }
        };
        Self::new(status, crate::redact::text(&e.to_string()).into_owned())
    }
}

/// The router's fallback: an HTML 404 for any unknown path.
pub async fn not_found(uri: axum::http::Uri) -> PageError {
    PageError::not_found(format!("There is no page at {}.", uri.path()))
}

/// An HTML 405 for a known path asked with the wrong method (a GET on an action).
pub async fn method_not_allowed(method: axum::http::Method) -> PageError {
    PageError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("This address does not answer {method}; its actions are buttons on the pages."),
    )
}

/// The error page.
#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            status: self.status.as_u16(),
            reason: self.status.canonical_reason().unwrap_or("Error"),
            message: &self.message,
        };
        match page.render() {
            Ok(html) => (
                self.status,
                [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response(),
            Err(_) => (self.status, self.message).into_response(),
        }
    }
}

/// A time for pages: `2024-01-01 03:00:00` in UTC, or `-`.
pub fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// A duration for people: `850 ms`, `12.4 s`, `3 min 05 s`, `2 h 07 min`, or `-`.
pub fn duration(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> String {
    let (Some(start), Some(end)) = (start, end) else {
        return "-".into();
    };
    let ms = (end - start).num_milliseconds().max(0);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {:02} s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{} h {:02} min", ms / 3_600_000, ms / 60_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn durations_read_like_people_say_them() {
        let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let after = |ms: i64| Some(t0 + chrono::Duration::milliseconds(ms));
        assert_eq!(duration(Some(t0), after(850)), "850 ms");
        assert_eq!(duration(Some(t0), after(12_400)), "12.4 s");
        assert_eq!(duration(Some(t0), after(185_000)), "3 min 05 s");
        assert_eq!(duration(Some(t0), after(7_620_000)), "2 h 07 min");
        assert_eq!(duration(None, after(1)), "-");
    }
}
