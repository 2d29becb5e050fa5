//! The `graph` analyses over a `graph.json` read as a stream: one drug node in memory at a
//! time (and of it only the journal names), so memory does not grow with the graph.
//!
//! Files the `drug_graph` task writes hold one node per line; those lines are parsed one by
//! one from a byte slice (several times faster than parsing from a reader). Any other layout
//! goes through serde_json's reader, still one node at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::BufRead;
use std::ops::ControlFlow;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::TopJournals;

/// Why a streamed analysis failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The file is not a drug graph.
    #[error("not a drug graph: {0}")]
    Format(#[from] serde_json::Error),
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The asked drug has no node.
    #[error("drug '{0}' is not in the graph")]
    UnknownDrug(String),
}

/// What the analyses need of one drug node.
#[derive(Debug, Deserialize)]
pub struct NodeJournals {
    /// Drug name.
    pub drug: String,
    /// Journals of its PubMed mentions.
    pub pubmed: Journals<MentionJournal>,
    /// Journals of its clinical-trial mentions.
    pub clinical_trials: Journals<MentionJournal>,
    /// Journals of its (journal, date) links.
    pub journals: Journals<LinkJournal>,
    #[serde(rename = "atccode")]
    _atccode: Option<TextOnly>,
}

/// Distinct journal names of a list, collected without keeping the list.
#[derive(Debug, Default)]
pub struct Journals<T>(pub BTreeSet<String>, std::marker::PhantomData<T>);

/// A mention, as far as its journal.
#[derive(Debug, Deserialize)]
pub struct MentionJournal {
    journal: Option<String>,
    #[serde(rename = "title")]
    _title: TextOnly,
    #[serde(rename = "date")]
    _date: TextOnly,
    #[serde(rename = "id")]
    _id: Option<TextOnly>,
}

/// A (journal, date) link, as far as its journal.
#[derive(Debug, Deserialize)]
pub struct LinkJournal {
    journal: String,
    #[serde(rename = "date")]
    _date: TextOnly,
}

/// The journal an element contributes, if any.
pub trait JournalOf {
    /// Takes the journal name out.
    fn journal(self) -> Option<String>;
}

impl JournalOf for MentionJournal {
    fn journal(self) -> Option<String> {
        self.journal
    }
}

impl JournalOf for LinkJournal {
    fn journal(self) -> Option<String> {
        Some(self.journal)
    }
}

impl<'de, T: Deserialize<'de> + JournalOf> Deserialize<'de> for Journals<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + JournalOf> Visitor<'de> for V<T> {
            type Value = Journals<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut set = BTreeSet::new();
                while let Some(item) = seq.next_element::<T>()? {
                    if let Some(j) = item.journal()
                        && !set.contains(&j)
                    {
                        set.insert(j);
                    }
                }
                Ok(Journals(set, std::marker::PhantomData))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// A string that must be there but is not kept (checked as text without being copied).
#[derive(Debug)]
pub struct TextOnly;

impl<'de> Deserialize<'de> for TextOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TextOnly;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<TextOnly, E> {
                Ok(TextOnly)
            }
        }
        d.deserialize_str(V)
    }
}

/// The first line the `drug_graph` task writes; every node then follows on its own line.
const LINE_HEADER: &[u8] = b"{\"drugs\": [\n";

/// Calls `f` on every drug node of the graph in `reader`, in file order, until it breaks.
pub fn for_each_node(
    mut reader: impl BufRead,
    mut f: impl FnMut(NodeJournals) -> ControlFlow<()>,
) -> Result<(), StreamError> {
    let start = reader.fill_buf()?;
    if start.starts_with(LINE_HEADER) && start[LINE_HEADER.len()..].starts_with(b"{\"atccode\":") {
        reader.consume(LINE_HEADER.len());
        return by_lines(reader, f);
    }
    let mut stopped = false;
    let seed = GraphSeed {
        f: &mut f,
        stopped: &mut stopped,
    };
    let mut de = serde_json::Deserializer::from_reader(reader);
    match seed.deserialize(&mut de) {
        Err(_) if stopped => Ok(()),
        Err(e) => Err(e.into()),
        Ok(()) => Ok(de.end()?),
    }
}

/// The task's layout: `{"drugs": [` line, nodes one a line separated by `,`, then `]}`.
fn by_lines(
    mut reader: impl BufRead,
    mut f: impl FnMut(NodeJournals) -> ControlFlow<()>,
) -> Result<(), StreamError> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Err(StreamError::Format(de::Error::custom(
                "the file ends inside the drug list",
            )));
        }
        let text = line.trim_ascii_end();
        if text == b"]}" {
            break;
        }
        let node = text.strip_suffix(b",").unwrap_or(text);
        if f(serde_json::from_slice(node)?).is_break() {
            return Ok(());
        }
    }
    // Only white space may follow.
    line.clear();
    reader.read_to_end(&mut line)?;
    if line.iter().any(|b| !b.is_ascii_whitespace()) {
        return Err(StreamError::Format(de::Error::custom(
            "trailing characters after the graph",
        )));
    }
    Ok(())
}

struct GraphSeed<'f, F> {
    f: &'f mut F,
    stopped: &'f mut bool,
}

impl<'de, F: FnMut(NodeJournals) -> ControlFlow<()>> DeserializeSeed<'de> for GraphSeed<'_, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(NodeJournals) -> ControlFlow<()>> Visitor<'de> for GraphSeed<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct Graph")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        let (f, stopped) = (self.f, self.stopped);
        while let Some(key) = map.next_key::<String>()? {
            if key == "drugs" && !seen {
                seen = true;
                map.next_value_seed(NodesSeed {
                    f: &mut *f,
                    stopped: &mut *stopped,
                })?;
            } else if key == "drugs" {
                return Err(de::Error::duplicate_field("drugs"));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if !seen {
            return Err(de::Error::missing_field("drugs"));
        }
        Ok(())
    }
}

struct NodesSeed<'f, F> {
    f: &'f mut F,
    stopped: &'f mut bool,
}

impl<'de, F: FnMut(NodeJournals) -> ControlFlow<()>> DeserializeSeed<'de> for NodesSeed<'_, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(NodeJournals) -> ControlFlow<()>> Visitor<'de> for NodesSeed<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence of drug nodes")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(node) = seq.next_element::<NodeJournals>()? {
            if (self.f)(node).is_break() {
                // Unwinds the parse; the caller knows it was asked for.
                *self.stopped = true;
                return Err(de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

/// [`super::analysis::top_journals`] in one pass. Drugs of one name count once when their
/// nodes are adjacent, as in every graph the task writes (nodes are sorted by name).
pub fn top_journals(reader: impl BufRead) -> Result<TopJournals, StreamError> {
    // Per journal: distinct drugs so far and the last drug counted.
    let mut counts: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let (mut last_name, mut group) = (None::<String>, 0u64);
    for_each_node(reader, |node| {
        if last_name.as_deref() != Some(node.drug.as_str()) {
            group += 1;
            last_name = Some(node.drug);
        }
        for j in node.journals.0 {
            let entry = counts.entry(j).or_insert((0, 0));
            if entry.1 != group {
                *entry = (entry.0 + 1, group);
            }
        }
        ControlFlow::Continue(())
    })?;
    let max = counts.values().map(|c| c.0).max().unwrap_or(0);
    let journals = counts
        .into_iter()
        .filter(|(_, c)| max > 0 && c.0 == max)
        .map(|(j, _)| j)
        .collect();
    Ok(TopJournals {
        max_distinct_drugs: max,
        journals,
    })
}

/// [`super::analysis::related_drugs`] in two passes over the graph (`open` gives a fresh
/// reader each time): the first finds the drug, the second its related drugs.
pub fn related_drugs<R: BufRead>(
    mut open: impl FnMut() -> std::io::Result<R>,
    drug: &str,
) -> Result<Vec<String>, StreamError> {
    let wanted = drug.trim();
    let mut found = None;
    for_each_node(open()?, |node| {
        if node.drug.eq_ignore_ascii_case(wanted) {
            found = Some((node.drug, node.pubmed.0));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    let Some((name, journals)) = found else {
        return Err(StreamError::UnknownDrug(wanted.to_string()));
    };
    let mut related = BTreeSet::new();
    let shares = |set: &BTreeSet<String>| set.iter().any(|j| journals.contains(j));
    for_each_node(open()?, |node| {
        if node.drug != name && shares(&node.pubmed.0) && !shares(&node.clinical_trials.0) {
            related.insert(node.drug);
        }
        ControlFlow::Continue(())
    })?;
    Ok(related.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{DrugNode, Graph, JournalLink, Mention, analysis};

    fn mention(id: Option<&str>, title: &str, journal: Option<&str>) -> Mention {
        Mention {
            id: id.map(str::to_string),
            title: title.into(),
            date: "2020-01-01".into(),
            journal: journal.map(str::to_string),
        }
    }

    fn node(drug: &str, pubmed: &[Option<&str>], trials: &[Option<&str>]) -> DrugNode {
        let mut journals: Vec<JournalLink> = pubmed
            .iter()
            .chain(trials)
            .flatten()
            .map(|j| JournalLink {
                journal: j.to_string(),
                date: "2020-01-01".into(),
            })
            .collect();
        journals.sort();
        journals.dedup();
        DrugNode {
            atccode: (!drug.is_empty()).then(|| "X01".into()),
            drug: drug.into(),
            pubmed: pubmed
                .iter()
                .map(|j| mention(Some("1"), "Étude \"ß\" \\ 😀", *j))
                .collect(),
            clinical_trials: trials.iter().map(|j| mention(None, "t", *j)).collect(),
            journals,
        }
    }

    /// Dirty and unicode data: journals missing, names differing in case or accents only,
    /// escapes in titles, a drug named twice (two ATC codes).
    fn graph() -> Graph {
        Graph {
            drugs: vec![
                node("A", &[Some("Jé"), Some("J\"2\"")], &[]),
                node("B", &[Some("Jé"), None], &[]),
                node("B", &[Some("K")], &[Some("Jé")]),
                node("C", &[Some("J\"2\"")], &[Some("J\"2\"")]),
                node("D", &[Some("J3")], &[]),
                node("E", &[], &[Some("Jé")]),
                node("É", &[Some("Jé")], &[]),
                node("a", &[Some("K")], &[]),
                node("Ω", &[None], &[None]),
            ],
        }
    }

    /// The graph as the task writes it (one node a line) and pretty-printed.
    fn layouts(g: &Graph) -> Vec<Vec<u8>> {
        let mut lines = b"{\"drugs\": [\n".to_vec();
        for (i, n) in g.drugs.iter().enumerate() {
            if i > 0 {
                lines.extend_from_slice(b",\n");
            }
            lines.extend(serde_json::to_vec(n).unwrap());
        }
        lines.extend_from_slice(b"\n]}\n");
        let pretty = serde_json::to_vec_pretty(g).unwrap();
        let compact = serde_json::to_vec(g).unwrap();
        let extra = br#"{"version": 1, "drugs": [], "more": {"drugs": 2}}"#.to_vec();
        vec![lines, pretty, compact, extra]
    }

    #[test]
    fn streamed_analyses_match_the_whole_graph_ones_in_every_layout() {
        let g = graph();
        for bytes in layouts(&g).into_iter().take(3) {
            assert_eq!(
                top_journals(&bytes[..]).unwrap(),
                analysis::top_journals(&g)
            );
            for drug in ["a", " B ", "c", "D", "e", "É", "é", "ω", "Ω", "Z"] {
                let streamed = related_drugs(|| Ok(&bytes[..]), drug).map_err(|e| e.to_string());
                assert_eq!(streamed, analysis::related_drugs(&g, drug), "{drug}");
            }
        }
        let extra = &layouts(&g)[3];
        assert_eq!(top_journals(&extra[..]).unwrap().max_distinct_drugs, 0);
    }

    #[test]
    fn broken_graphs_are_refused() {
        let bytes = &layouts(&graph())[0];
        for broken in [
            &bytes[..bytes.len() - 4],
            b"{\"drugs\": [\n{\"atccode\":null,\"drug\":\"A\"}\n]}\n",
            b"{\"drugs\": {}}",
            b"{\"nodes\": []}",
            b"[]",
            b"",
        ] {
            let err = top_journals(broken).unwrap_err();
            assert!(matches!(err, StreamError::Format(_)), "{err}");
        }
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(b"x");
        assert!(top_journals(&trailing[..]).is_err());
    }
}
