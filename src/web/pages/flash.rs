//! Flash messages: an action (a form POST) answers 303 See Other to the page the user came
//! from and leaves one short message for it to show ("Cleared 3 tasks; the run is queued
//! again").
//!
//! The message travels in a short-lived cookie (`flash`, percent-encoded, `Max-Age=60`,
//! `HttpOnly`, `SameSite=Strict`, `Path=/`) rather than in the URL: a reload or a shared
//! link does not repeat it, and no one can craft a link that makes the dashboard say
//! something. The page that shows it clears the cookie in the same response.

use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Name of the cookie.
const COOKIE_NAME: &str = "flash";
/// Messages are cut to this many characters (a cookie must stay small).
const MAX_CHARS: usize = 300;

/// A 303 redirect to `to` carrying `message` for the next page.
pub fn redirect(to: &str, message: &str) -> Response {
    let short: String = message.chars().take(MAX_CHARS).collect();
    let cookie = format!(
        "{COOKIE_NAME}={}; Max-Age=60; Path=/; HttpOnly; SameSite=Strict",
        utf8_percent_encode(&short, NON_ALPHANUMERIC)
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(to) {
        headers.insert(LOCATION, location);
    }
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        headers.insert(SET_COOKIE, cookie);
    }
    response
}

/// The message a previous action left, if any.
pub fn take(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("flash="))?;
    let text = percent_decode_str(value).decode_utf8_lossy();
    let text: String = text.chars().take(MAX_CHARS).collect();
    (!text.is_empty()).then_some(text)
}

/// Adds the header that clears the cookie to a page that showed the message.
fn shown(mut response: Response) -> Response {
    response.headers_mut().append(
        SET_COOKIE,
        HeaderValue::from_static("flash=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"),
    );
    response
}

/// Renders `page`, clearing the flash cookie when the page showed a message.
pub fn respond(page: impl IntoResponse, flash: &Option<String>) -> Response {
    let response = page.into_response();
    if flash.is_some() {
        shown(response)
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_the_cookie_round_trip() {
        let response = redirect("/dags/d/runs/r", "Cleared 2 tasks; it's <queued> again");
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[LOCATION], "/dags/d/runs/r");
        let set = response.headers()[SET_COOKIE].to_str().unwrap();
        let pair = set.split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_str(&format!("a=1; {pair}")).unwrap(),
        );
        assert_eq!(
            take(&headers).as_deref(),
            Some("Cleared 2 tasks; it's <queued> again")
        );
        assert_eq!(take(&HeaderMap::new()), None);
        let cleared = respond("page", &Some("x".into()));
        assert!(
            cleared.headers()[SET_COOKIE]
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
    }
}
