//! The alias-expansion limit. YAML aliases (`*name`) repeat what an anchor (`&name`)
//! marks, and anchors may hold aliases of earlier anchors: ten levels of ten aliases make a
//! 50 KB file expand to gigabytes ("billion laughs"). Before a document is turned into
//! values, one pass walks it with every alias expanded, building nothing and counting the
//! expanded size, and stops as soon as that passes [`MAX_ALIAS_EXPANSION`] times the size
//! of the text. The walk costs time in proportion to the limit and memory in proportion to
//! the text.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

/// A document may expand through its aliases to at most this many times its own size...
pub const MAX_ALIAS_EXPANSION: usize = 100;
/// ...and to at most this many bytes whatever its size (8 MiB: about 300 MB of values;
/// 100 times a 1 MiB file would cost gigabytes).
pub const MAX_EXPANDED_BYTES: usize = 8 << 20;

/// Why a document was refused: the 1-based line to blame (that of the top-level key, or
/// of the task, whose value was being expanded when the limit was reached) and a message.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge {
    /// Where the expansion ran over, when it is under a key of the top-level mapping.
    pub line: Option<usize>,
    /// What is wrong, with the limit.
    pub message: String,
}

/// `Err` when the YAML in `text`, with its aliases expanded, is more than
/// [`MAX_ALIAS_EXPANSION`] times the size of `text` or [`MAX_EXPANDED_BYTES`]. Text that is not YAML passes: the
/// real parse reports that. Expanded size is counted as each scalar's length plus one, and
/// two for each list or mapping: about the size of the document written out in flow
/// style without aliases, so that a document without aliases stays well under the limit.
pub fn check_expansion(text: &str) -> Result<(), TooLarge> {
    check_within(text, MAX_EXPANDED_BYTES)
}

fn check_within(text: &str, max_bytes: usize) -> Result<(), TooLarge> {
    if !may_have_alias(text) {
        return Ok(());
    }
    let limit = text
        .len()
        .max(1)
        .saturating_mul(MAX_ALIAS_EXPANSION)
        .min(max_bytes);
    let walk = Walk {
        left: Cell::new(limit),
        over: Cell::new(false),
        keys: RefCell::new([None, None]),
    };
    let result = Node {
        walk: &walk,
        depth: 0,
        key_at: None,
    }
    .deserialize(serde_norway::Deserializer::from_str(text));
    if result.is_ok() || !walk.over.get() {
        return Ok(());
    }
    let [top, second] = walk.keys.into_inner();
    let line = top.as_deref().and_then(|key| {
        let task = second
            .as_deref()
            .filter(|_| key == "tasks")
            .and_then(|t| super::build::task_line(text, t));
        task.or_else(|| super::build::top_level_line(text, key))
    });
    Err(TooLarge {
        line,
        message: format!(
            "aliases expand the document past {limit} bytes (the limit is \
             {MAX_ALIAS_EXPANSION} times the file's {} bytes, and at most {max_bytes})",
            text.len()
        ),
    })
}

/// Whether `text` may hold an alias of one of its anchors: some `*name` with an `&name`
/// (names as the YAML parser reads them: letters, digits, `_` and `-`). Looked for in the
/// whole text, quotes and comments included, so nothing is missed; most files without
/// aliases (`a && b` in a command, `* * *` in a cron) are spared the walk.
fn may_have_alias(text: &str) -> bool {
    let names = |marker: u8| {
        memchr::memchr_iter(marker, text.as_bytes())
            .map(|at| {
                let rest = &text.as_bytes()[at + 1..];
                let len = rest
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
                    .count();
                &rest[..len]
            })
            .filter(|name| !name.is_empty())
            .collect::<std::collections::HashSet<_>>()
    };
    let anchors = names(b'&');
    !anchors.is_empty() && names(b'*').iter().any(|name| anchors.contains(name))
}

/// The state of one walk: the budget left, whether it ran out, and the current keys of the
/// top-level mapping and of the mapping under it (to name a line).
struct Walk {
    left: Cell<usize>,
    over: Cell<bool>,
    keys: RefCell<[Option<String>; 2]>,
}

impl Walk {
    fn charge<E: de::Error>(&self, size: usize) -> Result<(), E> {
        match self.left.get().checked_sub(size) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.over.set(true);
                Err(E::custom("alias expansion limit reached"))
            }
        }
    }
}

/// One node of the document: visits it and everything under it, building nothing.
#[derive(Clone, Copy)]
struct Node<'w> {
    walk: &'w Walk,
    /// Nesting depth: 0 for the document itself.
    depth: usize,
    /// For a mapping key at depth 0 or 1: which of [`Walk::keys`] it is.
    key_at: Option<usize>,
}

impl Node<'_> {
    fn child(self) -> Self {
        Self {
            depth: self.depth + 1,
            key_at: None,
            ..self
        }
    }

    fn scalar<E: de::Error>(self, len: usize) -> Result<(), E> {
        self.walk.charge(len.saturating_add(1))
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar(4)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(v.to_string().len())
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<(), E> {
        self.scalar(v.to_string().len())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(v.to_string().len())
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<(), E> {
        self.scalar(v.to_string().len())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar(8)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if let Some(at) = self.key_at {
            let mut keys = self.walk.keys.borrow_mut();
            keys[at] = Some(v.to_string());
            keys[at + 1..].iter_mut().for_each(|k| *k = None);
        }
        self.scalar(v.len())
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<(), E> {
        self.scalar(v.len())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(0)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar(0)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.walk.charge(2)?;
        while seq.next_element_seed(self.child())?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.walk.charge(2)?;
        let key = Node {
            key_at: (self.depth < 2).then_some(self.depth),
            ..self.child()
        };
        while map.next_key_seed(key)?.is_some() {
            map.next_value_seed(self.child())?;
        }
        Ok(())
    }

    /// A tagged value (`!tag value`): the tag, then the value.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let ((), value) = data.variant_seed(self.child())?;
        de::VariantAccess::newtype_variant_seed(value, self.child())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `levels` anchors, each a list of `fan` aliases of the one before, over a list of
    /// `width` scalars.
    fn laughs(width: usize, levels: usize, fan: usize) -> String {
        let mut text = format!(
            "dag_id: laughs\nparams:\n  l0: &l0 [{}]\n",
            vec!["x"; width].join(", ")
        );
        for level in 1..=levels {
            let aliases = vec![format!("*l{}", level - 1); fan].join(", ");
            text.push_str(&format!("  l{level}: &l{level} [{aliases}]\n"));
        }
        text.push_str("tasks:\n  t: {type: noop}\n");
        text
    }

    #[test]
    fn a_billion_laughs_is_refused_quickly_naming_the_key_and_the_limit() {
        // Nine levels of ten: 10^9 copies of the first list if it were expanded. (The
        // integration test does the same with a 50 KB file; a debug build walks 5 MB in
        // seconds, so this one is smaller.)
        let text = laughs(1_000, 9, 10);
        let started = std::time::Instant::now();
        let err = check_expansion(&text).unwrap_err();
        assert_eq!(err.line, Some(2));
        assert_eq!(
            err.message,
            format!(
                "aliases expand the document past {} bytes (the limit is 100 times the \
                 file's {} bytes, and at most {MAX_EXPANDED_BYTES})",
                text.len() * 100,
                text.len(),
            )
        );
        // The walk stops at the limit: milliseconds, not the minutes and gigabytes the
        // whole expansion would take (generous for a loaded debug build).
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    }

    #[test]
    fn ordinary_aliases_and_documents_without_aliases_pass() {
        let reuse = "dag_id: d\ndefault_args: &d {retries: 2, retry_delay: 30s}\nparams: {a: *d, b: *d}\ntasks:\n  t: {type: shell, command: 'a && b * c'}\n";
        assert_eq!(check_expansion(reuse), Ok(()));
        // Ten times bigger is fine; expansions well past 100x are not.
        assert_eq!(check_expansion(&laughs(200, 1, 10)), Ok(()));
        assert!(check_expansion(&laughs(200, 3, 10)).is_err());
        // A large file meets the absolute bound before 100 times its size.
        let text = laughs(2_000, 2, 10);
        assert_eq!(check_within(&text, 1 << 20), Ok(()));
        let err = check_within(&text, 100_000).unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "aliases expand the document past 100000 bytes (the limit is 100 times the \
                 file's {} bytes, and at most 100000)",
                text.len()
            )
        );
        // No aliases at all, or not YAML: left to the real parse.
        assert_eq!(check_expansion("a: [1, 2, 3]\nb: '&*'\n"), Ok(()));
        assert_eq!(check_expansion("a: *nope & [\n"), Ok(()));
    }

    #[test]
    fn only_texts_with_an_alias_of_an_anchor_are_walked() {
        for without in [
            "schedule: '0 3 * * *'\ndefault_args: &d {retries: 1}\n",
            "command: 'a && b *c'\n",
            "a: &x-1 1\nb: '*x'\n",
        ] {
            assert!(!may_have_alias(without), "{without}");
        }
        for with in ["a: &x 1\nb: *x\n", "a: [&x-1 1, *x-1]", "a: '&b' # *b\n"] {
            assert!(may_have_alias(with), "{with}");
        }
    }

    #[test]
    fn an_expansion_under_a_task_names_the_task_line() {
        let text = format!(
            "dag_id: d\nx: &a [{}]\ny: &b [{}]\ntasks:\n  ok: {{type: noop}}\n  bad:\n    type: noop\n    doc: [{}]\n",
            vec!["x"; 100].join(","),
            vec!["*a"; 100].join(","),
            vec!["*b"; 100].join(","),
        );
        assert_eq!(check_expansion(&text).unwrap_err().line, Some(6));
    }
}
