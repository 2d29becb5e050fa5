//! Builds the graph from raw rows: cleans each row, matches its title against every drug,
//! merges split records (two rows of one source kind with the same title and date whose
//! non-empty fields do not conflict are one publication), and writes sorted nodes.
//! Rows that cannot take part are reported with their reason, never silently dropped.
//!
//! Sized for millions of rows on a few cores: rows are cleaned, matched and JSON-encoded in
//! chunks on worker threads ([`Preparer`]); one thread merges the chunks, in source order,
//! into a compact store (one byte arena, interned journals, 32-byte records); writing sorts
//! each drug's mentions and encodes nodes — and, if asked, their journal index lines
//! ([`super::index`]) — on worker threads while the caller writes the pieces in order
//! ([`BuiltGraph::write_json`], [`BuiltGraph::write_json_indexed`]).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::io::Write;
use std::ops::Range;
use std::sync::{Arc, Mutex, mpsc};

use chrono::{Datelike, NaiveDate};
use foldhash::fast::FixedState;

use super::clean::{clean_text, parse_date};
use super::index::{IndexSink, push_node};
use super::matcher::DrugMatcher;

mod spill;

pub use spill::{SpillPlan, sweep_stale};

type FastMap<K, V> = HashMap<K, V, FixedState>;

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
    /// Rows left out in all (`rejected` holds only the first ones once a sink takes them).
    pub rejected_total: usize,
    /// Where rejected rows are written as they are found, if anywhere.
    sink: Option<RejectSink>,
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
    /// Rows left out: all of them, or the first ones when a sink takes them
    /// ([`GraphBuilder::with_rejects`]).
    pub rejected: Vec<Rejected>,
}

/// Rejected rows written as JSON lines as they are found, so that memory does not grow with
/// their number (a few per thousand rows of dirty input: millions at terabyte scale).
struct RejectSink {
    out: Box<dyn Write + Send + Sync>,
    /// How many rows the report keeps in memory besides (for the task's log).
    keep: usize,
    /// The first write that failed; later rows are counted, not written.
    error: Option<std::io::Error>,
}

impl std::fmt::Debug for RejectSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RejectSink")
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

impl RejectSink {
    fn write(&mut self, r: &Rejected) {
        if self.error.is_some() {
            return;
        }
        let written = serde_json::to_writer(&mut self.out, r)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"));
        if let Err(e) = written {
            self.error = Some(e);
        }
    }
}

impl Report {
    /// Records a row left out.
    fn reject(&mut self, r: Rejected) {
        self.rejected_total += 1;
        match &mut self.sink {
            None => self.rejected.push(r),
            Some(sink) => {
                sink.write(&r);
                if self.rejected.len() < sink.keep {
                    self.rejected.push(r);
                }
            }
        }
    }

    /// Records rows left out, in order.
    fn reject_all(&mut self, rows: Vec<Rejected>) {
        rows.into_iter().for_each(|r| self.reject(r));
    }
}

/// A byte range of a chunk's text.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    len: usize,
}

/// A cleaned row that mentions at least one drug. Title and id are stored JSON-encoded
/// (encoding is one-to-one, so equal text means equal encodings), the journal as text.
struct PreparedRow {
    kind: Source,
    key: u64,
    hash: u64,
    title: Span,
    id: Option<Span>,
    journal: Option<Span>,
    drugs: Range<u32>,
    /// Whether the publication counts here: a spilled row is read back once per range of
    /// drugs it mentions, and counts (as mentioning, as merged) in its first range only.
    primary: bool,
}

/// Rows cleaned and matched together, their text in one buffer: handing a chunk to the
/// builder costs a few allocations, not a few per row.
#[derive(Default)]
pub struct PreparedChunk {
    rows_read: usize,
    text: Vec<u8>,
    rows: Vec<PreparedRow>,
    drugs: Vec<u32>,
    rejected: Vec<Rejected>,
}

impl PreparedChunk {
    fn slice(&self, s: Span) -> &[u8] {
        &self.text[s.start..s.start + s.len]
    }

    fn push(&mut self, s: &str, json: bool) -> Span {
        let start = self.text.len();
        if json {
            push_json(&mut self.text, s);
        } else {
            self.text.extend_from_slice(s.as_bytes());
        }
        Span {
            start,
            len: self.text.len() - start,
        }
    }
}

/// Appends `s` as a JSON string.
fn push_json(buf: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, s);
}

/// Packs the date and the first bytes of the id so that comparing keys agrees with the
/// graph order (date, then id, a missing id first) whenever the keys differ.
fn order_key(date: NaiveDate, id: Option<&str>) -> u64 {
    // Biased so that every date chrono can represent maps to a u32 in order.
    let days = (i64::from(date.num_days_from_ce()) + (1 << 31)) as u64;
    let id = id.map_or(0, |id| {
        let bytes = id.as_bytes();
        // The leading 1 marks "has an id" so that an empty id still sorts after none.
        (0..3).fold(1u64, |packed, i| {
            (packed << 8) | u64::from(bytes.get(i).copied().unwrap_or(0))
        })
    });
    (days << 32) | id
}

/// The date half of an order key.
fn key_days(key: u64) -> u64 {
    key >> 32
}

fn days_date(days: u64) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt((days as i64 - (1 << 31)) as i32)
}

/// Which rows may be parts of one publication: same kind, title and date.
fn merge_hash(kind: Source, title: &[u8], key: u64) -> u64 {
    FixedState::default().hash_one((kind, title, key_days(key)))
}

/// Orders two JSON-encoded strings as the text they encode.
fn cmp_json(a: &[u8], b: &[u8]) -> Ordering {
    if a.contains(&b'\\') || b.contains(&b'\\') {
        let text = |j: &[u8]| serde_json::from_slice::<String>(j).ok();
        if let (Some(x), Some(y)) = (text(a), text(b)) {
            return x.cmp(&y);
        }
    }
    strip_quotes(a).cmp(strip_quotes(b))
}

fn strip_quotes(j: &[u8]) -> &[u8] {
    j.get(1..j.len().saturating_sub(1)).unwrap_or(j)
}

/// A publication mentioning at least one drug: its title's JSON, then its id's, at `start`
/// in the arena.
struct Record {
    key: u64,
    start: u64,
    title_len: u32,
    id_len: u32,
    journal: u32,
    kind: Source,
    /// Made from primary rows (see [`PreparedRow::primary`]).
    primary: bool,
}

const NONE: u32 = u32::MAX;

/// Longest title or id taken (bytes): once JSON-encoded (at most 6 bytes per byte) its length
/// must fit the store's 32-bit lengths.
const MAX_FIELD: usize = 512 << 20;

/// Longest drug name taken (bytes, cleaned): real names are tens of bytes, and every name
/// costs matcher memory many times its length.
pub const MAX_DRUG_NAME: usize = 4 << 10;

/// Longest title taken (bytes, cleaned): real titles are a few hundred bytes; anything near
/// this is a broken row (a file swallowed by a quote), not a title.
pub const MAX_TITLE: usize = 64 << 10;

/// Refuses a cleaned text whose source had a line break (cleaning would have hidden it as a
/// space), or that is longer than `max` bytes. Clean text is returned borrowed only when the
/// source had no control characters, so only a copied one needs its source searched.
#[allow(
    clippy::ptr_arg,
    reason = "whether the text was copied is what is asked"
)]
fn check_text(
    what: &str,
    raw: Option<&str>,
    cleaned: &Cow<'_, str>,
    max: usize,
) -> Result<(), String> {
    if matches!(cleaned, Cow::Owned(_)) && raw.is_some_and(|r| r.contains(['\n', '\r'])) {
        return Err(format!("{what} contains a line break"));
    }
    if cleaned.len() > max {
        return Err(format!(
            "{what} longer than {max} bytes ({})",
            cleaned.len()
        ));
    }
    Ok(())
}

/// Largest encoding buffer kept for reuse.
const SPARE_CAPACITY: usize = 64 << 20;

/// Accumulates rows, then produces the graph.
pub struct GraphBuilder {
    drugs: Vec<(Option<String>, String)>,
    preparer: Preparer,
    text: Vec<u8>,
    journals: Vec<String>,
    journal_ids: FastMap<Box<[u8]>, u32>,
    records: Vec<Record>,
    /// (drug, record) pairs.
    mentions: Vec<(u32, u32)>,
    /// Last record of each merge hash, and the record before it with the same hash.
    heads: FastMap<u64, u32>,
    next: Vec<u32>,
    report: Report,
    /// Bytes held by interned journal names.
    journal_bytes: usize,
    /// When to spill, and where; `None` keeps everything in memory.
    plan: Option<SpillPlan>,
    /// Set once the held rows passed the plan's budget: rows go to disk from then on.
    spill: Option<spill::Spill>,
}

impl GraphBuilder {
    /// Cleans the drugs and builds the matcher.
    pub fn new(raw: impl IntoIterator<Item = RawDrug>) -> Result<Self, String> {
        let mut report = Report::default();
        let mut drugs: Vec<(Option<String>, String)> = Vec::new();
        let mut seen = HashSet::new();
        for d in raw {
            let reject = |report: &mut Report, reason: String| {
                report.reject(Rejected {
                    source: "drugs".into(),
                    row: d.row,
                    reason,
                });
            };
            let Some(name) = d.drug.as_deref().and_then(clean_text) else {
                reject(&mut report, "no drug name".into());
                continue;
            };
            if let Err(why) = check_text("drug name", d.drug.as_deref(), &name, MAX_DRUG_NAME) {
                reject(&mut report, why);
                continue;
            }
            let name = name.into_owned();
            let code = d
                .atccode
                .as_deref()
                .and_then(clean_text)
                .map(Cow::into_owned);
            if !seen.insert((code.clone(), name.to_uppercase())) {
                reject(&mut report, format!("duplicate of drug '{name}'"));
                continue;
            }
            drugs.push((code, name));
        }
        let names: Vec<String> = drugs.iter().map(|(_, n)| n.clone()).collect();
        let preparer = Preparer {
            matcher: std::sync::Arc::new(DrugMatcher::new(&names)?),
        };
        report.drugs = drugs.len();
        Ok(Self::holding_nothing(drugs, preparer, report))
    }

    /// A builder over these drugs with no rows yet, never spilling.
    fn holding_nothing(
        drugs: Vec<(Option<String>, String)>,
        preparer: Preparer,
        report: Report,
    ) -> Self {
        Self {
            drugs,
            preparer,
            text: Vec::new(),
            journals: Vec::new(),
            journal_ids: FastMap::default(),
            records: Vec::new(),
            mentions: Vec::new(),
            heads: FastMap::default(),
            next: Vec::new(),
            report,
            journal_bytes: 0,
            plan: None,
            spill: None,
        }
    }

    /// Spills to disk past the plan's memory budget instead of holding every row.
    pub fn with_budget(mut self, plan: SpillPlan) -> Self {
        self.plan = Some(plan);
        self
    }

    /// Writes rejected rows to `out` as JSON lines as they are found (those found so far
    /// first), keeping only the first `keep` in the report; [`BuiltGraph::close_rejects`]
    /// flushes them and reports a failed write.
    pub fn with_rejects(mut self, out: Box<dyn Write + Send + Sync>, keep: usize) -> Self {
        let mut sink = RejectSink {
            out,
            keep,
            error: None,
        };
        for r in &self.report.rejected {
            sink.write(r);
        }
        self.report.rejected.truncate(keep);
        self.report.sink = Some(sink);
        self
    }

    /// Whether rows went to disk.
    pub fn spilled(&self) -> bool {
        self.spill.is_some()
    }

    /// A builder with the same drugs and matcher and no rows, never spilling.
    fn empty_like(&self) -> Self {
        Self::holding_nothing(Vec::new(), self.preparer.clone(), Report::default())
    }

    /// Estimated bytes the rows held so far take. Lengths, not capacities: the unused
    /// half of a grown vector is address space the kernel has not backed yet.
    fn held(&self) -> usize {
        self.text.len()
            + self.records.len() * std::mem::size_of::<Record>()
            + self.mentions.len() * 8
            + self.heads.len() * 24
            + self.next.len() * 4
            + self.journal_bytes
    }

    /// Adds one publication row.
    pub fn add(&mut self, raw: &RawPublication<'_>) {
        let mut chunk = PreparedChunk::default();
        self.preparer.prepare_into(raw, &mut chunk);
        self.accept(chunk);
    }

    /// A handle that prepares rows on other threads while this builder accepts them.
    pub fn preparer(&self) -> Preparer {
        self.preparer.clone()
    }

    /// Adds prepared rows; chunks must come in source order for a deterministic merge.
    pub fn accept(&mut self, chunk: PreparedChunk) {
        if let Some(spill) = &mut self.spill {
            return spill.accept(chunk, &mut self.report);
        }
        self.accept_in_memory(chunk);
        if let Some(plan) = &self.plan
            && self.held() > plan.rows_budget()
        {
            let plan = plan.clone();
            spill::start(self, &plan);
        }
    }

    fn accept_in_memory(&mut self, chunk: PreparedChunk) {
        self.report.rows += chunk.rows_read;
        for row in &chunk.rows {
            let journal = row.journal.map(|s| self.intern(chunk.slice(s)));
            let title = chunk.slice(row.title);
            let id = row.id.map(|s| chunk.slice(s));
            if self.merge(row, title, id, journal) {
                continue;
            }
            let index = self.records.len() as u32;
            let start = self.text.len() as u64;
            self.text.extend_from_slice(title);
            self.text.extend_from_slice(id.unwrap_or_default());
            self.records.push(Record {
                key: row.key,
                start,
                title_len: title.len() as u32,
                id_len: id.map_or(NONE, |i| i.len() as u32),
                journal: journal.unwrap_or(NONE),
                kind: row.kind,
                primary: row.primary,
            });
            self.next
                .push(self.heads.insert(row.hash, index).unwrap_or(NONE));
            let drugs = &chunk.drugs[row.drugs.start as usize..row.drugs.end as usize];
            self.mentions.extend(drugs.iter().map(|&d| (d, index)));
        }
        self.report.reject_all(chunk.rejected);
    }

    /// Folds the row into an earlier record of the same publication, if there is one.
    fn merge(
        &mut self,
        row: &PreparedRow,
        title: &[u8],
        id: Option<&[u8]>,
        journal: Option<u32>,
    ) -> bool {
        let mut at = self.heads.get(&row.hash).copied().unwrap_or(NONE);
        while at != NONE {
            let r = &self.records[at as usize];
            let same = r.kind == row.kind
                && key_days(r.key) == key_days(row.key)
                && self.title(r) == title;
            let id_ok = match (self.id(r), id) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            let journal_ok = r.journal == NONE || journal.is_none_or(|j| j == r.journal);
            if same && id_ok && journal_ok {
                if let (NONE, Some(id)) = (r.id_len, id) {
                    // The id lives right after the title: store both again.
                    let start = self.text.len() as u64;
                    self.text.extend_from_slice(title);
                    self.text.extend_from_slice(id);
                    let r = &mut self.records[at as usize];
                    r.start = start;
                    r.id_len = id.len() as u32;
                    r.key = row.key;
                }
                let r = &mut self.records[at as usize];
                if r.journal == NONE {
                    r.journal = journal.unwrap_or(NONE);
                }
                self.report.merged += usize::from(row.primary);
                return true;
            }
            at = self.next[at as usize];
        }
        false
    }

    fn intern(&mut self, journal: &[u8]) -> u32 {
        if let Some(&i) = self.journal_ids.get(journal) {
            return i;
        }
        let i = self.journals.len() as u32;
        self.journal_bytes += journal.len() * 2 + 64;
        self.journals
            .push(String::from_utf8_lossy(journal).into_owned());
        self.journal_ids.insert(journal.into(), i);
        i
    }

    fn title(&self, r: &Record) -> &[u8] {
        let start = r.start as usize;
        &self.text[start..start + r.title_len as usize]
    }

    fn id(&self, r: &Record) -> Option<&[u8]> {
        (r.id_len != NONE).then(|| {
            let start = r.start as usize + r.title_len as usize;
            &self.text[start..start + r.id_len as usize]
        })
    }

    /// Groups the mentions by drug in output order and returns the finished graph (each
    /// drug's mentions are sorted as it is written).
    pub fn finish(self) -> BuiltGraph {
        if self.spill.is_some() {
            return spill::finish(self);
        }
        self.finish_in_memory()
    }

    fn finish_in_memory(mut self) -> BuiltGraph {
        self.report.mentioning = self.records.iter().filter(|r| r.primary).count();
        self.report.mentions = self.mentions.len();
        // Only needed while merging.
        self.heads = FastMap::default();
        self.next = Vec::new();
        let (order, rank) = self.output_order();
        let rank: Vec<usize> = rank.into_iter().map(|p| p as usize).collect();
        // Counting sort by drug: offsets[p]..offsets[p + 1] are the records of the drug at
        // output position p, in source order.
        let mut offsets = vec![0usize; order.len() + 1];
        for &(d, _) in &self.mentions {
            offsets[rank[d as usize] + 1] += 1;
        }
        for p in 0..order.len() {
            offsets[p + 1] += offsets[p];
        }
        let mut fill = offsets.clone();
        let mut by_drug = vec![0u32; self.mentions.len()];
        for (d, r) in std::mem::take(&mut self.mentions) {
            let slot = &mut fill[rank[d as usize]];
            by_drug[*slot] = r;
            *slot += 1;
        }
        let mut journal_order: Vec<u32> = (0..self.journals.len() as u32).collect();
        journal_order.sort_by(|&a, &b| self.journals[a as usize].cmp(&self.journals[b as usize]));
        let mut journal_rank = vec![0u32; journal_order.len()];
        for (pos, &j) in journal_order.iter().enumerate() {
            journal_rank[j as usize] = pos as u32;
        }
        let journal_json = journal_order
            .iter()
            .map(|&j| {
                let mut buf = Vec::new();
                push_json(&mut buf, &self.journals[j as usize]);
                buf
            })
            .collect();
        BuiltGraph {
            b: self,
            order,
            offsets,
            by_drug,
            journal_rank,
            journal_json,
            index_ids: None,
            spilled: None,
        }
    }

    /// The drugs' indices in output order (by name, then ATC code), and each drug's position
    /// in it.
    fn output_order(&self) -> (Vec<u32>, Vec<u32>) {
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
        (order, rank)
    }

    /// Graph order of two records whose order keys are equal (same date, same id start):
    /// id (none first), title, journal.
    fn compare_tail(&self, a: u32, b: u32) -> Ordering {
        let (ra, rb) = (&self.records[a as usize], &self.records[b as usize]);
        let journal =
            |r: &Record| (r.journal != NONE).then(|| self.journals[r.journal as usize].as_str());
        let id = match (self.id(ra), self.id(rb)) {
            (Some(x), Some(y)) => cmp_json(x, y),
            (x, y) => x.is_some().cmp(&y.is_some()),
        };
        id.then_with(|| cmp_json(self.title(ra), self.title(rb)))
            .then_with(|| journal(ra).cmp(&journal(rb)))
    }
}

/// Cleans and matches rows: the read-only half of the builder, shareable across threads.
#[derive(Clone)]
pub struct Preparer {
    matcher: std::sync::Arc<DrugMatcher>,
}

impl Preparer {
    /// Cleans and matches a row into `chunk`.
    pub fn prepare_into(&self, raw: &RawPublication<'_>, chunk: &mut PreparedChunk) {
        chunk.rows_read += 1;
        let reject = |chunk: &mut PreparedChunk, reason: String| {
            chunk.rejected.push(Rejected {
                source: raw.source.to_string(),
                row: raw.row,
                reason,
            });
        };
        let Some(title) = raw.title.as_deref().and_then(clean_text) else {
            return reject(chunk, "no title".into());
        };
        if let Err(why) = check_text("title", raw.title.as_deref(), &title, MAX_TITLE) {
            return reject(chunk, why);
        }
        let date = match raw.date.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            None => return reject(chunk, "no date".into()),
            Some(text) => match parse_date(text) {
                Some(d) => d,
                None => return reject(chunk, format!("unreadable date '{text}'")),
            },
        };
        let first = chunk.drugs.len();
        self.matcher.mentions(&title, &mut chunk.drugs);
        if chunk.drugs.len() == first {
            return;
        }
        let id = raw.id.as_deref().and_then(clean_text);
        if id.as_deref().map_or(0, str::len) > MAX_FIELD {
            chunk.drugs.truncate(first);
            return reject(chunk, format!("id longer than {MAX_FIELD} bytes"));
        }
        let key = order_key(date, id.as_deref());
        let title = chunk.push(&title, true);
        let id = id.map(|i| chunk.push(&i, true));
        let journal = raw
            .journal
            .as_deref()
            .and_then(clean_text)
            .map(|j| chunk.push(&j, false));
        chunk.rows.push(PreparedRow {
            kind: raw.kind,
            key,
            hash: merge_hash(raw.kind, chunk.slice(title), key),
            title,
            id,
            journal,
            drugs: first as u32..chunk.drugs.len() as u32,
            primary: true,
        });
    }
}

/// A generated row for tests: kind, id, title, date, journal.
#[cfg(test)]
pub(crate) type TestRow = (Source, Option<String>, String, String, Option<String>);

#[cfg(test)]
impl GraphBuilder {
    /// Adds `rows` as rows 1, 2… of a source named `t`, one row at a time.
    pub(crate) fn add_rows(&mut self, rows: &[TestRow]) {
        for (i, (kind, id, title, date, journal)) in rows.iter().enumerate() {
            self.add(&RawPublication {
                source: "t",
                row: i + 1,
                kind: *kind,
                id: id.as_deref().map(Cow::Borrowed),
                title: Some(Cow::Borrowed(title)),
                date: Some(Cow::Borrowed(date)),
                journal: journal.as_deref().map(Cow::Borrowed),
            });
        }
    }
}

/// A finished graph, held compactly until written.
pub struct BuiltGraph {
    b: GraphBuilder,
    /// Drug indices in output order (by name, then ATC code).
    order: Vec<u32>,
    /// `by_drug[offsets[p]..offsets[p + 1]]`: records mentioning the drug at position `p`.
    offsets: Vec<usize>,
    by_drug: Vec<u32>,
    /// Position of each journal in name order, and the JSON of each name in that order.
    journal_rank: Vec<u32>,
    journal_json: Vec<Vec<u8>>,
    /// Index id of each journal, when not its rank (a part of a spilled graph).
    index_ids: Option<Vec<u32>>,
    /// The rows on disk, when they went there.
    spilled: Option<spill::Spilled>,
}

/// Per-thread buffers for encoding nodes.
#[derive(Default)]
struct Scratch {
    sorted: Vec<(u64, u32)>,
    journals: Vec<u64>,
    /// For the index: marks by journal id, and the ids marked.
    marks: Vec<u8>,
    seen: Vec<u32>,
}

/// A piece of the graph encoded: its nodes, and their journal index lines.
#[derive(Default)]
struct Encoded {
    graph: Vec<u8>,
    index: Vec<u8>,
}

impl BuiltGraph {
    /// What happened to the input.
    pub fn report(&self) -> &Report {
        &self.b.report
    }

    /// What the spill took, when the rows went to disk.
    pub fn spill_summary(&self) -> Option<String> {
        self.spilled.as_ref().map(spill::Spilled::summary)
    }

    /// Flushes the rejected rows' sink, if there is one, and returns its first error.
    pub fn close_rejects(&mut self) -> std::io::Result<()> {
        match self.b.report.sink.as_mut() {
            None => Ok(()),
            Some(sink) => match sink.error.take() {
                Some(e) => Err(e),
                None => sink.out.flush(),
            },
        }
    }

    /// Writes `graph.json` (one drug per line, deterministic), encoding on `threads`
    /// threads while this one writes the pieces in order. A spilled graph reads its rows
    /// back as it writes (and completes its report): it can be written once.
    pub fn write_json(
        &mut self,
        out: &mut (impl Write + ?Sized),
        threads: usize,
    ) -> std::io::Result<()> {
        self.write_json_indexed(out, threads, None)
    }

    /// [`Self::write_json`], also handing the journal index to `index` as it goes (its
    /// lines are encoded with the nodes, on the same threads).
    pub fn write_json_indexed(
        &mut self,
        out: &mut (impl Write + ?Sized),
        threads: usize,
        mut index: Option<&mut dyn IndexSink>,
    ) -> std::io::Result<()> {
        out.write_all(b"{\"drugs\": [\n")?;
        match self.spilled.take() {
            Some(mut spilled) => {
                let written = spilled.write(self, out, threads, index);
                self.spilled = Some(spilled);
                written?;
            }
            None => {
                if let Some(index) = index.as_deref_mut() {
                    index.journals(&self.journals_by_name());
                }
                self.write_nodes(0..self.order.len(), out, threads, index)?;
            }
        }
        out.write_all(b"\n]}\n")
    }

    /// The journal names sorted.
    fn journals_by_name(&self) -> Vec<String> {
        let mut names = vec![String::new(); self.journal_rank.len()];
        for (j, &rank) in self.journal_rank.iter().enumerate() {
            names[rank as usize].clone_from(&self.b.journals[j]);
        }
        names
    }

    /// The index id of journal `j`: its rank by name unless the graph is part of a larger one.
    fn index_id(&self, j: u32) -> u32 {
        match &self.index_ids {
            Some(ids) => ids[j as usize],
            None => self.journal_rank[j as usize],
        }
    }

    /// Writes the nodes of the drugs at output positions `range` (and their index lines).
    fn write_nodes(
        &self,
        range: Range<usize>,
        out: &mut (impl Write + ?Sized),
        threads: usize,
        mut index: Option<&mut dyn IndexSink>,
    ) -> std::io::Result<()> {
        let pieces = self.pieces(threads, range);
        if threads <= 1 {
            let (mut scratch, mut piece) = (Scratch::default(), Encoded::default());
            for range in pieces {
                let count = range.len();
                self.encode(range, &mut scratch, &mut piece, index.is_some());
                out.write_all(&piece.graph)?;
                if let Some(index) = index.as_deref_mut() {
                    index.nodes(&piece.index, count)?;
                }
            }
        } else {
            self.write_parallel(pieces, out, threads, index)?;
        }
        Ok(())
    }

    /// Contiguous runs of the drugs at `range` with about the same number of mentions each.
    fn pieces(&self, threads: usize, range: Range<usize>) -> Vec<Range<usize>> {
        let target = (self.by_drug.len() / (threads.max(1) * 128)).max(4096);
        let mut pieces = Vec::new();
        let mut start = range.start;
        for p in range.clone() {
            if self.offsets[p + 1] - self.offsets[start] >= target || p + 1 == range.end {
                pieces.push(start..p + 1);
                start = p + 1;
            }
        }
        pieces
    }

    fn write_parallel(
        &self,
        pieces: Vec<Range<usize>>,
        out: &mut (impl Write + ?Sized),
        threads: usize,
        mut index: Option<&mut dyn IndexSink>,
    ) -> std::io::Result<()> {
        type Job = (Range<usize>, Encoded, mpsc::SyncSender<Encoded>);
        let window = threads * 2;
        let indexing = index.is_some();
        std::thread::scope(|scope| {
            let (jobs, job_rx) = mpsc::sync_channel::<Job>(window);
            // Each worker owns a handle: if they all stop, queued jobs (and their reply
            // senders) are dropped, so waiting for a piece fails instead of hanging.
            let job_rx = Arc::new(Mutex::new(job_rx));
            for _ in 0..threads {
                let job_rx = Arc::clone(&job_rx);
                scope.spawn(move || {
                    let mut scratch = Scratch::default();
                    // The lock guard is a temporary: it is released before encoding.
                    while let Ok(Ok((range, mut piece, reply))) = job_rx.lock().map(|rx| rx.recv())
                    {
                        self.encode(range, &mut scratch, &mut piece, indexing);
                        if reply.send(piece).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(job_rx);
            // Receivers of the pieces in flight (and their node counts), oldest first;
            // buffers are reused.
            let mut in_flight: VecDeque<(mpsc::Receiver<Encoded>, usize)> = VecDeque::new();
            let mut spare: Vec<Encoded> = Vec::new();
            let stopped = || std::io::Error::other("a graph encoding thread stopped");
            let mut write_oldest = |in_flight: &mut VecDeque<(mpsc::Receiver<Encoded>, usize)>,
                                    spare: &mut Vec<Encoded>|
             -> std::io::Result<()> {
                if let Some((rx, count)) = in_flight.pop_front() {
                    let piece = rx.recv().map_err(|_| stopped())?;
                    out.write_all(&piece.graph)?;
                    if let Some(index) = index.as_deref_mut() {
                        index.nodes(&piece.index, count)?;
                    }
                    // A piece holding one very popular drug can be large: do not keep it.
                    if piece.graph.capacity() <= SPARE_CAPACITY {
                        spare.push(piece);
                    }
                }
                Ok(())
            };
            for range in pieces {
                if in_flight.len() >= window {
                    write_oldest(&mut in_flight, &mut spare)?;
                }
                let (tx, rx) = mpsc::sync_channel(1);
                let count = range.len();
                jobs.send((range, spare.pop().unwrap_or_default(), tx))
                    .map_err(|_| stopped())?;
                in_flight.push_back((rx, count));
            }
            while !in_flight.is_empty() {
                write_oldest(&mut in_flight, &mut spare)?;
            }
            Ok(())
        })
    }

    /// Encodes the nodes of the drugs at output positions `range` into `piece` (emptied
    /// first), and their index lines when `indexing`.
    fn encode(
        &self,
        range: Range<usize>,
        scratch: &mut Scratch,
        piece: &mut Encoded,
        indexing: bool,
    ) {
        let b = &self.b;
        let buf = &mut piece.graph;
        buf.clear();
        piece.index.clear();
        for pos in range {
            if pos > 0 {
                buf.extend_from_slice(b",\n");
            }
            let (code, name) = &b.drugs[self.order[pos] as usize];
            buf.extend_from_slice(b"{\"atccode\":");
            match code {
                Some(code) => push_json(buf, code),
                None => buf.extend_from_slice(b"null"),
            }
            buf.extend_from_slice(b",\"drug\":");
            push_json(buf, name);
            let records = &self.by_drug[self.offsets[pos]..self.offsets[pos + 1]];
            scratch.sorted.clear();
            scratch
                .sorted
                .extend(records.iter().map(|&r| (b.records[r as usize].key, r)));
            scratch
                .sorted
                .sort_unstable_by(|x, y| x.0.cmp(&y.0).then_with(|| b.compare_tail(x.1, y.1)));
            for (label, kind) in [
                (&b",\"pubmed\":["[..], Source::Pubmed),
                (&b"],\"clinical_trials\":["[..], Source::ClinicalTrial),
            ] {
                buf.extend_from_slice(label);
                let mut first = true;
                for &(key, r) in &scratch.sorted {
                    let record = &b.records[r as usize];
                    if record.kind != kind {
                        continue;
                    }
                    if !first {
                        buf.push(b',');
                    }
                    first = false;
                    self.encode_mention(record, key, buf);
                }
            }
            buf.extend_from_slice(b"],\"journals\":[");
            scratch.journals.clear();
            scratch
                .journals
                .extend(scratch.sorted.iter().filter_map(|&(key, r)| {
                    let j = b.records[r as usize].journal;
                    (j != NONE)
                        .then(|| (u64::from(self.journal_rank[j as usize]) << 32) | key_days(key))
                }));
            scratch.journals.sort_unstable();
            scratch.journals.dedup();
            for (i, &link) in scratch.journals.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                buf.extend_from_slice(b"{\"journal\":");
                buf.extend_from_slice(&self.journal_json[(link >> 32) as usize]);
                buf.extend_from_slice(b",\"date\":");
                push_date(buf, link & u64::from(u32::MAX));
                buf.push(b'}');
            }
            buf.extend_from_slice(b"]}");
            if indexing {
                self.encode_index_line(name, scratch, &mut piece.index);
            }
        }
    }

    /// Appends the index line of the node whose records are `scratch.sorted`: while they are
    /// at hand, so the index costs no second walk over the records.
    fn encode_index_line(&self, name: &str, scratch: &mut Scratch, buf: &mut Vec<u8>) {
        let b = &self.b;
        // Per index id, the kinds of mention through it (bit 0 PubMed, bit 1 clinical
        // trial); `seen` lists the ids marked, and every mark is reset below.
        let (marks, seen) = (&mut scratch.marks, &mut scratch.seen);
        seen.clear();
        for &(_, r) in &scratch.sorted {
            let record = &b.records[r as usize];
            if record.journal == NONE {
                continue;
            }
            let id = self.index_id(record.journal) as usize;
            if id >= marks.len() {
                marks.resize(id + 1, 0);
            }
            if marks[id] == 0 {
                seen.push(id as u32);
            }
            marks[id] |= match record.kind {
                Source::Pubmed => 1,
                Source::ClinicalTrial => 2,
            };
        }
        // In id order: a scan of the marks when the node uses a fair share of the journals
        // (no sort), else a sort of the few it uses.
        if seen.len() * 8 >= marks.len() {
            seen.clear();
            seen.extend((0..marks.len() as u32).filter(|&id| marks[id as usize] != 0));
        } else {
            seen.sort_unstable();
        }
        let (shown, ids): (&[u8], &[u32]) = (marks, seen);
        let of_kind = |bit: u8| {
            ids.iter()
                .copied()
                .filter(move |&id| shown[id as usize] & bit != 0)
        };
        push_node(buf, name, of_kind(1), of_kind(2));
        for &id in seen.iter() {
            marks[id as usize] = 0;
        }
    }

    fn encode_mention(&self, r: &Record, key: u64, buf: &mut Vec<u8>) {
        let b = &self.b;
        buf.extend_from_slice(b"{\"id\":");
        buf.extend_from_slice(b.id(r).unwrap_or(b"null"));
        buf.extend_from_slice(b",\"title\":");
        buf.extend_from_slice(b.title(r));
        buf.extend_from_slice(b",\"date\":");
        push_date(buf, key_days(key));
        buf.extend_from_slice(b",\"journal\":");
        match r.journal {
            NONE => buf.extend_from_slice(b"null"),
            j => buf.extend_from_slice(&self.journal_json[self.journal_rank[j as usize] as usize]),
        }
        buf.push(b'}');
    }

    /// The journal(s) mentioning the most distinct drugs (for a spilled graph, known once
    /// it is written).
    pub fn top_journals(&self) -> super::TopJournals {
        if let Some(spilled) = &self.spilled {
            return spilled.top_journals();
        }
        let b = &self.b;
        let counts = self.journal_counts(0..self.order.len());
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

    /// Distinct drug names mentioned by each journal (by journal id) among the drugs at
    /// `range`, which must not split a run of drugs of one name.
    fn journal_counts(&self, range: Range<usize>) -> Vec<usize> {
        let b = &self.b;
        let mut counts = vec![0usize; b.journals.len()];
        let mut last = vec![usize::MAX; b.journals.len()];
        // Drugs of one name (with different ATC codes) are adjacent and count once, as in
        // the analysis over the written graph.
        let mut group = range.start;
        for pos in range.clone() {
            let name = |p: usize| &b.drugs[self.order[p] as usize].1;
            if pos > range.start && name(pos) != name(pos - 1) {
                group = pos;
            }
            for &r in &self.by_drug[self.offsets[pos]..self.offsets[pos + 1]] {
                let j = b.records[r as usize].journal as usize;
                if j != NONE as usize && last[j] != group {
                    last[j] = group;
                    counts[j] += 1;
                }
            }
        }
        counts
    }

    /// The graph as owned values (for tests and small graphs).
    pub fn to_graph(&mut self) -> Result<super::Graph, String> {
        let mut buf = Vec::new();
        self.write_json(&mut buf, 1).map_err(|e| e.to_string())?;
        serde_json::from_slice(&buf).map_err(|e| e.to_string())
    }
}

/// Appends a date (as days in an order key) as a JSON string `"YYYY-MM-DD"`, without going
/// through chrono's formatter (this runs for every mention).
fn push_date(buf: &mut Vec<u8>, days: u64) {
    let Some(d) = days_date(days) else {
        return buf.extend_from_slice(b"null");
    };
    let (y, m, day) = (d.year(), d.month(), d.day());
    if !(0..=9999).contains(&y) {
        let _ = write!(buf, "\"{d}\"");
        return;
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
    let mut out = *b"\"0000-00-00\"";
    for (slot, digit) in [1, 2, 3, 4, 6, 7, 9, 10].into_iter().zip(digits) {
        out[slot] = b'0' + digit as u8;
    }
    buf.extend_from_slice(&out);
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
        let mut built = b.finish();
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
        let mut built = b.finish();
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

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reject_sink_gets_every_row_in_order_and_the_report_keeps_the_first() {
        let raw = || {
            let mut d = drugs(&["X", "Y"]);
            d.push(RawDrug {
                row: 3,
                atccode: None,
                drug: None,
            });
            d
        };
        let feed = |b: &mut GraphBuilder| {
            for i in 0..50 {
                let date = if i % 3 == 0 { "someday" } else { "2020-01-01" };
                let title = if i % 5 == 0 { " " } else { "X and Y" };
                b.add(&row(Source::Pubmed, "1", title, date, "J"));
            }
        };
        let mut all = GraphBuilder::new(raw()).unwrap();
        feed(&mut all);
        let all = all.finish();
        let expected: String = all
            .report()
            .rejected
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        assert_eq!(all.report().rejected_total, all.report().rejected.len());

        let sink = Shared::default();
        let mut b = GraphBuilder::new(raw())
            .unwrap()
            .with_rejects(Box::new(sink.clone()), 4);
        feed(&mut b);
        let mut built = b.finish();
        built.close_rejects().unwrap();
        let report = built.report();
        assert_eq!(
            String::from_utf8(sink.0.lock().unwrap().clone()).unwrap(),
            expected
        );
        assert_eq!(report.rejected_total, all.report().rejected.len());
        assert!(report.rejected_total > 10);
        assert_eq!(report.rejected[..], all.report().rejected[..4]);
        assert_eq!(report.rejected[0].reason, "no drug name");
    }

    #[test]
    fn a_failed_reject_write_fails_closing() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut b = GraphBuilder::new(drugs(&["X"]))
            .unwrap()
            .with_rejects(Box::new(Broken), 1);
        b.add(&row(Source::Pubmed, "1", " ", "2020-01-01", "J"));
        b.add(&row(Source::Pubmed, "2", " ", "2020-01-01", "J"));
        let mut built = b.finish();
        assert_eq!(built.report().rejected_total, 2);
        assert_eq!(built.close_rejects().unwrap_err().to_string(), "disk full");
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
        let mut built = b.finish();
        let (g, report) = (built.to_graph().unwrap(), built.report());
        let names: Vec<&str> = g.drugs.iter().map(|d| d.drug.as_str()).collect();
        assert_eq!(names, vec!["ASPIRIN", "ZINC"]);
        assert_eq!(report.rejected.len(), 2);
        assert_eq!(report.rejected[0].reason, "duplicate of drug 'zinc'");
        assert_eq!(report.rejected[1].reason, "no drug name");
    }

    #[test]
    fn drug_names_with_line_breaks_or_over_4_kib_are_reported_not_matched() {
        let long = "A".repeat(MAX_DRUG_NAME + 1);
        let most = "B".repeat(MAX_DRUG_NAME);
        let b =
            GraphBuilder::new(drugs(&["ETHANOL\nA03BA,ATROPINE", "X\r", &long, &most])).unwrap();
        let mut built = b.finish();
        let (g, report) = (built.to_graph().unwrap(), built.report());
        let names: Vec<&str> = g.drugs.iter().map(|d| d.drug.as_str()).collect();
        assert_eq!(names, vec![most.as_str()]);
        let rejected: Vec<(usize, &str)> = report
            .rejected
            .iter()
            .map(|r| (r.row, r.reason.as_str()))
            .collect();
        assert_eq!(
            rejected,
            vec![
                (1, "drug name contains a line break"),
                (2, "drug name contains a line break"),
                (3, "drug name longer than 4096 bytes (4097)"),
            ]
        );
    }

    #[test]
    fn titles_with_line_breaks_or_over_64_kib_are_reported_even_without_a_mention() {
        let mut b = GraphBuilder::new(drugs(&["X"])).unwrap();
        let long = format!("X {}", "y".repeat(MAX_TITLE));
        b.add(&row(Source::Pubmed, "1", "X\nY", "2020-01-01", "J"));
        b.add(&row(Source::Pubmed, "2", "none\r\nhere", "2020-01-01", "J"));
        b.add(&row(Source::Pubmed, "3", &long, "2020-01-01", "J"));
        b.add(&row(Source::Pubmed, "4", "X  and\ttab", "2020-01-01", "J"));
        let mut built = b.finish();
        let reasons: Vec<&str> = built
            .report()
            .rejected
            .iter()
            .map(|r| r.reason.as_str())
            .collect();
        assert_eq!(
            reasons,
            vec![
                "title contains a line break",
                "title contains a line break",
                "title longer than 65536 bytes (65538)",
            ]
        );
        assert_eq!(
            built.to_graph().unwrap().drugs[0].pubmed[0].title,
            "X and tab"
        );
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

    #[test]
    fn order_keys_agree_with_the_id_order_and_missing_ids_sort_first() {
        let d = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
        let keys: Vec<u64> = [None, Some(""), Some("1"), Some("10"), Some("2"), Some("A")]
            .into_iter()
            .map(|id| order_key(d, id))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        let earlier = NaiveDate::from_ymd_opt(-40, 3, 1).unwrap();
        assert!(order_key(earlier, Some("zzz")) < order_key(d, None));
        assert_eq!(days_date(key_days(order_key(earlier, None))), Some(earlier));
    }

    #[test]
    fn titles_that_need_json_escapes_sort_as_their_text() {
        let mut b = GraphBuilder::new(drugs(&["X"])).unwrap();
        for title in ["X a", "X \"b\"", "X !", "X #", "X", "X\\y"] {
            b.add(&row(Source::Pubmed, "1", title, "2020-01-01", "J"));
        }
        let g = b.finish().to_graph().unwrap();
        let titles: Vec<&str> = g.drugs[0].pubmed.iter().map(|m| m.title.as_str()).collect();
        let mut expected = titles.clone();
        expected.sort();
        assert_eq!(titles, expected);
        assert_eq!(titles.len(), 6);
        assert!(titles.contains(&"X \"b\""));
    }

    #[test]
    fn parallel_writing_gives_the_same_bytes_as_one_thread() {
        let names: Vec<String> = (0..40).map(|i| format!("DRUG{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut b = GraphBuilder::new(drugs(&refs)).unwrap();
        for i in 0..30_000usize {
            let title = format!("drug{} and drug{} study {i}", i % 40, (i * 7) % 40);
            let date = format!("2020-{:02}-{:02}", i % 12 + 1, i % 28 + 1);
            let (id, journal) = (format!("{}", i % 997), format!("J{}", i % 13));
            let kind = if i % 3 == 0 {
                Source::ClinicalTrial
            } else {
                Source::Pubmed
            };
            b.add(&row(kind, &id, &title, &date, &journal));
        }
        let mut built = b.finish();
        assert!(
            built.pieces(2, 0..40).len() > 2,
            "the test must cover several pieces"
        );
        let (mut one, mut two) = (Vec::new(), Vec::new());
        built.write_json(&mut one, 1).unwrap();
        built.write_json(&mut two, 2).unwrap();
        assert!(one == two, "parallel output differs");
        let g: crate::graph::Graph = serde_json::from_slice(&one).unwrap();
        assert_eq!(g.drugs.len(), 40);
        for node in &g.drugs {
            let keys: Vec<_> = node.pubmed.iter().map(|m| m.sort_key()).collect();
            assert!(
                keys.windows(2).all(|w| w[0] <= w[1]),
                "{} is not sorted",
                node.drug
            );
        }
    }
}
