//! Flash messages: what an action did ("queued run X"), shown once on the page it redirects
//! back to. The message travels in a short-lived cookie (`flash`, percent-encoded, HttpOnly,
//! SameSite=Strict, 60 s) rather than in the URL, so a reload or a shared link does not show
//! it again and no link can make the dashboard say something it did not do. The page that
//! shows it clears the cookie in its response ([`Flash`] is also a response part).
//!
//! Cookies are shared by every port of a host, so any other local site could set `flash`:
//! the value is signed (HMAC-SHA-256 under a random key drawn once per process) and a
//! cookie whose signature does not match is ignored.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::HeaderValue;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, IntoResponseParts, Redirect, Response, ResponseParts};
use hmac::{Hmac, Mac};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;

const COOKIE_NAME: &str = "flash";
/// Longer messages are cut: a cookie is not the place for an essay.
const MAX_CHARS: usize = 300;

/// This process's signing key; `None` if the OS gave no randomness (then no flash at all).
fn key() -> Option<&'static [u8; 32]> {
    static KEY: std::sync::OnceLock<Option<[u8; 32]>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).ok().map(|()| key)
    })
    .as_ref()
}

/// HMAC-SHA-256 of `message` under `key` (`None` only if HMAC refused the key, which
/// it does for no length).
fn mac(key: &[u8; 32], message: &str) -> Option<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(message.as_bytes());
    Some(mac)
}

/// The hex signature of `message` under `key`.
fn sign(key: &[u8; 32], message: &str) -> Option<String> {
    let bytes = mac(key, message)?.finalize().into_bytes();
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The message of a cookie value `<signature>.<percent-encoded message>`, if the
/// signature is this process's (checked in constant time).
fn verified(value: &str) -> Option<String> {
    let (signature, encoded) = value.split_once('.')?;
    let message = percent_decode_str(encoded).decode_utf8().ok()?.into_owned();
    let signature = decode_hex(signature)?;
    mac(key()?, &message)?
        .verify_slice(&signature)
        .ok()
        .map(|()| message)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

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
            .and_then(|(_, value)| verified(value))
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
    let Some(signature) = key().and_then(|key| sign(key, &short)) else {
        return Redirect::to(next).into_response();
    };
    let cookie = format!(
        "{COOKIE_NAME}={signature}.{}; Path=/; Max-Age=60; HttpOnly; SameSite=Strict",
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

    async fn flash_of(cookie: &str) -> Option<String> {
        let request = Request::get("/").header(COOKIE, cookie).body(()).unwrap();
        let (mut parts, ()) = request.into_parts();
        let flash = Flash::from_request_parts(&mut parts, &()).await.unwrap();
        flash.message().map(str::to_owned)
    }

    #[tokio::test]
    async fn a_forged_or_altered_cookie_shows_nothing() {
        // Planted by another local site: unsigned, or signed with a key of its own.
        assert_eq!(flash_of("flash=Deleted%20everything").await, None);
        let other = [7u8; 32];
        let forged = format!(
            "flash={}.Deleted%20everything",
            sign(&other, "Deleted everything").unwrap()
        );
        assert_eq!(flash_of(&forged).await, None);
        // A genuine cookie with its message changed.
        let response = redirect("/", "Queued run r1");
        let set = response.headers()[SET_COOKIE].to_str().unwrap();
        let pair = set.split(';').next().unwrap();
        assert_eq!(flash_of(pair).await.as_deref(), Some("Queued run r1"));
        let altered = pair.replace("r1", "r2");
        assert_eq!(flash_of(&altered).await, None);
        assert_eq!(flash_of("flash=.").await, None);
    }

    #[test]
    fn the_signature_is_hmac_sha256() {
        // Computed independently with Python:
        // hmac.new(bytes(range(32)), b"msg", hashlib.sha256).hexdigest()
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        assert_eq!(
            sign(&key, "msg").unwrap(),
            "3b57d42a96c7d6bbd3a8d21ccf7a9db575e32e1872b62c0a368840b47d8b38ef"
        );
    }
}
