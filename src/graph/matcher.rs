//! Finds which drugs a title mentions: one Aho-Corasick automaton over every drug name,
//! case-insensitive, reporting overlapping matches so that when one name contains another
//! (`SODIUM CHLORIDE`, `CHLORIDE`) each is judged on its own; a match counts only when it is
//! a whole word or phrase (`ETHANOL` is not mentioned by `METHANOL`).
//!
//! A mention can only start at a word boundary, so the automaton runs anchored from each
//! such position (and stops as soon as no name can continue) instead of reporting, then
//! discarding, every name found inside longer words.

use aho_corasick::automaton::OverlappingState;
use aho_corasick::{AhoCorasick, Anchored, Input, MatchKind, StartKind};

/// Multi-pattern whole-word matcher over drug names.
pub struct DrugMatcher {
    automaton: AhoCorasick,
    /// Titles are lowercased first when some name is not ASCII (ASCII folding suffices otherwise).
    lowercase: bool,
}

impl DrugMatcher {
    /// Builds the automaton; `names` are already cleaned (trimmed, single spaces).
    pub fn new(names: &[String]) -> Result<Self, String> {
        let lowercase = !names.iter().all(|n| n.is_ascii());
        let patterns: Vec<String> = names
            .iter()
            .map(|n| {
                if lowercase {
                    n.to_lowercase()
                } else {
                    n.clone()
                }
            })
            .collect();
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Anchored)
            .ascii_case_insensitive(true)
            .build(&patterns)
            .map_err(|e| format!("cannot build the drug matcher: {e}"))?;
        Ok(Self {
            automaton,
            lowercase,
        })
    }

    /// Appends to `out` the index of every drug `title` mentions (sorted, no duplicates).
    pub fn mentions(&self, title: &str, out: &mut Vec<u32>) {
        let lowered;
        let hay = if self.lowercase {
            lowered = title.to_lowercase();
            lowered.as_str()
        } else {
            title
        };
        let first = out.len();
        if hay.is_ascii() {
            // Most titles: bytes are characters. Names are trimmed, so none starts at a space.
            let bytes = hay.as_bytes();
            for at in 0..bytes.len() {
                let boundary = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
                if boundary && bytes[at] != b' ' {
                    self.anchored_at(hay, at, out);
                }
            }
        } else {
            let mut prev: Option<char> = None;
            for (at, c) in hay.char_indices() {
                if is_boundary(prev) {
                    self.anchored_at(hay, at, out);
                }
                prev = Some(c);
            }
        }
        out[first..].sort_unstable();
        // Dedup this title's part in place (earlier entries belong to other titles).
        let mut kept = first;
        for i in first..out.len() {
            if kept == first || out[i] != out[kept - 1] {
                out[kept] = out[i];
                kept += 1;
            }
        }
        out.truncate(kept);
    }

    /// Names that start exactly at `at` and end at a word boundary.
    fn anchored_at(&self, hay: &str, at: usize, out: &mut Vec<u32>) {
        let input = Input::new(hay).span(at..hay.len()).anchored(Anchored::Yes);
        let mut state = OverlappingState::start();
        // Anchored search is configured above, so the search cannot fail; stop if it ever does.
        while self
            .automaton
            .try_find_overlapping(input.clone(), &mut state)
            .is_ok()
        {
            let Some(m) = state.get_match() else { break };
            // Names ending here as a suffix of a longer text (output links) start elsewhere.
            if m.start() == at && is_boundary(hay[m.end()..].chars().next()) {
                out.push(m.pattern().as_u32());
            }
        }
    }
}

fn is_boundary(c: Option<char>) -> bool {
    c.is_none_or(|c| !c.is_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(names: &[&str], title: &str) -> Vec<u32> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        DrugMatcher::new(&names).unwrap().mentions(title, &mut out);
        out
    }

    #[test]
    fn matching_is_case_insensitive_and_whole_word() {
        assert_eq!(
            found(&["DIPHENHYDRAMINE"], "Diphenhydramine hydrochloride helps"),
            vec![0]
        );
        assert_eq!(found(&["ETHANOL"], "methanol poisoning"), Vec::<u32>::new());
        assert_eq!(found(&["ETHANOL"], "ethanolamine"), Vec::<u32>::new());
        assert_eq!(
            found(
                &["ETHANOL"],
                "acute ethanol withdrawal, and ethanol intoxication."
            ),
            vec![0]
        );
        assert_eq!(found(&["EPINEPHRINE"], "(epinephrine)-induced"), vec![0]);
    }

    #[test]
    fn multi_word_names_match_as_phrases() {
        let names = ["SODIUM CHLORIDE", "CHLORIDE", "SODIUM"];
        assert_eq!(found(&names, "Sodium chloride infusion"), vec![0, 1, 2]);
        assert_eq!(found(&names, "sodium bicarbonate"), vec![2]);
        assert_eq!(found(&names, "potassium chloride"), vec![1]);
        assert_eq!(
            found(&["SODIUM CHLORIDE"], "sodiumchloride"),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn a_name_inside_another_name_is_judged_as_a_whole_word() {
        // ISOPRENALINE contains PRENALINE (made up), which must not match inside it.
        let names = ["ISOPRENALINE", "PRENALINE"];
        assert_eq!(found(&names, "isoprenaline hydrochloride"), vec![0]);
        assert_eq!(found(&names, "prenaline and isoprenaline"), vec![0, 1]);
    }

    #[test]
    fn a_name_failing_its_boundary_does_not_hide_one_inside_it() {
        let names = ["SODIUM CHLORIDE", "CHLORIDE"];
        assert_eq!(found(&names, "disodium chloride buffer"), vec![1]);
        assert_eq!(found(&["PRENALINE"], "isoprenaline"), Vec::<u32>::new());
    }

    #[test]
    fn non_ascii_names_fold_case_too() {
        assert_eq!(found(&["ÉTHER"], "l'éther anesthésique"), vec![0]);
    }

    #[test]
    fn repeated_names_count_once_and_non_ascii_titles_take_the_char_path() {
        let names = ["ASPIRIN", "ZINC"];
        assert_eq!(found(&names, "zinc, aspirin and aspirin"), vec![0, 1]);
        assert_eq!(found(&names, "café: aspirin ñzinc"), vec![0]);
        assert_eq!(found(&names, "ñ aspirin"), vec![0]);
    }
}
