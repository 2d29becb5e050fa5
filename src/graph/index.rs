//! The journal index `drug_graph` writes beside the graph (`graph.journals.jsonl` for
//! `graph.json`), so that `graph related-drugs` answers in milliseconds instead of streaming
//! the whole graph twice.
//!
//! JSON lines: one per drug node, in graph order, with the distinct journals of its PubMed
//! and of its clinical-trial mentions as ids into a journal table —
//! `{"drug":"A","pubmed":[0,3],"clinical_trials":[]}` — then one last line holding that
//! table (every journal of the graph, sorted by name: an id is a position in it), the node
//! count and the size of the graph file the index was made with:
//! `{"journals":["J0",..],"drugs":N,"graph_bytes":N}`. The table comes last because the
//! index is written as the graph is; so a truncated index is refused, and the recorded size
//! tells a stale index (made with another graph) from a current one. A spilled build writes
//! the same bytes as an in-memory one.
//!
//! [`super::BuiltGraph`] encodes the node lines ([`push_node`]) with the nodes, on the same
//! threads, and hands them to an [`IndexSink`] — [`IndexWriter`] writes them out;
//! [`related_drugs`] reads the file back.

use std::collections::BTreeSet;
use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

/// Why an index cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The file is not a complete index.
    #[error("not a journal index: {0}")]
    Format(String),
    /// The index was made with another graph.
    #[error("the index was made for {0}")]
    Stale(String),
    /// The asked drug has no node.
    #[error("drug '{0}' is not in the graph")]
    UnknownDrug(String),
}

/// The index's file name for a graph's: `graph.json` → `graph.journals.jsonl`.
pub fn index_name(graph: &str) -> String {
    let stem = graph.strip_suffix(".json").unwrap_or(graph);
    format!("{stem}.journals.jsonl")
}

/// Receives the index as the graph is written.
pub trait IndexSink {
    /// The journal table, sorted by name: the ids of the node lines that follow index it.
    fn journals(&mut self, names: &[String]);
    /// The next `count` node lines (made with [`push_node`]), in graph order.
    fn nodes(&mut self, lines: &[u8], count: usize) -> io::Result<()>;
}

/// Appends a node's line: its drug name and the ids of its PubMed and clinical-trial
/// journals (each sorted, distinct).
pub fn push_node(
    buf: &mut Vec<u8>,
    drug: &str,
    pubmed: impl Iterator<Item = u32>,
    trials: impl Iterator<Item = u32>,
) {
    buf.extend_from_slice(b"{\"drug\":");
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, drug);
    buf.extend_from_slice(b",\"pubmed\":[");
    push_ids(buf, pubmed);
    buf.extend_from_slice(b"],\"clinical_trials\":[");
    push_ids(buf, trials);
    buf.extend_from_slice(b"]}\n");
}

/// Appends ids separated by commas (without going through the formatter: this runs for
/// every journal of every drug).
fn push_ids(buf: &mut Vec<u8>, ids: impl Iterator<Item = u32>) {
    for (i, mut id) in ids.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        let mut digits = [0u8; 10];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (id % 10) as u8;
            id /= 10;
            if id == 0 {
                break;
            }
        }
        buf.extend_from_slice(&digits[at..]);
    }
}

/// Streams the index to `out`: node lines as they come, the journal table at the end.
pub struct IndexWriter<W: Write> {
    out: W,
    journals: Vec<String>,
    nodes: u64,
}

impl<W: Write> IndexWriter<W> {
    /// A writer with no node yet.
    pub fn new(out: W) -> Self {
        Self {
            out,
            journals: Vec::new(),
            nodes: 0,
        }
    }

    /// Writes the last line, for the graph `stamp` describes, and hands back the output.
    pub fn finish(mut self, stamp: GraphStamp) -> io::Result<W> {
        let end = EndLine {
            journals: std::mem::take(&mut self.journals),
            drugs: self.nodes,
            graph_bytes: stamp.bytes,
            graph_modified_ns: stamp.modified_ns,
        };
        serde_json::to_writer(&mut self.out, &end)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> IndexSink for IndexWriter<W> {
    fn journals(&mut self, names: &[String]) {
        self.journals = names.to_vec();
    }

    fn nodes(&mut self, lines: &[u8], count: usize) -> io::Result<()> {
        self.out.write_all(lines)?;
        self.nodes += count as u64;
        Ok(())
    }
}

/// A node line as read back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeLine {
    drug: String,
    pubmed: Vec<u32>,
    clinical_trials: Vec<u32>,
}

/// The last line.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndLine {
    journals: Vec<String>,
    drugs: u64,
    graph_bytes: u64,
    /// The graph file's modification time when written (nanoseconds since the epoch): a
    /// local graph replaced by another of the same size (a restore, a copy) differs in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    graph_modified_ns: Option<u64>,
}

/// What tells one graph file from another without reading it: its size and, for a local
/// file, its modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraphStamp {
    /// Size in bytes.
    pub bytes: u64,
    /// Modification time in nanoseconds since the epoch, where it identifies the file (a
    /// local one: an object store's time is the upload's, not the write's).
    pub modified_ns: Option<u64>,
}

impl GraphStamp {
    /// A stamp of the size alone.
    pub fn size(bytes: u64) -> Self {
        Self {
            bytes,
            modified_ns: None,
        }
    }

    /// The stamp of a local file's metadata.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Self::local(meta.len(), meta.modified().ok())
    }

    /// The stamp of a local file of `bytes` bytes modified at `modified`.
    pub fn local(bytes: u64, modified: Option<std::time::SystemTime>) -> Self {
        let modified_ns = modified
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| u64::try_from(d.as_nanos()).ok());
        Self { bytes, modified_ns }
    }
}

/// Calls `f` on every node line (every line but the last), then checks and returns the
/// last line.
fn read_index(
    mut reader: impl BufRead,
    mut f: impl FnMut(NodeLine) -> Result<(), IndexError>,
) -> Result<EndLine, IndexError> {
    let format = |e: serde_json::Error| IndexError::Format(e.to_string());
    let (mut line, mut next) = (Vec::new(), Vec::new());
    if reader.read_until(b'\n', &mut line)? == 0 {
        return Err(IndexError::Format("the file is empty".into()));
    }
    let mut nodes = 0u64;
    loop {
        next.clear();
        if reader.read_until(b'\n', &mut next)? == 0 {
            break;
        }
        f(serde_json::from_slice(&line).map_err(format)?)?;
        nodes += 1;
        std::mem::swap(&mut line, &mut next);
    }
    let end: EndLine = serde_json::from_slice(&line).map_err(format)?;
    if end.drugs != nodes {
        return Err(IndexError::Format(format!(
            "{nodes} node line(s) where the table says {}",
            end.drugs
        )));
    }
    Ok(end)
}

/// [`super::analysis::related_drugs`] from the index (`open` gives a fresh reader each time),
/// provided it was made with the graph `graph` describes: two passes over the index, the
/// first finding the drug and checking the index whole, the second testing every node.
pub fn related_drugs<R: BufRead>(
    mut open: impl FnMut() -> io::Result<R>,
    drug: &str,
    graph: GraphStamp,
) -> Result<Vec<String>, IndexError> {
    let wanted = drug.trim();
    let mut found = None;
    let end = read_index(open()?, |node| {
        if found.is_none() && node.drug.eq_ignore_ascii_case(wanted) {
            found = Some((node.drug, node.pubmed));
        }
        Ok(())
    })?;
    if end.graph_bytes != graph.bytes {
        return Err(IndexError::Stale(format!(
            "a graph of {} bytes, the graph has {}",
            end.graph_bytes, graph.bytes
        )));
    }
    if let (Some(recorded), Some(actual)) = (end.graph_modified_ns, graph.modified_ns)
        && recorded != actual
    {
        return Err(IndexError::Stale(
            "a graph modified at another time (of the same size)".into(),
        ));
    }
    let Some((name, pubmed)) = found else {
        return Err(IndexError::UnknownDrug(wanted.to_string()));
    };
    let mut journals = vec![false; end.journals.len()];
    let outside = || IndexError::Format("a journal id outside the table".into());
    for j in pubmed {
        *journals.get_mut(j as usize).ok_or_else(outside)? = true;
    }
    let shares = |ids: &[u32]| -> Result<bool, IndexError> {
        let mut any = false;
        for &j in ids {
            any |= *journals.get(j as usize).ok_or_else(outside)?;
        }
        Ok(any)
    };
    let mut related = BTreeSet::new();
    read_index(open()?, |node| {
        if node.drug != name && shares(&node.pubmed)? && !shares(&node.clinical_trials)? {
            related.insert(node.drug);
        }
        Ok(())
    })?;
    Ok(related.into_iter().collect())
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::graph::{GraphBuilder, RawDrug, Source, SpillPlan, analysis};

    /// Dirty and unicode drugs: names differing in case or accents only, a name twice (two
    /// ATC codes), one without a code.
    fn drugs() -> Vec<RawDrug> {
        let mut names: Vec<(&str, Option<&str>)> = vec![
            ("A", Some("X01")),
            ("a", Some("X02")),
            ("B", Some("X03")),
            ("B", Some("X04")),
            ("É", Some("X05")),
            ("é", Some("X06")),
            ("Ω", None),
            ("ZINC \"Z\"", Some("X07")),
        ];
        let more: Vec<String> = (0..24).map(|i| format!("DRUG{i}")).collect();
        names.extend(more.iter().map(|n| (n.as_str(), Some("X99"))));
        names
            .into_iter()
            .enumerate()
            .map(|(i, (n, c))| RawDrug {
                row: i + 1,
                atccode: c.map(str::to_string),
                drug: Some(n.to_string()),
            })
            .collect()
    }

    const NAMES: [&str; 8] = ["A", "B", "É", "Ω", "ZINC \"Z\"", "DRUG3", "DRUG7", "DRUG11"];

    /// Kind, id, title, date, journal: each drug keeps to a few journals (so that relations
    /// are neither all nor none), with journals missing, escaped or accented, and split
    /// records.
    type Row = crate::graph::build::TestRow;

    fn rows() -> Vec<Row> {
        let journals = ["Jé", "J\"2\"", "K \\ k", "Ω journal", "😀"];
        (0..12_000usize)
            .map(|i| {
                let d = i % 31;
                let name = match d {
                    0..8 => NAMES[d].to_string(),
                    _ => format!("drug{}", d - 8),
                };
                let kind = if i % 4 == 0 {
                    Source::ClinicalTrial
                } else {
                    Source::Pubmed
                };
                // The last drug keeps to two journals of many: its ids are sorted, not
                // scanned for.
                let journal = match (i % 9, kind) {
                    (0, _) => None,
                    _ if d == 30 => Some(format!("Solo {}", i % 2)),
                    (_, Source::Pubmed) => Some(format!("{} {}", journals[d % 5], d % 3 + i % 2)),
                    (_, Source::ClinicalTrial) => {
                        Some(format!("{} {}", journals[(d * 7) % 5], (d + 1) % 4))
                    }
                };
                let id = (i % 13 != 0).then(|| (i % 5_000).to_string());
                let title = format!("Étude of {name} \"x\" {}", i % 5_000);
                (
                    kind,
                    id,
                    title,
                    format!("2020-01-{:02}", i % 28 + 1),
                    journal,
                )
            })
            .collect()
    }

    /// The graph and its index, built in memory or within `plan` (a spilled graph is written
    /// once: each thread count gets its own build).
    fn build(plan: Option<SpillPlan>) -> (Vec<u8>, Vec<u8>) {
        let written: Vec<(Vec<u8>, Vec<u8>)> = [1, 2]
            .into_iter()
            .map(|threads| {
                let mut b = GraphBuilder::new(drugs()).unwrap();
                let spilling = plan.is_some();
                if let Some(plan) = plan.clone() {
                    b = b.with_budget(plan);
                }
                b.add_rows(&rows());
                assert_eq!(b.spilled(), spilling);
                let mut built = b.finish();
                let (mut graph, mut index) = (Vec::new(), IndexWriter::new(Vec::new()));
                built
                    .write_json_indexed(&mut graph, threads, Some(&mut index))
                    .unwrap();
                let index = index.finish(GraphStamp::size(graph.len() as u64)).unwrap();
                (graph, index)
            })
            .collect();
        assert!(written[0] == written[1], "parallel writing differs");
        written[0].clone()
    }

    /// Each node's journals, by kind, as the graph has them and as the index names them.
    fn journals_by_kind(graph: &crate::graph::Graph, index: &[u8]) {
        let lines: Vec<serde_json::Value> = index
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let (end, nodes) = lines.split_last().unwrap();
        let table: Vec<&str> = end["journals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j.as_str().unwrap())
            .collect();
        assert!(table.windows(2).all(|w| w[0] < w[1]), "{table:?}");
        assert_eq!(nodes.len(), graph.drugs.len());
        for (node, line) in graph.drugs.iter().zip(nodes) {
            assert_eq!(line["drug"], node.drug.as_str());
            for (mentions, key) in [
                (&node.pubmed, "pubmed"),
                (&node.clinical_trials, "clinical_trials"),
            ] {
                let expected: BTreeSet<&str> = mentions
                    .iter()
                    .filter_map(|m| m.journal.as_deref())
                    .collect();
                let ids: Vec<u64> = line[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_u64().unwrap())
                    .collect();
                assert!(ids.windows(2).all(|w| w[0] < w[1]), "{line}");
                let named: BTreeSet<&str> = ids.iter().map(|&i| table[i as usize]).collect();
                assert_eq!(named, expected, "{line}");
            }
        }
    }

    fn asked() -> Vec<String> {
        let mut asked: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
        asked.extend((0..24).map(|i| format!("drug{i}")));
        asked.extend(["a", " b ", "é", "ω", "zinc \"z\"", "nothing", ""].map(String::from));
        asked
    }

    #[test]
    fn the_index_answers_as_the_whole_graph_analysis_in_memory_and_spilled() {
        let (graph, index) = build(None);
        let g: crate::graph::Graph = serde_json::from_slice(&graph).unwrap();
        journals_by_kind(&g, &index);
        let mut sizes = BTreeSet::new();
        for drug in asked() {
            let expected = analysis::related_drugs(&g, &drug);
            let indexed = related_drugs(
                || Ok(&index[..]),
                &drug,
                GraphStamp::size(graph.len() as u64),
            )
            .map_err(|e| e.to_string());
            assert_eq!(indexed, expected, "{drug:?}");
            sizes.insert(expected.map_or(usize::MAX, |r| r.len()));
        }
        assert!(
            sizes.len() > 3,
            "the data must relate drugs variously: {sizes:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        for budget in [64 << 10, 256 << 10] {
            let plan = SpillPlan {
                dir: dir.path().to_path_buf(),
                budget,
                input_bytes: 2 << 20,
                input_rows: 0,
            };
            let (spilled_graph, spilled_index) = build(Some(plan));
            assert!(spilled_graph == graph, "graph differs at budget {budget}");
            assert!(spilled_index == index, "index differs at budget {budget}");
        }
    }

    fn small_index() -> (Vec<u8>, u64) {
        small_index_stamped(GraphStamp::size(42))
    }

    fn small_index_stamped(stamp: GraphStamp) -> (Vec<u8>, u64) {
        let mut w = IndexWriter::new(Vec::new());
        w.journals(&["J0".to_string(), "J1".to_string()]);
        let mut lines = Vec::new();
        push_node(&mut lines, "A", [0, 1].into_iter(), [].into_iter());
        push_node(&mut lines, "B", [1].into_iter(), [].into_iter());
        w.nodes(&lines, 2).unwrap();
        lines.clear();
        push_node(&mut lines, "C", [0].into_iter(), [0].into_iter());
        w.nodes(&lines, 1).unwrap();
        (w.finish(stamp).unwrap(), stamp.bytes)
    }

    #[test]
    fn the_index_is_node_lines_then_the_journal_table() {
        let (index, _) = small_index();
        assert_eq!(
            String::from_utf8(index).unwrap(),
            concat!(
                "{\"drug\":\"A\",\"pubmed\":[0,1],\"clinical_trials\":[]}\n",
                "{\"drug\":\"B\",\"pubmed\":[1],\"clinical_trials\":[]}\n",
                "{\"drug\":\"C\",\"pubmed\":[0],\"clinical_trials\":[0]}\n",
                "{\"journals\":[\"J0\",\"J1\"],\"drugs\":3,\"graph_bytes\":42}\n",
            )
        );
        let mut buf = Vec::new();
        push_ids(&mut buf, [0, 9, 10, 4_294_967_295].into_iter());
        assert_eq!(buf, b"0,9,10,4294967295");
    }

    #[test]
    fn a_stale_truncated_or_damaged_index_is_refused() {
        let (index, bytes) = small_index();
        assert_eq!(
            related_drugs(|| Ok(&index[..]), "a", GraphStamp::size(bytes)).unwrap(),
            vec!["B"]
        );
        let err = related_drugs(|| Ok(&index[..]), "a", GraphStamp::size(bytes + 1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the index was made for a graph of 42 bytes, the graph has 43"
        );
        // A graph of the same size written at another time is another graph.
        let (stamped, _) = small_index_stamped(GraphStamp {
            bytes: 42,
            modified_ns: Some(7),
        });
        let at = |ns| GraphStamp {
            bytes: 42,
            modified_ns: Some(ns),
        };
        assert_eq!(
            related_drugs(|| Ok(&stamped[..]), "a", at(7)).unwrap(),
            vec!["B"]
        );
        let err = related_drugs(|| Ok(&stamped[..]), "a", at(8)).unwrap_err();
        assert!(matches!(err, IndexError::Stale(_)), "{err}");
        // Where the time does not identify the file (an object store), the size decides.
        assert!(related_drugs(|| Ok(&stamped[..]), "a", GraphStamp::size(42)).is_ok());
        // An unknown drug is told only once the index is known good.
        let err = related_drugs(|| Ok(&index[..]), "Z", GraphStamp::size(bytes + 1)).unwrap_err();
        assert!(matches!(err, IndexError::Stale(_)), "{err}");
        let err = related_drugs(|| Ok(&index[..]), "Z", GraphStamp::size(bytes)).unwrap_err();
        assert_eq!(err.to_string(), "drug 'Z' is not in the graph");
        let text = String::from_utf8(index).unwrap();
        let last = text.trim_end().rfind('\n').unwrap() + 1;
        let damaged = [
            text[..last].to_string(),
            text[..text.len() - 3].to_string(),
            format!("{text}{{}}\n"),
            text.replacen(
                "{\"drug\":\"B\",\"pubmed\":[1],\"clinical_trials\":[]}\n",
                "",
                1,
            ),
            text.replacen(
                "[0],\"clinical_trials\":[0]",
                "[7],\"clinical_trials\":[0]",
                1,
            ),
            String::new(),
        ];
        for broken in damaged {
            let err =
                related_drugs(|| Ok(broken.as_bytes()), "a", GraphStamp::size(bytes)).unwrap_err();
            assert!(matches!(err, IndexError::Format(_)), "{broken:?}: {err}");
        }
    }

    #[test]
    fn the_index_is_named_from_the_graph() {
        assert_eq!(index_name("graph.json"), "graph.journals.jsonl");
        assert_eq!(index_name("out/g"), "out/g.journals.jsonl");
    }
}
