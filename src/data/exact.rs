//! Numbers read from text only when nothing is lost: [`table`](super::table) asks here
//! whether a CSV cell (or a JSON string) can be an `int` or a `float`, and
//! [`json_source`](super::json_source) whether a JSON element holds a number that serde's
//! `f64` would change. The rule is that writing the stored value back gives the same number
//! and, for integers, the same text: `007`, `+7` and `-0` stay text, as does an integer
//! beyond 64 bits; `1e400`, `nan` and `inf` are not floats.

/// Why a text is not stored as a number of the type asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inexact {
    /// Not a number of that type at all.
    NotNumber,
    /// An integer with leading zeros, a `+` sign or `-0`: the text would change.
    TextChanges,
    /// An integer beyond the 64-bit range.
    TooBig,
    /// A float whose nearest `f64` is another number (or infinite); holds what it would become.
    Becomes(String),
}

impl Inexact {
    /// A note to append to "'x' is not int/float", empty when there is nothing to add.
    pub fn note(&self) -> String {
        match self {
            Self::NotNumber => String::new(),
            Self::TextChanges => " (it would lose its leading zeros or sign)".into(),
            Self::TooBig => " (beyond the 64-bit range)".into(),
            Self::Becomes(v) => format!(" (it would become {v})"),
        }
    }
}

/// The parts of a decimal literal `-?D+(.D+)?([eE][+-]?D+)?` (no leading `+`, no bare `.5`).
struct Literal<'a> {
    negative: bool,
    int: &'a [u8],
    frac: &'a [u8],
    exp: Option<i64>,
}

fn literal(t: &str) -> Option<Literal<'_>> {
    let b = t.as_bytes();
    let digits = |from: usize| from + b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let negative = b.first() == Some(&b'-');
    let start = usize::from(negative);
    let mut i = digits(start);
    let int = &b[start..i];
    if int.is_empty() {
        return None;
    }
    let mut frac: &[u8] = &[];
    if b.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        frac = &b[i + 1..end];
        if frac.is_empty() {
            return None;
        }
        i = end;
    }
    let mut exp = None;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        let end = digits(i + 1 + sign);
        if end == i + 1 + sign {
            return None;
        }
        // Exponents that do not fit i64 are out of any float's range anyway.
        exp = Some(t[i + 1..end].parse().ok()?);
        i = end;
    }
    (i == b.len()).then_some(Literal {
        negative,
        int,
        frac,
        exp,
    })
}

/// `t` (already trimmed) as an `i64` whose decimal text is exactly `t`.
pub fn exact_int(t: &str) -> Result<i64, Inexact> {
    match t.parse::<i64>() {
        Ok(v) => {
            // Parsing accepts `+7`, `007` and `-0`, whose text printing `v` would not give back.
            let digits = t.strip_prefix('-').unwrap_or(t).as_bytes();
            let changed = t.starts_with('+')
                || (digits.len() > 1 && digits[0] == b'0')
                || (v == 0 && t.starts_with('-'));
            if changed {
                Err(Inexact::TextChanges)
            } else {
                Ok(v)
            }
        }
        Err(_) => match literal(t) {
            Some(l) if l.frac.is_empty() && l.exp.is_none() => Err(Inexact::TooBig),
            _ => Err(Inexact::NotNumber),
        },
    }
}

/// `t` (already trimmed) as an `f64` that prints back as the same number (`1.50` is 1.5).
pub fn exact_float(t: &str) -> Result<f64, Inexact> {
    let Some(lit) = literal(t) else {
        return Err(Inexact::NotNumber);
    };
    if lit.int.len() > 1 && lit.int[0] == b'0' {
        return Err(Inexact::NotNumber);
    }
    let v: f64 = t.parse().map_err(|_| Inexact::NotNumber)?;
    if !v.is_finite() {
        return Err(Inexact::Becomes(v.to_string()));
    }
    // Up to 15 significant digits always survive a round trip through a normal f64; only
    // longer or subnormal literals need the exact (slower, allocating) comparison.
    let significant = lit
        .int
        .iter()
        .chain(lit.frac)
        .skip_while(|&&c| c == b'0')
        .count();
    if significant <= 15 && (v.is_normal() || (v == 0.0 && significant == 0)) {
        return Ok(v);
    }
    // The literal must be a shortest decimal of `v`: with more digits it is another number,
    // which `v` only approximates. Several may be shortest (1138437394645142.2 and ...142.3
    // are the same f64, half-way between them; printers differ on which they write), and
    // each is taken: it parses to `v`, so no digit count could tell them apart.
    let shortest = format!("{v:e}");
    match literal(&shortest) {
        Some(back) if decimal(&lit).1.len() <= decimal(&back).1.len() => Ok(v),
        _ => Err(Inexact::Becomes(v.to_string())),
    }
}

/// A literal's value as (negative, significant digits, power of ten of the last digit),
/// with every zero the same.
fn decimal(l: &Literal<'_>) -> (bool, Vec<u8>, i64) {
    let all: Vec<u8> = l.int.iter().chain(l.frac).copied().collect();
    let first = all.iter().position(|&c| c != b'0').unwrap_or(all.len());
    let last = all
        .iter()
        .rposition(|&c| c != b'0')
        .map_or(first, |p| p + 1);
    if first == last {
        return (false, Vec::new(), 0);
    }
    let trailing = (all.len() - last) as i64;
    let power = l.exp.unwrap_or(0) - l.frac.len() as i64 + trailing;
    (l.negative, all[first..last].to_vec(), power)
}

/// The first number in a parsed JSON element's source text that serde's `Value` does not
/// hold exactly, with why: an integer beyond 64 bits, or a fraction or exponent whose `f64`
/// is another number. Integers within `i64`/`u64` are held exactly and pass. Only strings
/// are skipped, so `bytes` must be valid JSON.
pub fn inexact_json_number(bytes: &[u8]) -> Option<String> {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let text = std::str::from_utf8(&bytes[start..i]).ok()?;
                if let Some(why) = json_number_loss(text) {
                    return Some(why);
                }
            }
            _ => i += 1,
        }
    }
    None
}

fn json_number_loss(text: &str) -> Option<String> {
    let integer = !text.contains(['.', 'e', 'E']);
    if integer {
        let fits = text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok();
        return (!fits).then(|| {
            format!("number {text} is beyond 64-bit integers (quote it to keep it as text)")
        });
    }
    match exact_float(text) {
        Err(Inexact::Becomes(v)) => Some(format!(
            "number {text} would become {v} as a 64-bit float (quote it to keep it as text)"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_taken_only_when_their_text_comes_back_unchanged() {
        assert_eq!(exact_int("42"), Ok(42));
        assert_eq!(exact_int("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(exact_int("0"), Ok(0));
        for changed in ["007", "+7", "-0", "-01", "00"] {
            assert_eq!(exact_int(changed), Err(Inexact::TextChanges), "{changed}");
        }
        for big in [
            "99999999999999999999",
            "9223372036854775808",
            "-9223372036854775809",
        ] {
            assert_eq!(exact_int(big), Err(Inexact::TooBig), "{big}");
        }
        for not in ["1.5", "1e3", "x", "", "-", "0x10", "1_000"] {
            assert_eq!(exact_int(not), Err(Inexact::NotNumber), "{not}");
        }
    }

    #[test]
    fn floats_are_taken_only_when_they_print_back_as_the_same_number() {
        for (text, v) in [
            ("1.5", 1.5),
            ("1.50", 1.5),
            ("-0.25e2", -25.0),
            ("1e20", 1e20),
            ("0.30000000000000004", 0.30000000000000004),
            ("1.000000000000000000000", 1.0),
            ("0.0", 0.0),
            ("123456789012345.6", 123456789012345.6),
            // Two shortest decimals of one f64 (found by tests/integration/fuzz.rs: serde
            // writes the first, Rust the second).
            ("-1138437394645142.2", -1_138_437_394_645_142.3),
            ("-1138437394645142.3", -1_138_437_394_645_142.3),
        ] {
            assert_eq!(exact_float(text), Ok(v), "{text}");
        }
        // Printing back would give another decimal, even if the f64 is the nearest one.
        assert_eq!(
            exact_float("0.1000000000000000055511151231257827"),
            Err(Inexact::Becomes("0.1".into()))
        );
        assert_eq!(
            exact_float("1.00000000000000000001"),
            Err(Inexact::Becomes("1".into()))
        );
        assert_eq!(
            exact_float("99999999999999999999"),
            Err(Inexact::Becomes("100000000000000000000".into()))
        );
        assert_eq!(exact_float("1e400"), Err(Inexact::Becomes("inf".into())));
        assert_eq!(exact_float("1e-400"), Err(Inexact::Becomes("0".into())));
        for not in [
            "nan", "NaN", "inf", "infinity", ".5", "5.", "007.5", "+1.5", "1e", "x",
        ] {
            assert_eq!(exact_float(not), Err(Inexact::NotNumber), "{not}");
        }
    }

    #[test]
    fn what_is_taken_prints_back_unchanged_over_a_generated_corpus() {
        let mut corpus = crate::data::testing::Corpus::new(0x9e37_79b9_7f4a_7c15);
        let (mut ints, mut floats) = (0, 0);
        for _ in 0..50_000 {
            let t = corpus.text("0123456789-+.eE", 24);
            if let Ok(v) = exact_int(&t) {
                assert_eq!(v.to_string(), t);
                ints += 1;
            }
            if let Ok(v) = exact_float(&t) {
                // A shortest decimal of `v`: no more digits than Rust prints for it.
                let (back, lit) = (format!("{v:e}"), literal(&t).unwrap());
                let back = decimal(&literal(&back).unwrap());
                assert_eq!(decimal(&lit).1.len(), back.1.len(), "{t}");
                assert_eq!(back.0, decimal(&lit).0, "{t}");
                floats += 1;
            }
        }
        assert!(ints > 100 && floats > 100, "{ints} ints, {floats} floats");
    }

    #[test]
    fn json_numbers_serde_would_change_are_found_outside_strings_only() {
        let ok = br#"{"a": 18446744073709551615, "b": -9223372036854775808, "c": 1.5e3, "d": "99999999999999999999 \" 1.00000000000000000001"}"#;
        assert_eq!(inexact_json_number(ok), None);
        assert_eq!(
            inexact_json_number(br#"{"id": 99999999999999999999}"#).as_deref(),
            Some(
                "number 99999999999999999999 is beyond 64-bit integers (quote it to keep it as text)"
            )
        );
        assert_eq!(
            inexact_json_number(br#"{"x": [1, 1.00000000000000000001]}"#).as_deref(),
            Some(
                "number 1.00000000000000000001 would become 1 as a 64-bit float (quote it to keep it as text)"
            )
        );
    }
}
