//! Builds the graph from raw rows: cleans each row, matches its title against every drug,
//! merges split records (two rows of one source kind with the same title and date whose
//! non-empty fields do not conflict are one publication), and assembles sorted nodes.
//! Rows that cannot take part are reported with their reason, never silently dropped.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use chrono::NaiveDate;

use super::clean::{clean_text, parse_date};
use super::matcher::DrugMatcher;

/// Which kind of publication a row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A PubMed article.
    Pubmed,
    /// A clinical trial.
    ClinicalTrial,
}

/// A row of the drugs source.
#[derive(Clone, Debug, Default)]
pub struct RawDrug {
    /// 1-based row in its source.
    pub row: usize,
    /// ATC code.
    pub atccode: Option<String>,
    /// Name.
    pub drug: Option<String>,
}

/// A row of a publication source (borrowing from the batch it was read from).
#[derive(Clone, Debug)]
pub struct RawPublication<'a> {
    /// Source table, for reports.
    pub source: &'a str,
    /// 1-based row in its source.
    pub row: usize,
    /// PubMed or clinical trial.
    pub kind: Source,
    /// Id as text.
    pub id: Option<Cow<'a, str>>,
    /// Title.
    pub title: Option<Cow<'a, str>>,
    /// Date in one of the accepted formats.
    pub date: Option<Cow<'a, str>>,
    /// Journal.
    pub journal: Option<Cow<'a, str>>,
}

/// A row after cleaning and matching, ready for [`GraphBuilder::accept`]. Preparing needs
/// only `&GraphBuilder`, so rows can be prepared on several threads.
pub enum Prepared {
    /// It mentions these drugs.
    Matched {
        kind: Source,
        title: String,
        date: NaiveDate,
        id: Option<String>,
        journal: Option<String>,
        drugs: Vec<u32>,
    },
    /// A valid row mentioning no drug.
    Unmatched,
    /// It cannot take part.
    Rejected(Rejected),
}

/// A row left out, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    /// Source table.
    pub source: String,
    /// 1-based row.
    pub row: usize,
    /// Why it cannot take part.
    pub reason: String,
}

/// What happened to the input.
#[derive(Debug, Default)]
pub struct Report {
    /// Drugs in the graph.
    pub drugs: usize,
    /// Publication rows read.
    pub rows: usize,
    /// Rows merged into another row of the same publication.
    pub merged: usize,
    /// Publications mentioning at least one drug.
    pub mentioning: usize,
    /// (drug, publication) mentions.
    pub mentions: usize,
    /// Rows left out.
    pub rejected: Vec<Rejected>,
}

/// A span of the text arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    len: u32,
}

/// A publication mentioning at least one drug, kept compactly: text lives in one arena and
/// journals are interned, so millions of publications fit in a few hundred megabytes.
struct Record {
    kind: Source,
    date: NaiveDate,
    id: Option<Span>,
    title: Span,
    journal: Option<u32>,
}

const NONE: u32 = u32::MAX;

/// Accumulates rows, then produces the graph.
pub struct GraphBuilder {
    drugs: Vec<(Option<String>, String)>,
    preparer: Preparer,
    text: String,
    journals: Vec<String>,
    journal_ids: HashMap<String, u32>,
    records: Vec<Record>,
    /// (drug, record) pairs.
    mentions: Vec<(u32, u32)>,
    /// First record of each (kind, title, date) hash, and the next record with the same hash.
    heads: HashMap<u64, u32>,
    next: Vec<u32>,
    report: Report,
    scratch: Vec<u32>,
}

impl GraphBuilder {
    /// Cleans the drugs and builds the matcher.
    pub fn new(raw: impl IntoIterator<Item = RawDrug>) -> Result<Self, String> {
        let mut report = Report::default();
        let mut drugs: Vec<(Option<String>, String)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for d in raw {
            let Some(name) = d.drug.as_deref().and_then(clean_text).map(Cow::into_owned) else {
                report.rejected.push(Rejected {
                    source: "drugs".into(),
                    row: d.row,
                    reason: "no drug name".into(),
                });
                continue;
            };
            let code = d
                .atccode
                .as_deref()
                .and_then(clean_text)
                .map(Cow::into_owned);
            if !seen.insert((code.clone(), name.to_uppercase())) {
                report.rejected.push(Rejected {
                    source: "drugs".into(),
                    row: d.row,
                    reason: format!("duplicate of drug '{name}'"),
                });
                continue;
            }
            drugs.push((code, name));
        }
        let names: Vec<String> = drugs.iter().map(|(_, n)| n.clone()).collect();
        let preparer = Preparer {
            matcher: std::sync::Arc::new(DrugMatcher::new(&names)?),
        };
        report.drugs = drugs.len();
        Ok(Self {
            drugs,
            preparer,
            text: String::new(),
            journals: Vec::new(),
            journal_ids: HashMap::new(),
            records: Vec::new(),
            mentions: Vec::new(),
            heads: HashMap::new(),
            next: Vec::new(),
            report,
            scratch: Vec::new(),
        })
    }

    /// Adds one publication row.
    pub fn add(&mut self, raw: &RawPublication<'_>) {
        let prepared = self.prepare(raw);
        self.accept(prepared);
    }

    /// Cleans and matches a row (no change to the builder).
    pub fn prepare(&self, raw: &RawPublication<'_>) -> Prepared {
        self.preparer.prepare(raw)
    }

    /// A handle that prepares rows on other threads while this builder accepts them.
    pub fn preparer(&self) -> Preparer {
        self.preparer.clone()
    }

    /// Adds a prepared row; rows must come in source order for a deterministic merge.
    pub fn accept(&mut self, prepared: Prepared) {
        self.report.rows += 1;
        match prepared {
            Prepared::Unmatched => {}
            Prepared::Rejected(r) => self.report.rejected.push(r),
            Prepared::Matched {
                kind,
                title,
                date,
                id,
                journal,
                drugs,
            } => {
                let journal = journal.map(|j| self.intern(j));
                self.scratch = drugs;
                self.insert(kind, title, date, id, journal);
            }
        }
    }

    fn intern(&mut self, journal: String) -> u32 {
        if let Some(&i) = self.journal_ids.get(&journal) {
            return i;
        }
        let i = self.journals.len() as u32;
        self.journals.push(journal.clone());
        self.journal_ids.insert(journal, i);
        i
    }

    fn store(&mut self, s: &str) -> Span {
        let span = Span {
            start: self.text.len(),
            len: s.len() as u32,
        };
        self.text.push_str(s);
        span
    }

    fn get(&self, span: Span) -> &str {
        &self.text[span.start..span.start + span.len as usize]
    }

    fn insert(
        &mut self,
        kind: Source,
        title: String,
        date: NaiveDate,
        id: Option<String>,
        journal: Option<u32>,
    ) {
        let mut h = DefaultHasher::new();
        (kind, &title, date).hash(&mut h);
        let key = h.finish();
        let mut at = self.heads.get(&key).copied().unwrap_or(NONE);
        while at != NONE {
            let r = &self.records[at as usize];
            let same = r.kind == kind && r.date == date && self.get(r.title) == title;
            let id_ok = match (r.id, &id) {
                (Some(a), Some(b)) => self.get(a) == b,
                _ => true,
            };
            let journal_ok = matches!((r.journal, journal), (Some(a), Some(b)) if a == b)
                || r.journal.is_none()
                || journal.is_none();
            if same && id_ok && journal_ok {
                if r.id.is_none() && id.is_some() {
                    let span = id.as_deref().map(|i| self.store(i));
                    self.records[at as usize].id = span;
                }
                let r = &mut self.records[at as usize];
                r.journal = r.journal.or(journal);
                self.report.merged += 1;
                return;
            }
            at = self.next[at as usize];
        }
        let index = self.records.len() as u32;
        let record = Record {
            kind,
            date,
            id: id.as_deref().map(|i| self.store(i)),
            title: self.store(&title),
            journal,
        };
        self.records.push(record);
        self.next
            .push(self.heads.insert(key, index).unwrap_or(NONE));
        self.mentions
            .extend(self.scratch.iter().map(|&d| (d, index)));
    }

    /// Sorts the mentions and returns the finished graph.
    pub fn finish(mut self) -> BuiltGraph {
        self.report.mentioning = self.records.len();
        self.report.mentions = self.mentions.len();
        let mut order: Vec<u32> = (0..self.drugs.len() as u32).collect();
        order.sort_by(|&a, &b| {
            let (ca, na) = &self.drugs[a as usize];
            let (cb, nb) = &self.drugs[b as usize];
            (na, ca).cmp(&(nb, cb))
        });
        let mut rank = vec![0u32; order.len()];
        for (pos, &d) in order.iter().enumerate() {
            rank[d as usize] = pos as u32;
        }
        // Rank records once by their graph order, then sort mentions on integer keys.
        // A packed prefix of the order (date, then the id's first bytes) settles most
        // comparisons without touching the text.
        let prefix: Vec<u64> = self.records.iter().map(|r| self.order_prefix(r)).collect();
        let mut by_order: Vec<u32> = (0..self.records.len() as u32).collect();
        by_order.sort_unstable_by(|&a, &b| {
            prefix[a as usize]
                .cmp(&prefix[b as usize])
                .then_with(|| self.compare(a, b))
        });
        let mut record_rank = vec![0u32; by_order.len()];
        for (pos, &r) in by_order.iter().enumerate() {
            record_rank[r as usize] = pos as u32;
        }
        let mut mentions = std::mem::take(&mut self.mentions);
        mentions.sort_unstable_by_key(|&(d, r)| {
            (u64::from(rank[d as usize]) << 32) | u64::from(record_rank[r as usize])
        });
        BuiltGraph {
            b: self,
            order,
            mentions,
        }
    }

    /// The date and the first three bytes of the id, packed so that comparing prefixes
    /// agrees with [`Self::compare`] whenever they differ (a missing id sorts first).
    fn order_prefix(&self, r: &Record) -> u64 {
        let days = u64::from(chrono::Datelike::num_days_from_ce(&r.date).max(0) as u32);
        let id = match r.id {
            None => 0,
            Some(span) => {
                let bytes = self.get(span).as_bytes();
                // 1 marks "has an id" so that an empty id still sorts after none.
                let mut packed = 1u64;
                for i in 0..3 {
                    packed = (packed << 8) | u64::from(bytes.get(i).copied().unwrap_or(0));
                }
                packed
            }
        };
        (days << 32) | id
    }

    /// Graph order of two records: date, then id (none first), title, journal.
    fn compare(&self, a: u32, b: u32) -> std::cmp::Ordering {
        let (ra, rb) = (&self.records[a as usize], &self.records[b as usize]);
        let journal = |r: &Record| r.journal.map(|j| self.journals[j as usize].as_str());
        // Field by field, so most comparisons stop at the date or the id.
        ra.date
            .cmp(&rb.date)
            .then_with(|| ra.id.map(|s| self.get(s)).cmp(&rb.id.map(|s| self.get(s))))
            .then_with(|| self.get(ra.title).cmp(self.get(rb.title)))
            .then_with(|| journal(ra).cmp(&journal(rb)))
    }
}

/// Cleans and matches rows: the read-only half of the builder, shareable across threads.
#[derive(Clone)]
pub struct Preparer {
    matcher: std::sync::Arc<DrugMatcher>,
}

impl Preparer {
    /// Cleans and matches a row (no change to the builder).
    pub fn prepare(&self, raw: &RawPublication<'_>) -> Prepared {
        let reject = |reason: String| {
            Prepared::Rejected(Rejected {
                source: raw.source.to_string(),
                row: raw.row,
                reason,
            })
        };
        let Some(title) = raw.title.as_deref().and_then(clean_text) else {
            return reject("no title".into());
        };
        let date = match raw.date.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            None => return reject("no date".into()),
            Some(text) => match parse_date(text) {
                Some(d) => d,
                None => return reject(format!("unreadable date '{text}'")),
            },
        };
        let mut drugs = Vec::new();
        self.matcher.mentions(&title, &mut drugs);
        if drugs.is_empty() {
            return Prepared::Unmatched;
        }
        Prepared::Matched {
            kind: raw.kind,
            title: title.into_owned(),
            date,
            id: raw.id.as_deref().and_then(clean_text).map(Cow::into_owned),
            journal: raw
                .journal
                .as_deref()
                .and_then(clean_text)
                .map(Cow::into_owned),
            drugs,
        }
    }
}

/// A finished graph, held compactly until written.
pub struct BuiltGraph {
    b: GraphBuilder,
    /// Drug indices in output order (by name, then ATC code).
    order: Vec<u32>,
    /// (drug, record) pairs in output order.
    mentions: Vec<(u32, u32)>,
}

#[derive(serde::Serialize)]
struct NodeOut<'a> {
    atccode: Option<&'a str>,
    drug: &'a str,
    pubmed: Vec<MentionOut<'a>>,
    clinical_trials: Vec<MentionOut<'a>>,
    journals: Vec<JournalOut<'a>>,
}

#[derive(serde::Serialize)]
struct MentionOut<'a> {
    id: Option<&'a str>,
    title: &'a str,
    #[serde(serialize_with = "iso")]
    date: NaiveDate,
    journal: Option<&'a str>,
}

#[derive(serde::Serialize, PartialEq, Eq, PartialOrd, Ord)]
struct JournalOut<'a> {
    journal: &'a str,
    #[serde(serialize_with = "iso")]
    date: NaiveDate,
}

/// `YYYY-MM-DD` without going through chrono's formatter (hot when writing the graph).
fn iso<S: serde::Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
    use chrono::Datelike;
    let (y, m, day) = (d.year(), d.month(), d.day());
    if !(0..=9999).contains(&y) {
        return s.collect_str(d);
    }
    let y = y as u32;
    let digits = [
        y / 1000,
        y / 100 % 10,
        y / 10 % 10,
        y % 10,
        m / 10,
        m % 10,
        day / 10,
        day % 10,
    ];
    let mut buf = [b'-'; 10];
    for (slot, digit) in [0, 1, 2, 3, 5, 6, 8, 9].into_iter().zip(digits) {
        buf[slot] = b'0' + digit as u8;
    }
    s.serialize_str(std::str::from_utf8(&buf).unwrap_or_default())
}

impl BuiltGraph {
    /// What happened to the input.
    pub fn report(&self) -> &Report {
        &self.b.report
    }

    /// Writes `graph.json`: one drug per line, deterministic.
    pub fn write_json(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        out.write_all(b"{\"drugs\": [\n")?;
        let mut rest = self.mentions.as_slice();
        for (n, &d) in self.order.iter().enumerate() {
            let split = rest.iter().position(|m| m.0 != d).unwrap_or(rest.len());
            let (mine, tail) = rest.split_at(split);
            rest = tail;
            if n > 0 {
                out.write_all(b",\n")?;
            }
            serde_json::to_writer(&mut *out, &self.node(d, mine)).map_err(std::io::Error::other)?;
        }
        out.write_all(b"\n]}\n")
    }

    fn node(&self, d: u32, mentions: &[(u32, u32)]) -> NodeOut<'_> {
        let b = &self.b;
        let (code, name) = &b.drugs[d as usize];
        let mut node = NodeOut {
            atccode: code.as_deref(),
            drug: name,
            pubmed: Vec::new(),
            clinical_trials: Vec::new(),
            journals: Vec::new(),
        };
        for &(_, r) in mentions {
            let r = &b.records[r as usize];
            let journal = r.journal.map(|j| b.journals[j as usize].as_str());
            let m = MentionOut {
                id: r.id.map(|s| b.get(s)),
                title: b.get(r.title),
                date: r.date,
                journal,
            };
            match r.kind {
                Source::Pubmed => node.pubmed.push(m),
                Source::ClinicalTrial => node.clinical_trials.push(m),
            }
            if let Some(journal) = journal {
                node.journals.push(JournalOut {
                    journal,
                    date: r.date,
                });
            }
        }
        node.journals.sort();
        node.journals.dedup();
        node
    }

    /// The journal(s) mentioning the most distinct drugs.
    pub fn top_journals(&self) -> super::TopJournals {
        let b = &self.b;
        let mut counts = vec![0usize; b.journals.len()];
        let mut last = vec![NONE; b.journals.len()];
        for &(d, r) in &self.mentions {
            if let Some(j) = b.records[r as usize].journal
                && last[j as usize] != d
            {
                last[j as usize] = d;
                counts[j as usize] += 1;
            }
        }
        let max = counts.iter().copied().max().unwrap_or(0);
        let mut journals: Vec<String> = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| max > 0 && **c == max)
            .map(|(j, _)| b.journals[j].clone())
            .collect();
        journals.sort();
        super::TopJournals {
            max_distinct_drugs: max,
            journals,
        }
    }

    /// The graph as owned values (for tests and small graphs).
    pub fn to_graph(&self) -> Result<super::Graph, String> {
        let mut buf = Vec::new();
        self.write_json(&mut buf).map_err(|e| e.to_string())?;
        serde_json::from_slice(&buf).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drugs(names: &[&str]) -> Vec<RawDrug> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| RawDrug {
                row: i + 1,
                atccode: Some(format!("C{i}")),
                drug: Some(n.to_string()),
            })
            .collect()
    }

    fn row<'a>(
        kind: Source,
        id: &'a str,
        title: &'a str,
        date: &'a str,
        journal: &'a str,
    ) -> RawPublication<'a> {
        let opt = |s: &'a str| (!s.is_empty()).then_some(Cow::Borrowed(s));
        RawPublication {
            source: "t",
            row: 1,
            kind,
            id: opt(id),
            title: opt(title),
            date: opt(date),
            journal: opt(journal),
        }
    }

    #[test]
    fn split_records_with_compatible_fields_merge_into_one_publication() {
        let mut b = GraphBuilder::new(drugs(&["GLUCAGON"])).unwrap();
        b.add(&row(
            Source::ClinicalTrial,
            "NCT1",
            "Glucagon infusion",
            "25/05/2020",
            "",
        ));
        b.add(&row(
            Source::ClinicalTrial,
            "",
            "Glucagon  infusion ",
            "25/05/2020",
            "J of X",
        ));
        let built = b.finish();
        let (g, report) = (built.to_graph().unwrap(), built.report());
        assert_eq!(report.merged, 1);
        let trials = &g.drugs[0].clinical_trials;
        assert_eq!(trials.len(), 1);
        assert_eq!(trials[0].id.as_deref(), Some("NCT1"));
        assert_eq!(trials[0].journal.as_deref(), Some("J of X"));
        assert_eq!(trials[0].date, "2020-05-25");
    }

    #[test]
    fn conflicting_or_differently_dated_rows_stay_apart() {
        let mut b = GraphBuilder::new(drugs(&["GLUCAGON"])).unwrap();
        b.add(&row(
            Source::ClinicalTrial,
            "NCT1",
            "Glucagon",
            "2020-01-01",
            "A",
        ));
        b.add(&row(
            Source::ClinicalTrial,
            "NCT2",
            "Glucagon",
            "2020-01-01",
            "A",
        ));
        b.add(&row(
            Source::ClinicalTrial,
            "NCT1",
            "Glucagon",
            "2020-01-02",
            "A",
        ));
        b.add(&row(Source::Pubmed, "NCT1", "Glucagon", "2020-01-01", "A"));
        let built = b.finish();
        let (g, report) = (built.to_graph().unwrap(), built.report());
        assert_eq!(report.merged, 0);
        assert_eq!(g.drugs[0].clinical_trials.len(), 3);
        assert_eq!(g.drugs[0].pubmed.len(), 1);
        // Journals hold distinct (journal, date) pairs.
        assert_eq!(g.drugs[0].journals.len(), 2);
    }

    #[test]
    fn rows_without_title_or_readable_date_are_reported() {
        let mut b = GraphBuilder::new(drugs(&["X"])).unwrap();
        b.add(&row(Source::Pubmed, "1", "  ", "2020-01-01", "J"));
        b.add(&row(Source::Pubmed, "2", "X", "someday", "J"));
        b.add(&row(Source::Pubmed, "3", "X", "", "J"));
        let built = b.finish();
        let report = built.report();
        let reasons: Vec<&str> = report.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(
            reasons,
            vec!["no title", "unreadable date 'someday'", "no date"]
        );
    }

    #[test]
    fn drugs_are_cleaned_deduplicated_and_sorted() {
        let raw = vec![
            RawDrug {
                row: 1,
                atccode: Some("B".into()),
                drug: Some(" ZINC ".into()),
            },
            RawDrug {
                row: 2,
                atccode: Some("A".into()),
                drug: Some("ASPIRIN".into()),
            },
            RawDrug {
                row: 3,
                atccode: Some("B".into()),
                drug: Some("zinc".into()),
            },
            RawDrug {
                row: 4,
                atccode: None,
                drug: None,
            },
        ];
        let b = GraphBuilder::new(raw).unwrap();
        let built = b.finish();
        let (g, report) = (built.to_graph().unwrap(), built.report());
        let names: Vec<&str> = g.drugs.iter().map(|d| d.drug.as_str()).collect();
        assert_eq!(names, vec!["ASPIRIN", "ZINC"]);
        assert_eq!(report.rejected.len(), 2);
        assert_eq!(report.rejected[0].reason, "duplicate of drug 'zinc'");
        assert_eq!(report.rejected[1].reason, "no drug name");
    }

    #[test]
    fn mentions_are_sorted_by_date_then_id() {
        let mut b = GraphBuilder::new(drugs(&["X"])).unwrap();
        b.add(&row(Source::Pubmed, "2", "X b", "2020-01-02", "J"));
        b.add(&row(Source::Pubmed, "9", "X a", "2020-01-01", "J"));
        b.add(&row(Source::Pubmed, "1", "X c", "2020-01-02", "J"));
        let g = b.finish().to_graph().unwrap();
        let ids: Vec<&str> = g.drugs[0]
            .pubmed
            .iter()
            .filter_map(|m| m.id.as_deref())
            .collect();
        assert_eq!(ids, vec!["9", "1", "2"]);
    }
}
