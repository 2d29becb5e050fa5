//! Cleaning rules for the drug-mention graph's text fields.
//!
//! - Literal escaped byte runs such as `\xc3\xb1` (text that went through a bad export) are
//!   decoded as UTF-8 where they form valid characters and removed where they do not: an
//!   invalid sequence is removed whole, including escaped bytes in its expected length
//!   (`\xc3\x28` is a broken two-byte character, not "(").
//! - Whitespace is trimmed and inner runs collapse to one space.
//! - Dates `2020-01-01`, `01/01/2020` (day first) and `1 January 2020` become ISO dates.

use std::borrow::Cow;

use chrono::NaiveDate;

/// Decodes escape runs, trims and collapses whitespace. Returns `None` for empty text.
/// Clean text (the common case) is returned as is, without copying.
pub fn clean_text(raw: &str) -> Option<Cow<'_, str>> {
    if is_clean(raw) {
        return (!raw.is_empty()).then_some(Cow::Borrowed(raw));
    }
    let decoded = decode_escapes(raw);
    let mut out = String::with_capacity(decoded.len());
    for word in decoded.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    (!out.is_empty()).then_some(Cow::Owned(out))
}

/// ASCII without control characters or backslashes (so no escapes and no whitespace but
/// spaces), no leading, trailing or doubled spaces. Anything else takes the full normalising
/// path (text that needs no change comes back equal, only copied); this check only has to
/// be fast.
fn is_clean(s: &str) -> bool {
    let b = s.as_bytes();
    if b.first() == Some(&b' ') || b.last() == Some(&b' ') {
        return false;
    }
    // Folds without short-circuits, so that they vectorise.
    let odd = b.iter().fold(false, |acc, &c| {
        acc | (c < b' ') | (c == b'\\') | (c >= 0x80)
    });
    let doubled = b
        .iter()
        .zip(b.iter().skip(1))
        .fold(false, |acc, (&x, &y)| acc | ((x == b' ') & (y == b' ')));
    !odd && !doubled
}

/// Replaces every run of literal `\xNN` escapes by the UTF-8 it encodes, dropping invalid
/// sequences.
pub fn decode_escapes(raw: &str) -> Cow<'_, str> {
    if !raw.contains("\\x") {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find("\\x") {
        out.push_str(&rest[..at]);
        let (bytes, consumed) = escape_run(&rest[at..]);
        if consumed == 0 {
            // A lone `\x` not followed by two hex digits is ordinary text.
            out.push_str("\\x");
            rest = &rest[at + 2..];
            continue;
        }
        decode_run(&bytes, &mut out);
        rest = &rest[at + consumed..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The bytes of consecutive `\xNN` escapes at the start of `s`, and how many chars they use.
fn escape_run(s: &str) -> (Vec<u8>, usize) {
    let mut bytes = Vec::new();
    let mut pos = 0;
    while let Some(hex) = s.get(pos..pos + 4).and_then(|e| e.strip_prefix("\\x")) {
        match u8::from_str_radix(hex, 16) {
            Ok(b) if hex.bytes().all(|c| c.is_ascii_hexdigit()) => bytes.push(b),
            _ => break,
        }
        pos += 4;
    }
    (bytes, pos)
}

fn decode_run(bytes: &[u8], out: &mut String) {
    let mut i = 0;
    while i < bytes.len() {
        let width = match bytes[i] {
            0x00..=0x7F => 1,
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => 1,
        };
        let end = (i + width).min(bytes.len());
        match std::str::from_utf8(&bytes[i..end]) {
            Ok(s) if end - i == width => out.push_str(s),
            _ => {}
        }
        i = end;
    }
}

/// Parses the date formats seen in the sources; `None` when unreadable.
pub fn parse_date(raw: &str) -> Option<NaiveDate> {
    let t = raw.trim();
    if let Some(d) = numeric_date(t.as_bytes()) {
        return Some(d);
    }
    const FORMATS: [&str; 5] = ["%Y-%m-%d", "%d/%m/%Y", "%d %B %Y", "%d %b %Y", "%B %d, %Y"];
    FORMATS
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(t, f).ok())
}

/// `YYYY-MM-DD` and `DD/MM/YYYY` read directly (they are most rows; chrono's format parser
/// is kept for the rest).
fn numeric_date(b: &[u8]) -> Option<NaiveDate> {
    let num = |s: &[u8]| {
        s.iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let (y, m, d) = match b {
        [_, _, _, _, b'-', _, _, b'-', _, _] => (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?),
        [_, _, b'/', _, _, b'/', _, _, _, _] => (num(&b[6..10])?, num(&b[3..5])?, num(&b[0..2])?),
        _ => return None,
    };
    NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_escape_runs_are_decoded() {
        assert_eq!(
            decode_escapes(r"Laminoplasty or \xc3\xb1 Laminectomy"),
            "Laminoplasty or ñ Laminectomy"
        );
        assert_eq!(decode_escapes(r"QUZYTTIR\xe2\x84\xa2 x"), "QUZYTTIR™ x");
    }

    #[test]
    fn invalid_sequences_are_removed_whole() {
        assert_eq!(
            decode_escapes(r"Journal of emergency nursing\xc3\x28"),
            "Journal of emergency nursing"
        );
        assert_eq!(decode_escapes(r"a\xffb"), "ab");
        assert_eq!(decode_escapes(r"cut \xe2\x84"), "cut ");
    }

    #[test]
    fn lone_backslash_x_is_kept() {
        assert_eq!(decode_escapes(r"C:\xyz"), r"C:\xyz");
        assert_eq!(decode_escapes("plain"), "plain");
    }

    #[test]
    fn text_is_trimmed_and_whitespace_collapsed() {
        assert_eq!(
            clean_text("  Use of \t Diphenhydramine  ").as_deref(),
            Some("Use of Diphenhydramine")
        );
        assert_eq!(clean_text("   "), None);
        assert_eq!(clean_text(r"\xc3\x28"), None);
    }

    #[test]
    fn clean_text_is_not_copied_and_unicode_spaces_count_as_whitespace() {
        assert!(matches!(
            clean_text("Already clean text"),
            Some(Cow::Borrowed(_))
        ));
        assert_eq!(clean_text("a\u{a0}b").as_deref(), Some("a b"));
        assert_eq!(clean_text("a  b").as_deref(), Some("a b"));
        // Every Unicode whitespace counts, vertical tab included, ASCII text or not.
        assert_eq!(clean_text("a\u{b}b").as_deref(), Some("a b"));
        assert_eq!(clean_text("a\u{1}b").as_deref(), Some("a\u{1}b"));
        assert_eq!(clean_text(r"a\b").as_deref(), Some(r"a\b"));
    }

    #[test]
    fn the_three_date_formats_become_iso() {
        let d = |s| parse_date(s).map(|d| d.to_string());
        assert_eq!(d("2020-01-01").as_deref(), Some("2020-01-01"));
        assert_eq!(d("02/01/2019").as_deref(), Some("2019-01-02"), "day first");
        assert_eq!(d("25/05/2020").as_deref(), Some("2020-05-25"));
        assert_eq!(d("1 January 2020").as_deref(), Some("2020-01-01"));
        assert_eq!(d(" 27 April 2020 ").as_deref(), Some("2020-04-27"));
        assert_eq!(d("31/02/2020"), None);
        assert_eq!(d("soon"), None);
    }
}
