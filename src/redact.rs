//! Masking of secrets in everything shown: log lines (the daemon's and the tasks'), error
//! messages, pages and CLI output. Two kinds of secret are masked as `***`:
//! - in URLs (database, warehouse, object-store locations): the password of the userinfo
//!   (`postgres://user:***@host/db`) and the values of query parameters named like secrets
//!   (`s3://bucket/x?secret_access_key=***`);
//! - the values of this process's environment variables whose names look like secrets
//!   (`*PASSWORD*`, `*SECRET*`, `*TOKEN*`, `*KEY*`, …), wherever they appear.
//!
//! [`text`] is the one function every display path calls; it finds URLs inside free text,
//! so an error message quoting a location is masked as well as the location itself.

use std::borrow::Cow;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};

/// What a secret is replaced by.
pub const MASK: &str = "***";

/// Parts of names (variables, query parameters) that mark a secret, matched without case.
const SECRET_NAME_PARTS: [&str; 8] = [
    "PASSWORD",
    "PASSWD",
    "PWD",
    "SECRET",
    "TOKEN",
    "KEY",
    "CREDENTIAL",
    "SIGNATURE",
];

/// Environment values shorter than this are left alone: masking `1`, `yes` or `test` (the
/// usual dummy credentials of local S3 servers) everywhere would garble ordinary words and
/// hide nothing worth hiding. URL passwords are masked whatever their length.
const MIN_SECRET_LEN: usize = 6;

/// Variables whose names contain `PWD` but are paths, not passwords.
const NOT_SECRET_NAMES: [&str; 2] = ["PWD", "OLDPWD"];

/// Names ending so hold where a secret is kept (`AWS_SHARED_CREDENTIALS_FILE`,
/// `SSH_KEY_PATH`), not the secret: masking such a path everywhere would hide where files
/// are without hiding anything secret.
const NOT_SECRET_SUFFIXES: [&str; 5] = ["_FILE", "_DIR", "_PATH", "_SOCK", "_SOCKET"];

/// Whether a variable or parameter name looks like it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    !NOT_SECRET_NAMES.contains(&upper.as_str())
        && !NOT_SECRET_SUFFIXES.iter().any(|s| upper.ends_with(s))
        && SECRET_NAME_PARTS.iter().any(|part| upper.contains(part))
}

/// `text` with every secret masked: passwords and secret parameters of the URLs in it,
/// and the values of secret-named environment variables.
pub fn text(text: &str) -> Cow<'_, str> {
    match urls(text) {
        Cow::Borrowed(text) => ENV_SECRETS.mask(text),
        Cow::Owned(masked) => Cow::Owned(ENV_SECRETS.mask(&masked).into_owned()),
    }
}

/// A set of secret values to mask wherever they appear.
#[derive(Debug, Default)]
pub struct Secrets(Option<AhoCorasick>);

impl Secrets {
    /// The values of the variables among `vars` whose names look like secrets.
    pub fn named(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(secret_matcher(vars.into_iter()))
    }

    /// `text` with every one of these values replaced by [`MASK`].
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.0 {
            Some(m) if m.is_match(text) => {
                Cow::Owned(m.replace_all(text, &vec![MASK; m.patterns_len()]))
            }
            _ => Cow::Borrowed(text),
        }
    }
}

/// A `tracing` writer to stderr that masks each event before it is written, so no log line
/// of any module can leak a secret.
#[derive(Clone, Copy, Debug, Default)]
pub struct RedactedStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactedStderr {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter(Vec::new())
    }
}

/// Collects one event's text and writes it, masked, when the event is done.
pub struct EventWriter(Vec<u8>);

impl std::io::Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let event = String::from_utf8_lossy(&self.0);
        // Nowhere left to report a failure to write to stderr.
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text(&event).as_bytes());
    }
}

/// The values of this process's secret-named environment variables, read once. The
/// configuration owns the `ORCHESTRATOR_*` settings; this reads every variable's name, and
/// keeps only values, to recognise them wherever they leak.
static ENV_SECRETS: LazyLock<Secrets> = LazyLock::new(|| {
    let vars = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    Secrets(secret_matcher(vars))
});

/// A matcher of the secret values among `vars`, longest first (`None` when there are none).
fn secret_matcher(vars: impl Iterator<Item = (String, String)>) -> Option<AhoCorasick> {
    let mut values: Vec<String> = vars
        .filter(|(name, value)| is_secret_name(name) && value.len() >= MIN_SECRET_LEN)
        .map(|(_, value)| value)
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort();
    values.dedup();
    AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(values)
        .ok()
}

/// Masks the URLs found in `text` (anything shaped `scheme://…` up to a space or quote).
fn urls(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let scheme_start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let after = at + 3;
        let end = rest[after..]
            .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '<' | '>' | '`'))
            .map_or(rest.len(), |i| after + i);
        out.push_str(&rest[..scheme_start]);
        out.push_str(&rest[scheme_start..after]);
        out.push_str(&url_tail(&rest[after..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    if out == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(out)
    }
}

/// Masks what follows `scheme://`: the userinfo's password, then secret query parameters.
fn url_tail(tail: &str) -> String {
    // The query starts at the first `?` or `#`; the userinfo ends at the last `@` before
    // it, so a password holding `/` or `@` is masked whole.
    let query_at = tail.find(['?', '#']).unwrap_or(tail.len());
    let (before_query, query) = tail.split_at(query_at);
    let mut out = match before_query.rfind('@') {
        Some(at) => match before_query[..at].split_once(':') {
            Some((user, _)) => format!("{user}:{MASK}{}", &before_query[at..]),
            None => before_query.to_string(),
        },
        None => before_query.to_string(),
    };
    out.push_str(&query_params(query));
    out
}

/// Masks the values of secret-named parameters in `?a=1&token=x#frag`.
fn query_params(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while !rest.is_empty() {
        // Keep the separator (`?`, `&`, `;`, `#`) and mask `name=value` after it.
        let sep_len = rest.chars().next().map_or(0, char::len_utf8);
        out.push_str(&rest[..sep_len]);
        rest = &rest[sep_len..];
        let end = rest.find(['&', ';', '#']).unwrap_or(rest.len());
        let pair = &rest[..end];
        match pair.split_once('=') {
            Some((name, value)) if is_secret_name(name) && !value.is_empty() => {
                out.push_str(name);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
        rest = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_password_is_masked_and_the_rest_kept() {
        assert_eq!(
            urls("postgres://user:secret@host/db"),
            "postgres://user:***@host/db"
        );
        assert_eq!(
            urls("cannot open 'postgres://u:p%40ss@db.example:5432/w?sslmode=require': refused"),
            "cannot open 'postgres://u:***@db.example:5432/w?sslmode=require': refused"
        );
        assert_eq!(urls("mysql://u:pa/ss@w@host/db"), "mysql://u:***@host/db");
        assert_eq!(
            urls("a postgres://user@host/db b"),
            "a postgres://user@host/db b"
        );
        assert_eq!(urls("http://host:8080/path"), "http://host:8080/path");
        assert_eq!(urls("no url here: a:b@c"), "no url here: a:b@c");
    }

    #[test]
    fn query_parameters_named_like_secrets_are_masked() {
        assert_eq!(
            urls("s3://bucket/p?region=eu&secret_access_key=abc&aws_session_token=t#x"),
            "s3://bucket/p?region=eu&secret_access_key=***&aws_session_token=***#x"
        );
        assert_eq!(
            urls("https://h/o?X-Amz-Signature=deadbeef&password="),
            "https://h/o?X-Amz-Signature=***&password="
        );
    }

    #[test]
    fn several_urls_in_one_line_are_each_masked() {
        assert_eq!(
            urls("from s3://k:s@b/x to \"postgres://a:b@c/d\""),
            "from s3://k:***@b/x to \"postgres://a:***@c/d\""
        );
        assert!(matches!(urls("plain text"), Cow::Borrowed(_)));
    }

    #[test]
    fn secret_names_are_recognised_without_case() {
        for name in [
            "DB_PASSWORD",
            "api_token",
            "AWS_SECRET_ACCESS_KEY",
            "PGPASSWD",
            "key",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "HOME",
            "PATH",
            "PWD",
            "OLDPWD",
            "region",
            "SSH_KEY_PATH",
            "TOKEN_FILE",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn values_of_secret_environment_variables_are_masked_wherever_they_appear() {
        let vars = [
            ("DB_PASSWORD", "hunter22"),
            ("API_TOKEN", "tok-123456"),
            ("HOME", "/home/me"),
            ("SHORT_KEY", "1"),
            ("AWS_ACCESS_KEY_ID", "test"),
        ];
        let secrets = Secrets::named(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let masked = secrets.mask("login hunter22 with tok-123456 in /home/me, 1, test");
        assert_eq!(masked, "login *** with *** in /home/me, 1, test");
        assert!(secret_matcher(std::iter::empty()).is_none());
        assert!(matches!(Secrets::default().mask("x"), Cow::Borrowed("x")));
    }
}
