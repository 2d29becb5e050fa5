//! Flash messages: what an action did ("queued run X"), shown once on the page it redirects
//! back to. The message travels in a short-lived cookie (`flash`, percent-encoded, HttpOnly,
//! SameSite=Strict, 60 s) rather than in the URL, so a reload or a shared link does not show
//! it again and no link can make the dashboard say something it did not do. The page that
//! shows it clears the cookie in its response ([`Flash`] is also a response part).

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::HeaderValue;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, IntoResponseParts, Redirect, Response, ResponseParts};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

const COOKIE_NAME: &str = "flash";
/// Longer messages are cut: a cookie is not the place for an essay.
const MAX_CHARS: usize = 300;

/// The flash message a request carries, if any.
#[derive(Debug, Default)]
pub struct Flash(Option<String>);

impl Flash {
    /// The message to show.
    pub fn message(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Flash {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let message = parts
            .headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE_NAME)
            .map(|(_, value)| percent_decode_str(value).decode_utf8_lossy().into_owned())
            .filter(|m| !m.is_empty());
        Ok(Self(message))
    }
}

/// Clears the cookie once its message has been shown.
impl IntoResponseParts for Flash {
    type Error = Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        if self.0.is_some() {
            let clear = format!("{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
            if let Ok(value) = HeaderValue::from_str(&clear) {
                res.headers_mut().append(SET_COOKIE, value);
            }
        }
        Ok(res)
    }
}

/// 303 See Other to `next` (a local path, checked by the caller), carrying `message`.
pub fn redirect(next: &str, message: &str) -> Response {
    let short: String = message.chars().take(MAX_CHARS).collect();
    let cookie = format!(
        "{COOKIE_NAME}={}; Path=/; Max-Age=60; HttpOnly; SameSite=Strict",
        utf8_percent_encode(&short, NON_ALPHANUMERIC)
    );
    match HeaderValue::from_str(&cookie) {
        Ok(value) => ([(SET_COOKIE, value)], Redirect::to(next)).into_response(),
        Err(_) => Redirect::to(next).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Request, StatusCode};

    use super::*;

    #[tokio::test]
    async fn a_message_survives_the_round_trip_through_the_cookie() {
        let response = redirect(
            "/dags/x",
            "Queued run manual__2024-01-01T00:00:00+00:00; ok",
        );
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "/dags/x");
        let set = response.headers()[SET_COOKIE].to_str().unwrap();
        let pair = set.split(';').next().unwrap();
        let request = Request::get("/")
            .header(COOKIE, format!("theme=dark; {pair}"))
            .body(())
            .unwrap();
        let (mut parts, ()) = request.into_parts();
        let flash = Flash::from_request_parts(&mut parts, &()).await.unwrap();
        assert_eq!(
            flash.message(),
            Some("Queued run manual__2024-01-01T00:00:00+00:00; ok")
        );
    }
}
