//! Building the graph within a memory budget. Past the budget the builder writes every row
//! it holds, and every row after, to partition files chosen by the row's merge hash (rows
//! that may be one publication land in one file, in source order). Grouping then merges
//! each partition alone, writes each publication once to a publications file and a
//! (drug position, publication offset) reference per mention to the file of the drug's
//! range of output positions. Writing loads one range at a time (its references and the
//! publications they point to) into an ordinary in-memory builder and encodes its nodes,
//! so the output is byte for byte the one of the in-memory path. The journal index needs
//! every journal name up front (its ids are positions in their sorted list): grouping
//! collects them, and each range's journals are mapped onto that list as it is written.
//!
//! The spill folder is a [`tempfile::TempDir`]: removed when the builder or the built graph
//! is dropped, whether the task succeeded, failed or was cancelled.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Mutex;

use super::{
    BuiltGraph, GraphBuilder, NONE, PreparedChunk, PreparedRow, Record, Report, Source, Span,
    merge_hash,
};
use crate::graph::TopJournals;
use crate::graph::index::IndexSink;

/// Most partition files a spill writes at once.
const MAX_PARTS: u64 = 512;

/// Rows per chunk read back from a partition.
const ROWS_PER_CHUNK: usize = 8192;

/// Size of a spilled row's fixed part: kind, order key, merge hash, four lengths.
const ROW_HEAD: usize = 1 + 8 + 8 + 4 * 4;

/// Size of a spilled publication's fixed part: kind, order key, three lengths.
const PUB_HEAD: usize = 1 + 8 + 4 * 3;

/// When and where a builder spills.
#[derive(Clone, Debug)]
pub struct SpillPlan {
    /// Folder in which the temporary spill folder is made.
    pub dir: PathBuf,
    /// Memory budget of the whole build, in bytes.
    pub budget: usize,
    /// Estimated size of the input in bytes, to choose how many partitions to spill to.
    pub input_bytes: u64,
}

impl SpillPlan {
    /// Bytes held rows may take: the budget less what the matcher, the batches in flight
    /// and the encoding buffers take (measured: up to about 256 MiB at 10k drugs × 5 M
    /// publications), and at most half of a small budget.
    pub(super) fn rows_budget(&self) -> usize {
        (self.budget / 2)
            .max(self.budget.saturating_sub(256 << 20))
            .max(1)
    }
}

/// A builder's spill in progress.
pub(super) struct Spill {
    dir: Option<tempfile::TempDir>,
    parts: Vec<BufWriter<File>>,
    /// Estimated bytes each drug (by index) takes once loaded for writing.
    drug_bytes: Vec<u64>,
    rows_budget: usize,
    error: Option<io::Error>,
    scratch: Vec<u8>,
}

fn kind_byte(kind: Source) -> u8 {
    match kind {
        Source::Pubmed => 0,
        Source::ClinicalTrial => 1,
    }
}

fn byte_kind(b: u8) -> io::Result<Source> {
    match b {
        0 => Ok(Source::Pubmed),
        1 => Ok(Source::ClinicalTrial),
        _ => Err(io::Error::other("a spill file is damaged")),
    }
}

fn len_or_none(x: Option<&[u8]>) -> u32 {
    x.map_or(NONE, |x| x.len() as u32)
}

impl Spill {
    fn new(plan: &SpillPlan, drugs: usize) -> io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(".graph-spill-")
            .tempdir_in(&plan.dir)?;
        let budget = plan.rows_budget();
        // Each partition must fit the budget when merged: spilled rows take about twice
        // their Parquet size.
        let count = (plan.input_bytes.saturating_mul(2) / budget as u64 + 1).clamp(4, MAX_PARTS);
        let buffer = (budget / 4 / count as usize).clamp(4 << 10, 1 << 20);
        let parts = (0..count)
            .map(|i| {
                File::create(dir.path().join(format!("rows-{i}")))
                    .map(|f| BufWriter::with_capacity(buffer, f))
            })
            .collect::<io::Result<_>>()?;
        Ok(Self {
            dir: Some(dir),
            parts,
            drug_bytes: vec![0; drugs],
            rows_budget: budget,
            error: None,
            scratch: Vec::new(),
        })
    }

    fn failed(e: io::Error) -> Self {
        Self {
            dir: None,
            parts: Vec::new(),
            drug_bytes: Vec::new(),
            rows_budget: 1,
            error: Some(e),
            scratch: Vec::new(),
        }
    }

    #[allow(clippy::too_many_arguments, reason = "one row's fields")]
    fn write_row(
        &mut self,
        kind: Source,
        key: u64,
        hash: u64,
        title: &[u8],
        id: Option<&[u8]>,
        journal: Option<&[u8]>,
        drugs: &[u32],
    ) {
        if self.error.is_some() {
            return;
        }
        let buf = &mut self.scratch;
        buf.clear();
        buf.push(kind_byte(kind));
        buf.extend_from_slice(&key.to_le_bytes());
        buf.extend_from_slice(&hash.to_le_bytes());
        for len in [
            title.len() as u32,
            len_or_none(id),
            len_or_none(journal),
            drugs.len() as u32,
        ] {
            buf.extend_from_slice(&len.to_le_bytes());
        }
        buf.extend_from_slice(title);
        buf.extend_from_slice(id.unwrap_or_default());
        buf.extend_from_slice(journal.unwrap_or_default());
        for d in drugs {
            buf.extend_from_slice(&d.to_le_bytes());
        }
        // What the publication costs once loaded for writing, and each mention on top.
        let cost =
            (title.len() + id.map_or(0, <[u8]>::len) + journal.map_or(0, <[u8]>::len)) as u64 + 64;
        for &d in drugs {
            if let Some(b) = self.drug_bytes.get_mut(d as usize) {
                *b += cost + 24;
            }
        }
        let part = (hash % self.parts.len() as u64) as usize;
        if let Err(e) = self.parts[part].write_all(buf) {
            self.error = Some(e);
        }
    }

    /// Writes a chunk's rows to the partitions.
    pub(super) fn accept(&mut self, chunk: PreparedChunk, report: &mut Report) {
        report.rows += chunk.rows_read;
        for row in &chunk.rows {
            let drugs = &chunk.drugs[row.drugs.start as usize..row.drugs.end as usize];
            self.write_row(
                row.kind,
                row.key,
                row.hash,
                chunk.slice(row.title),
                row.id.map(|s| chunk.slice(s)),
                row.journal.map(|s| chunk.slice(s)),
                drugs,
            );
        }
        report.reject_all(chunk.rejected);
    }
}

/// Moves every row the builder holds (already merged) to disk; rows go there from now on.
pub(super) fn start(b: &mut GraphBuilder, plan: &SpillPlan) {
    let mut spill = Spill::new(plan, b.drugs.len()).unwrap_or_else(Spill::failed);
    let mentions = std::mem::take(&mut b.mentions);
    let mut m = 0;
    let mut drugs = Vec::new();
    for (i, r) in b.records.iter().enumerate() {
        drugs.clear();
        // Mentions were added record by record.
        while m < mentions.len() && mentions[m].1 == i as u32 {
            drugs.push(mentions[m].0);
            m += 1;
        }
        let title = b.title(r);
        let journal = (r.journal != NONE).then(|| b.journals[r.journal as usize].as_bytes());
        let hash = merge_hash(r.kind, title, r.key);
        spill.write_row(r.kind, r.key, hash, title, b.id(r), journal, &drugs);
    }
    b.text = Vec::new();
    b.records = Vec::new();
    b.heads = Default::default();
    b.next = Vec::new();
    b.journals = Vec::new();
    b.journal_ids = Default::default();
    b.journal_bytes = 0;
    b.spill = Some(spill);
}

/// The spilled rows, grouped for writing.
pub(super) struct Spilled {
    _dir: Option<tempfile::TempDir>,
    /// Output positions of each group of drugs, in order; together they cover every drug.
    ranges: Vec<Range<usize>>,
    pubs: PathBuf,
    refs: Vec<PathBuf>,
    /// Every journal name, sorted: the journal index's table.
    journals: Vec<String>,
    failure: Mutex<Option<io::Error>>,
    top: Mutex<Option<TopJournals>>,
}

/// Merges the spilled rows partition by partition and groups them by drug on disk.
pub(super) fn finish(mut b: GraphBuilder) -> BuiltGraph {
    let spill = b.spill.take();
    let mut counts = Report::default();
    let grouped = match spill {
        Some(spill) => group(&b, spill, &mut counts),
        None => Err(io::Error::other("nothing was spilled")),
    };
    let mut built = b.finish_in_memory();
    let report = &mut built.b.report;
    report.merged += counts.merged;
    report.mentioning = counts.mentioning;
    report.mentions = counts.mentions;
    built.spilled = Some(grouped.unwrap_or_else(|e| Spilled {
        _dir: None,
        ranges: Vec::new(),
        pubs: PathBuf::new(),
        refs: Vec::new(),
        journals: Vec::new(),
        failure: Mutex::new(Some(e)),
        top: Mutex::new(None),
    }));
    built
}

fn group(b: &GraphBuilder, mut spill: Spill, counts: &mut Report) -> io::Result<Spilled> {
    if let Some(e) = spill.error.take() {
        return Err(e);
    }
    let dir = spill
        .dir
        .take()
        .ok_or_else(|| io::Error::other("no spill folder"))?;
    for part in &mut spill.parts {
        part.flush()?;
    }
    let parts = std::mem::take(&mut spill.parts).len();
    let mut order: Vec<u32> = (0..b.drugs.len() as u32).collect();
    order.sort_by(|&x, &y| {
        let (cx, nx) = &b.drugs[x as usize];
        let (cy, ny) = &b.drugs[y as usize];
        (nx, cx).cmp(&(ny, cy))
    });
    let mut rank = vec![0u32; order.len()];
    for (pos, &d) in order.iter().enumerate() {
        rank[d as usize] = pos as u32;
    }
    // Cut the drugs into ranges that fit the budget once loaded, never between two drugs of
    // one name (top journals counts a name once).
    let name = |pos: usize| &b.drugs[order[pos] as usize].1;
    let mut ranges = Vec::new();
    let (mut start, mut held) = (0, 0u64);
    for (pos, &drug) in order.iter().enumerate() {
        let bytes = spill.drug_bytes[drug as usize];
        if pos > start && held + bytes > spill.rows_budget as u64 && name(pos) != name(pos - 1) {
            ranges.push(start..pos);
            (start, held) = (pos, 0);
        }
        held += bytes;
    }
    ranges.push(start..order.len());
    let pubs_path = dir.path().join("publications");
    let mut pubs = BufWriter::with_capacity(1 << 20, File::create(&pubs_path)?);
    let mut pubs_len = 0u64;
    let refs_paths: Vec<PathBuf> = (0..ranges.len())
        .map(|i| dir.path().join(format!("refs-{i}")))
        .collect();
    let buffer = (spill.rows_budget / 4 / ranges.len()).clamp(4 << 10, 1 << 20);
    let mut refs = refs_paths
        .iter()
        .map(|p| File::create(p).map(|f| BufWriter::with_capacity(buffer, f)))
        .collect::<io::Result<Vec<_>>>()?;
    let mut head = Vec::with_capacity(PUB_HEAD);
    let mut journals = HashSet::new();
    for i in 0..parts {
        let path = dir.path().join(format!("rows-{i}"));
        let mut sub = b.empty_like();
        read_rows(&path, |chunk| sub.accept_in_memory(chunk))?;
        std::fs::remove_file(&path)?;
        journals.extend(sub.journals.iter().cloned());
        counts.merged += sub.report.merged;
        counts.mentioning += sub.records.len();
        counts.mentions += sub.mentions.len();
        let mut m = 0;
        for (r_index, r) in sub.records.iter().enumerate() {
            let title = sub.title(r);
            let id = sub.id(r);
            let journal = (r.journal != NONE).then(|| sub.journals[r.journal as usize].as_bytes());
            head.clear();
            head.push(kind_byte(r.kind));
            head.extend_from_slice(&r.key.to_le_bytes());
            for len in [title.len() as u32, len_or_none(id), len_or_none(journal)] {
                head.extend_from_slice(&len.to_le_bytes());
            }
            pubs.write_all(&head)?;
            pubs.write_all(title)?;
            pubs.write_all(id.unwrap_or_default())?;
            pubs.write_all(journal.unwrap_or_default())?;
            let offset = pubs_len;
            pubs_len += (head.len() + title.len()) as u64
                + id.map_or(0, |x| x.len() as u64)
                + journal.map_or(0, |x| x.len() as u64);
            while m < sub.mentions.len() && sub.mentions[m].1 == r_index as u32 {
                let pos = rank[sub.mentions[m].0 as usize] as usize;
                let q = ranges.partition_point(|r| r.end <= pos);
                let mut reference = [0u8; 12];
                reference[..4].copy_from_slice(&(pos as u32).to_le_bytes());
                reference[4..].copy_from_slice(&offset.to_le_bytes());
                refs[q].write_all(&reference)?;
                m += 1;
            }
        }
    }
    pubs.flush()?;
    for r in &mut refs {
        r.flush()?;
    }
    let mut journals: Vec<String> = journals.into_iter().collect();
    journals.sort_unstable();
    Ok(Spilled {
        _dir: Some(dir),
        ranges,
        pubs: pubs_path,
        refs: refs_paths,
        journals,
        failure: Mutex::new(None),
        top: Mutex::new(None),
    })
}

/// Reads `buf.len()` bytes, or nothing at the end of the file (`false`).
fn read_or_end(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::Error::other("a spill file is truncated")),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Reads a partition back as prepared chunks, in the order its rows were written.
fn read_rows(path: &std::path::Path, mut f: impl FnMut(PreparedChunk)) -> io::Result<()> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut chunk = PreparedChunk::default();
    let mut head = [0u8; ROW_HEAD];
    while read_or_end(&mut r, &mut head)? {
        let kind = byte_kind(head[0])?;
        let (key, hash) = (u64_at(&head, 1), u64_at(&head, 9));
        let lens = [17, 21, 25].map(|at| u32_at(&head, at));
        let drugs = u32_at(&head, 29) as usize;
        let mut spans = [None; 3];
        for (slot, len) in spans.iter_mut().zip(lens) {
            if len != NONE {
                let start = chunk.text.len();
                chunk.text.resize(start + len as usize, 0);
                r.read_exact(&mut chunk.text[start..])?;
                *slot = Some(Span {
                    start,
                    len: len as usize,
                });
            }
        }
        let first = chunk.drugs.len() as u32;
        let mut d = [0u8; 4];
        for _ in 0..drugs {
            r.read_exact(&mut d)?;
            chunk.drugs.push(u32::from_le_bytes(d));
        }
        let title = spans[0].ok_or_else(|| io::Error::other("a spill file is damaged"))?;
        chunk.rows.push(PreparedRow {
            kind,
            key,
            hash,
            title,
            id: spans[1],
            journal: spans[2],
            drugs: first..chunk.drugs.len() as u32,
        });
        if chunk.rows.len() >= ROWS_PER_CHUNK {
            f(std::mem::take(&mut chunk));
        }
    }
    if !chunk.rows.is_empty() {
        f(chunk);
    }
    Ok(())
}

impl Spilled {
    /// Writes every node, one range of drugs at a time (handing each range's journals to
    /// `index`), and works out the top journals.
    pub(super) fn write(
        &self,
        built: &BuiltGraph,
        out: &mut (impl Write + ?Sized),
        threads: usize,
        mut index: Option<&mut dyn IndexSink>,
    ) -> io::Result<()> {
        if let Some(e) = self.failure.lock().ok().and_then(|mut f| f.take()) {
            return Err(e);
        }
        if let Some(index) = index.as_deref_mut() {
            index.journals(&self.journals);
        }
        let mut journals: HashMap<String, usize> = HashMap::new();
        let mut pubs = BufReader::with_capacity(1 << 20, File::open(&self.pubs)?);
        let mut at = 0u64;
        let mut head = [0u8; PUB_HEAD];
        for (range, refs_path) in self.ranges.iter().zip(&self.refs) {
            let bytes = std::fs::read(refs_path)?;
            let mut refs: Vec<(u64, u32)> = bytes
                .chunks_exact(12)
                .map(|c| (u64_at(c, 4), u32_at(c, 0)))
                .collect();
            drop(bytes);
            // In file order, so that reading the publications only moves forward.
            refs.sort_unstable();
            let mut sub = built.b.empty_like();
            sub.drugs = built.b.drugs.clone();
            let mut last = None;
            for (offset, pos) in refs {
                if last != Some(offset) {
                    last = Some(offset);
                    pubs.seek_relative(offset as i64 - at as i64)?;
                    pubs.read_exact(&mut head)?;
                    let kind = byte_kind(head[0])?;
                    let key = u64_at(&head, 1);
                    let [title_len, id_len, journal_len] = [9, 13, 17].map(|i| u32_at(&head, i));
                    let start = sub.text.len();
                    let text_len =
                        title_len as usize + if id_len == NONE { 0 } else { id_len as usize };
                    sub.text.resize(start + text_len, 0);
                    pubs.read_exact(&mut sub.text[start..])?;
                    let journal = if journal_len == NONE {
                        NONE
                    } else {
                        let mut name = vec![0u8; journal_len as usize];
                        pubs.read_exact(&mut name)?;
                        sub.intern(&name)
                    };
                    at = offset
                        + (PUB_HEAD + text_len) as u64
                        + if journal_len == NONE {
                            0
                        } else {
                            u64::from(journal_len)
                        };
                    sub.records.push(Record {
                        key,
                        start: start as u64,
                        title_len,
                        id_len,
                        journal,
                        kind,
                    });
                }
                let record = sub.records.len() as u32 - 1;
                sub.mentions.push((built.order[pos as usize], record));
            }
            let mut part = sub.finish_in_memory();
            if index.is_some() {
                part.index_ids = Some(self.index_ids(&part.b.journals)?);
            }
            // Reborrowed for this part only (`as_deref_mut` would keep it for the whole loop).
            let part_index = index.as_mut().map(|i| &mut **i as &mut dyn IndexSink);
            part.write_nodes(range.clone(), out, threads, part_index)?;
            for (j, count) in part.journal_counts(range.clone()).into_iter().enumerate() {
                if count > 0 {
                    *journals.entry(part.b.journals[j].clone()).or_default() += count;
                }
            }
        }
        let max = journals.values().copied().max().unwrap_or(0);
        let mut top: Vec<String> = journals
            .into_iter()
            .filter(|(_, c)| max > 0 && *c == max)
            .map(|(j, _)| j)
            .collect();
        top.sort();
        if let Ok(mut slot) = self.top.lock() {
            *slot = Some(TopJournals {
                max_distinct_drugs: max,
                journals: top,
            });
        }
        Ok(())
    }

    /// The index ids (positions in the whole graph's sorted journals) of a part's journals.
    fn index_ids(&self, names: &[String]) -> io::Result<Vec<u32>> {
        names
            .iter()
            .map(|n| match self.journals.binary_search(n) {
                Ok(id) => Ok(id as u32),
                Err(_) => Err(io::Error::other(
                    "a journal is missing from the spill's list",
                )),
            })
            .collect()
    }

    /// The top journals, known once the graph is written.
    pub(super) fn top_journals(&self) -> TopJournals {
        self.top
            .lock()
            .ok()
            .and_then(|t| t.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::graph::RawDrug;

    fn drugs() -> Vec<RawDrug> {
        let mut names: Vec<String> = (0..30).map(|i| format!("DRUG{i}")).collect();
        names.extend(["Éthanol", "ZINC", "zinc", "ZINC"].map(String::from));
        names
            .into_iter()
            .enumerate()
            .map(|(i, n)| RawDrug {
                row: i + 1,
                atccode: (i % 7 != 0).then(|| format!("C{}", i % 31)),
                drug: Some(n),
            })
            .collect()
    }

    /// Generated rows with split records (same title and date, one missing id or journal),
    /// conflicting ids, escapes and non-ASCII text.
    type Row = crate::graph::build::TestRow;

    fn rows() -> Vec<Row> {
        (0..12_000usize)
            .map(|i| {
                let kind = if i % 3 == 0 {
                    Source::ClinicalTrial
                } else {
                    Source::Pubmed
                };
                let n = i % 5_000;
                let title = match n % 4 {
                    0 => format!("drug{} and drug{} \"study\" {n}", n % 30, (n * 7) % 30),
                    1 => format!("éthanol with zinc \\ {n} 😀"),
                    2 => format!("DRUG{} only {}", n % 30, n % 97),
                    _ => format!("nothing here {n}"),
                };
                let id = (i % 11 != 0).then(|| format!("{}", (i * 13) % 1_009));
                let journal = (i % 5 != 0).then(|| format!("Journal é {}", i % 17));
                let date = format!("2020-{:02}-{:02}", n % 12 + 1, n % 28 + 1);
                (kind, id, title, date, journal)
            })
            .collect()
    }

    fn build(plan: Option<SpillPlan>) -> (Vec<u8>, TopJournals, Report, bool) {
        let mut b = GraphBuilder::new(drugs()).unwrap();
        if let Some(plan) = plan {
            b = b.with_budget(plan);
        }
        // One row a chunk: the spill starts in the middle of the input.
        b.add_rows(&rows());
        let spilled = b.spilled();
        let built = b.finish();
        let mut out = Vec::new();
        built.write_json(&mut out, 2).unwrap();
        let report = built.report();
        let report = Report {
            drugs: report.drugs,
            rows: report.rows,
            merged: report.merged,
            mentioning: report.mentioning,
            mentions: report.mentions,
            rejected: report.rejected.clone(),
            rejected_total: report.rejected_total,
            ..Report::default()
        };
        (out, built.top_journals(), report, spilled)
    }

    #[test]
    fn a_spilled_build_writes_the_same_bytes_as_the_in_memory_one() {
        let (memory, top, report, spilled) = build(None);
        assert!(!spilled);
        assert!(report.merged > 0, "the data must hold split records");
        let dir = tempfile::tempdir().unwrap();
        for budget in [64 << 10, 256 << 10, 1 << 20] {
            let plan = SpillPlan {
                dir: dir.path().to_path_buf(),
                budget,
                input_bytes: 2 << 20,
            };
            let (bytes, spilled_top, spilled_report, spilled) = build(Some(plan));
            assert!(spilled, "a {budget}-byte budget must spill");
            assert!(bytes == memory, "spilled output differs at budget {budget}");
            assert_eq!(spilled_top, top);
            assert_eq!(
                (
                    spilled_report.rows,
                    spilled_report.merged,
                    spilled_report.mentioning
                ),
                (report.rows, report.merged, report.mentioning)
            );
            assert_eq!(spilled_report.mentions, report.mentions);
            assert_eq!(spilled_report.rejected, report.rejected);
            // Dropping the built graph removed the spill folder.
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
        let plan = SpillPlan {
            dir: dir.path().to_path_buf(),
            budget: 1 << 30,
            input_bytes: 2 << 20,
        };
        assert!(!build(Some(plan)).3, "a large budget stays in memory");
    }

    #[test]
    fn the_spill_folder_goes_with_a_builder_dropped_half_way() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = GraphBuilder::new(drugs()).unwrap().with_budget(SpillPlan {
            dir: dir.path().to_path_buf(),
            budget: 16 << 10,
            input_bytes: 0,
        });
        b.add_rows(&rows()[..3_000]);
        assert!(b.spilled());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(b);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_spill_folder_that_cannot_be_made_fails_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = GraphBuilder::new(drugs()).unwrap().with_budget(SpillPlan {
            dir: dir.path().join("missing"),
            budget: 1,
            input_bytes: 0,
        });
        b.add_rows(&rows()[..1]);
        let built = b.finish();
        assert!(built.write_json(&mut Vec::new(), 1).is_err());
    }
}
