//! Building the graph within a memory budget. Past the budget the builder cuts the drugs (in
//! output order) into ranges expected to fit the budget once loaded, and writes every row it
//! holds, and every row after, to the file of each range of drugs the row mentions, with that
//! range's drugs only: a publication is stored once per range it is needed in, never once per
//! mention, and the data goes to disk once and comes back once. Rows that may be one
//! publication have one title, so the same drugs: they land in the same files, in source
//! order, and merge there as they would have in memory. Writing loads one range at a time
//! into an ordinary in-memory builder and encodes its nodes, so the output is byte for byte
//! the one of the in-memory path. The ranges are cut by the rows held when the spill began (a
//! sample of each drug's share); a range whose rows turn out larger than the budget is split
//! again, by the bytes its drugs really took, before it is loaded. The journal index needs
//! every journal name up front (its ids are positions in their sorted list): the spill
//! collects them as rows go by.
//!
//! The spill folder is a [`tempfile::TempDir`]: removed when the builder or the built graph
//! is dropped, whether the task succeeded, failed or was cancelled.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use foldhash::fast::FixedState;

use super::{
    BuiltGraph, GraphBuilder, NONE, PreparedChunk, PreparedRow, Record, Report, Source, Span,
    merge_hash,
};
use crate::graph::TopJournals;
use crate::graph::index::IndexSink;

/// Most range files a spill writes at once.
const MAX_PARTS: usize = 256;

/// Rows per chunk read back from a range file.
const ROWS_PER_CHUNK: usize = 8192;

/// Size of a spilled row's fixed part: kind, order key, merge hash, four lengths.
const ROW_HEAD: usize = 1 + 8 + 8 + 4 * 4;

/// The bit of a spilled row's kind byte that marks a primary row ([`PreparedRow::primary`]).
const PRIMARY: u8 = 0x80;

/// When and where a builder spills.
#[derive(Clone, Debug)]
pub struct SpillPlan {
    /// Folder in which the temporary spill folder is made.
    pub dir: PathBuf,
    /// Memory budget of the whole build, in bytes.
    pub budget: usize,
    /// Size of the input in bytes, to choose how many ranges to spill to when its rows
    /// are not known.
    pub input_bytes: u64,
    /// Rows of the input (0: not known): with the rows read when the spill begins, how
    /// much the whole input will take.
    pub input_rows: u64,
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

fn kind_byte(kind: Source) -> u8 {
    match kind {
        Source::Pubmed => 0,
        Source::ClinicalTrial => 1,
    }
}

fn byte_kind(b: u8) -> io::Result<Source> {
    match b & !PRIMARY {
        0 => Ok(Source::Pubmed),
        1 => Ok(Source::ClinicalTrial),
        _ => Err(io::Error::other("a spill file is damaged")),
    }
}

fn len_or_none(x: Option<&[u8]>) -> u32 {
    x.map_or(NONE, |x| x.len() as u32)
}

/// What one mention of a publication costs once loaded for writing (its text and record,
/// its share of the merge table and its mention), given the publication's text length.
fn mention_cost(text: usize) -> u64 {
    text as u64 + 88
}

/// One row on its way to disk.
struct Row<'a> {
    kind: Source,
    primary: bool,
    key: u64,
    hash: u64,
    title: &'a [u8],
    id: Option<&'a [u8]>,
    journal: Option<&'a [u8]>,
    drugs: &'a [u32],
}

impl<'a> Row<'a> {
    fn of(chunk: &'a PreparedChunk, row: &PreparedRow) -> Self {
        Self {
            kind: row.kind,
            primary: row.primary,
            key: row.key,
            hash: row.hash,
            title: chunk.slice(row.title),
            id: row.id.map(|s| chunk.slice(s)),
            journal: row.journal.map(|s| chunk.slice(s)),
            drugs: &chunk.drugs[row.drugs.start as usize..row.drugs.end as usize],
        }
    }

    fn text_len(&self) -> usize {
        self.title.len() + self.id.map_or(0, <[u8]>::len) + self.journal.map_or(0, <[u8]>::len)
    }
}

/// A range of drugs' rows on disk.
struct Part {
    /// Output positions of the drugs.
    range: Range<usize>,
    path: PathBuf,
}

/// The files of a set of ranges, being written.
struct Writers {
    ranges: Vec<Range<usize>>,
    paths: Vec<PathBuf>,
    files: Vec<BufWriter<File>>,
    /// (range, drug) pairs of the row being written.
    split: Vec<(u32, u32)>,
    scratch: Vec<u8>,
}

impl Writers {
    /// Creates one file per range in `dir`, named `{prefix}{i}`, with buffers that together
    /// take about a quarter of `rows_budget`.
    fn create(
        dir: &Path,
        prefix: &str,
        ranges: Vec<Range<usize>>,
        rows_budget: usize,
    ) -> io::Result<Self> {
        let buffer = (rows_budget / 4 / ranges.len().max(1)).clamp(4 << 10, 1 << 20);
        let paths: Vec<PathBuf> = (0..ranges.len())
            .map(|i| dir.join(format!("{prefix}{i}")))
            .collect();
        let files = paths
            .iter()
            .map(|p| File::create(p).map(|f| BufWriter::with_capacity(buffer, f)))
            .collect::<io::Result<_>>()?;
        Ok(Self {
            ranges,
            paths,
            files,
            split: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Writes `row` to the file of each range its drugs are in, with that range's drugs;
    /// the first copy keeps the row's primary mark.
    fn write(&mut self, rank: &[u32], row: &Row<'_>) -> io::Result<()> {
        let Self {
            ranges,
            files,
            split,
            scratch: buf,
            ..
        } = self;
        split.clear();
        for &d in row.drugs {
            let pos = rank.get(d as usize).copied().unwrap_or(u32::MAX) as usize;
            let q = ranges.partition_point(|r| r.end <= pos);
            if q == ranges.len() {
                return Err(io::Error::other("a spilled row names an unknown drug"));
            }
            split.push((q as u32, d));
        }
        split.sort_unstable();
        let mut primary = row.primary;
        for group in split.chunk_by(|a, b| a.0 == b.0) {
            buf.clear();
            buf.push(kind_byte(row.kind) | if primary { PRIMARY } else { 0 });
            buf.extend_from_slice(&row.key.to_le_bytes());
            buf.extend_from_slice(&row.hash.to_le_bytes());
            for len in [
                row.title.len() as u32,
                len_or_none(row.id),
                len_or_none(row.journal),
                group.len() as u32,
            ] {
                buf.extend_from_slice(&len.to_le_bytes());
            }
            buf.extend_from_slice(row.title);
            buf.extend_from_slice(row.id.unwrap_or_default());
            buf.extend_from_slice(row.journal.unwrap_or_default());
            for &(_, d) in group {
                buf.extend_from_slice(&d.to_le_bytes());
            }
            files[group[0].0 as usize].write_all(buf)?;
            primary = false;
        }
        Ok(())
    }

    /// Flushes every file and returns the ranges' parts.
    fn finish(self) -> io::Result<Vec<Part>> {
        for mut f in self.files {
            f.flush()?;
        }
        Ok(self
            .ranges
            .into_iter()
            .zip(self.paths)
            .map(|(range, path)| Part { range, path })
            .collect())
    }
}

/// Cuts the output positions `span` into ranges of at most `limit` bytes (a single drug may
/// take more), never between two drugs of one name (`joined(pos)`: the drug at `pos` has
/// the name of the one before; top journals counts a name once).
fn cut(
    span: Range<usize>,
    limit: u64,
    bytes: impl Fn(usize) -> u64,
    joined: impl Fn(usize) -> bool,
) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut held) = (span.start, 0u64);
    for pos in span.clone() {
        let b = bytes(pos);
        if pos > start && held + b > limit && !joined(pos) {
            ranges.push(start..pos);
            (start, held) = (pos, 0);
        }
        held += b;
    }
    ranges.push(start..span.end);
    ranges
}

/// Bytes one range's rows may take once loaded: half the rows' budget, as two ranges are
/// held at once while the graph is written (one read back while the other is encoded).
fn range_budget(rows_budget: usize) -> u64 {
    (rows_budget as u64 / 2).max(1)
}

/// `e`, saying it happened in the spill folder `dir` (errors reach the user as the graph's).
fn in_spill(dir: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("spill folder {}: {e}", dir.display()))
}

/// At most `max` ranges: consecutive ones joined when there are more, so that a spill never
/// holds more files open than that (a joined range too large to load is split again).
fn at_most(ranges: Vec<Range<usize>>, max: usize) -> Vec<Range<usize>> {
    if ranges.len() <= max {
        return ranges;
    }
    let group = ranges.len().div_ceil(max.max(1));
    ranges
        .chunks(group)
        .map(|g| g[0].start..g[g.len() - 1].end)
        .collect()
}

/// Name of every spill folder, before its random part.
const SPILL_PREFIX: &str = ".graph-spill-";

/// Makes a spill folder in `dir`, locked for as long as the returned file is open: a run
/// killed outright (`kill -9`, out of memory) cannot remove it, but releases the lock, so a
/// later run can tell it from one in use ([`sweep_stale`]).
fn locked_folder(dir: &Path) -> io::Result<(tempfile::TempDir, File)> {
    let folder = tempfile::Builder::new()
        .prefix(SPILL_PREFIX)
        .tempdir_in(dir)?;
    let lock = File::open(folder.path())?;
    lock.try_lock().map_err(io::Error::from)?;
    Ok((folder, lock))
}

/// Removes the spill folders in `dir` that runs killed outright left (unlocked, and not
/// made in the last minute); returns how many.
pub fn sweep_stale(dir: &Path) -> usize {
    crate::data::location::remove_unheld(dir, |n| n.starts_with(SPILL_PREFIX))
}

/// A builder's spill in progress.
pub(super) struct Spill {
    dir: Option<tempfile::TempDir>,
    /// Held while the folder is in use (see [`locked_folder`]).
    lock: Option<File>,
    /// Output position of each drug (by index), and the drug at each position.
    rank: Vec<u32>,
    order: Vec<u32>,
    writers: Option<Writers>,
    /// Estimated bytes each drug (by index) takes once loaded for writing.
    drug_bytes: Vec<u64>,
    rows_budget: usize,
    /// Every journal name seen.
    journals: HashSet<Box<[u8]>, FixedState>,
    error: Option<io::Error>,
}

impl Spill {
    /// Cuts the drugs into ranges by what the builder holds and opens their files.
    fn new(plan: &SpillPlan, b: &GraphBuilder) -> io::Result<Self> {
        let (dir, lock) = locked_folder(&plan.dir).map_err(|e| in_spill(&plan.dir, e))?;
        let (order, rank) = b.output_order();
        let rows_budget = plan.rows_budget();
        // What each drug's rows held so far take: a sample of its share. (The rows' real
        // cost is counted as they are written, these included.)
        let mut shares = vec![0u64; b.drugs.len()];
        for &(d, r) in &b.mentions {
            let r = &b.records[r as usize];
            let journal = if r.journal == NONE {
                0
            } else {
                b.journals[r.journal as usize].len()
            };
            let id = if r.id_len == NONE { 0 } else { r.id_len };
            if let Some(x) = shares.get_mut(d as usize) {
                *x += mention_cost(r.title_len as usize + id as usize + journal);
            }
        }
        // What the whole input will take once loaded: the rows so far scaled by the rows to
        // come, else (rows unknown) about four times the input's Parquet size.
        let held: u64 = shares.iter().sum();
        let seen = b.report.rows as u64;
        let expected = if plan.input_rows > seen && seen > 0 {
            u64::try_from(u128::from(held) * u128::from(plan.input_rows) / u128::from(seen))
                .unwrap_or(u64::MAX)
        } else {
            plan.input_bytes.saturating_mul(4).max(held)
        };
        // Aim a third under a range's budget, so that few ranges need splitting again.
        let count = (expected.saturating_mul(3) / 2 / range_budget(rows_budget) + 1)
            .clamp(2, MAX_PARTS as u64);
        // What is still to come is spread evenly over the drugs: early rows that mention few
        // of them must not leave the others all in one range.
        let unseen = expected.saturating_sub(held) / (order.len() as u64).max(1);
        let weight = |pos: usize| shares[order[pos] as usize] + unseen + 1;
        let total: u64 = (0..order.len()).map(weight).sum();
        let name = |pos: usize| &b.drugs[order[pos] as usize].1;
        let ranges = cut(0..order.len(), total.div_ceil(count), weight, |pos| {
            pos > 0 && name(pos) == name(pos - 1)
        });
        let ranges = at_most(ranges, MAX_PARTS);
        let writers = Writers::create(dir.path(), "range-", ranges, rows_budget)
            .map_err(|e| in_spill(dir.path(), e))?;
        let mut journals = HashSet::default();
        journals.extend(b.journals.iter().map(|j| j.as_bytes().into()));
        Ok(Self {
            dir: Some(dir),
            lock: Some(lock),
            rank,
            order,
            writers: Some(writers),
            drug_bytes: vec![0; b.drugs.len()],
            rows_budget,
            journals,
            error: None,
        })
    }

    fn failed(e: io::Error) -> Self {
        Self {
            dir: None,
            lock: None,
            rank: Vec::new(),
            order: Vec::new(),
            writers: None,
            drug_bytes: Vec::new(),
            rows_budget: 1,
            journals: HashSet::default(),
            error: Some(e),
        }
    }

    /// Writes a row to its ranges' files, counting what its drugs will take.
    fn write_row(&mut self, row: &Row<'_>) {
        if self.error.is_some() {
            return;
        }
        let Some(writers) = self.writers.as_mut() else {
            return;
        };
        if let Err(e) = writers.write(&self.rank, row) {
            self.error = Some(e);
            return;
        }
        let cost = mention_cost(row.text_len());
        for &d in row.drugs {
            if let Some(b) = self.drug_bytes.get_mut(d as usize) {
                *b += cost;
            }
        }
        if let Some(j) = row.journal
            && !self.journals.contains(j)
        {
            self.journals.insert(j.into());
        }
    }

    /// Writes a chunk's rows to disk.
    pub(super) fn accept(&mut self, chunk: PreparedChunk, report: &mut Report) {
        report.rows += chunk.rows_read;
        for row in &chunk.rows {
            self.write_row(&Row::of(&chunk, row));
        }
        report.reject_all(chunk.rejected);
    }

    /// Flushes the files: the rows, ready to be written range by range.
    fn close(mut self) -> io::Result<Spilled> {
        if let Some(e) = self.error.take() {
            return Err(match &self.dir {
                Some(dir) => in_spill(dir.path(), e),
                None => e,
            });
        }
        let dir = self
            .dir
            .take()
            .ok_or_else(|| io::Error::other("no spill folder"))?;
        let parts = self
            .writers
            .take()
            .ok_or_else(|| io::Error::other("no spill files"))?
            .finish()?;
        let mut journals: Vec<String> = self
            .journals
            .iter()
            .map(|j| String::from_utf8_lossy(j).into_owned())
            .collect();
        journals.sort_unstable();
        let bytes = parts
            .iter()
            .map(|p| std::fs::metadata(&p.path).map(|m| m.len()))
            .sum::<io::Result<u64>>()?;
        Ok(Spilled {
            dir: Some(dir),
            _lock: self.lock.take(),
            first_ranges: parts.len(),
            bytes,
            loading: std::time::Duration::ZERO,
            parts,
            rank: self.rank,
            order: self.order,
            drug_bytes: self.drug_bytes,
            rows_budget: self.rows_budget,
            journals,
            splits: 0,
            failure: None,
            top: None,
        })
    }
}

/// Moves every row the builder holds (already merged) to disk; rows go there from now on.
pub(super) fn start(b: &mut GraphBuilder, plan: &SpillPlan) {
    let mut spill = Spill::new(plan, b).unwrap_or_else(Spill::failed);
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
        spill.write_row(&Row {
            kind: r.kind,
            primary: r.primary,
            key: r.key,
            hash: merge_hash(r.kind, title, r.key),
            title,
            id: b.id(r),
            journal: (r.journal != NONE).then(|| b.journals[r.journal as usize].as_bytes()),
            drugs: &drugs,
        });
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

/// The spilled rows, by range of drugs, until the graph is written (once).
pub(super) struct Spilled {
    dir: Option<tempfile::TempDir>,
    /// Held while the folder is in use (see [`locked_folder`]).
    _lock: Option<File>,
    /// The ranges' files, in output order; together they cover every drug.
    parts: Vec<Part>,
    rank: Vec<u32>,
    order: Vec<u32>,
    drug_bytes: Vec<u64>,
    rows_budget: usize,
    /// Every journal name, sorted: the journal index's table.
    journals: Vec<String>,
    /// Ranges split again so far (names their files).
    splits: usize,
    /// Ranges cut when the spill began, and the bytes their files took.
    first_ranges: usize,
    bytes: u64,
    /// Time spent reading ranges back (and splitting them), as opposed to encoding them.
    loading: std::time::Duration,
    /// Why the rows cannot be written, when they cannot.
    failure: Option<io::Error>,
    top: Option<TopJournals>,
}

/// Closes the spill: the built graph writes its rows range by range.
pub(super) fn finish(mut b: GraphBuilder) -> BuiltGraph {
    let spilled = match b.spill.take() {
        Some(spill) => spill.close(),
        None => Err(io::Error::other("nothing was spilled")),
    };
    let mut built = b.finish_in_memory();
    built.spilled = Some(spilled.unwrap_or_else(|e| Spilled {
        dir: None,
        _lock: None,
        parts: Vec::new(),
        rank: Vec::new(),
        order: Vec::new(),
        drug_bytes: Vec::new(),
        rows_budget: 1,
        journals: Vec::new(),
        splits: 0,
        first_ranges: 0,
        bytes: 0,
        loading: std::time::Duration::ZERO,
        failure: Some(e),
        top: None,
    }));
    built
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

/// Reads a range file back as prepared chunks, in the order its rows were written.
fn read_rows(path: &Path, mut f: impl FnMut(PreparedChunk) -> io::Result<()>) -> io::Result<()> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut chunk = PreparedChunk::default();
    let mut head = [0u8; ROW_HEAD];
    while read_or_end(&mut r, &mut head)? {
        let kind = byte_kind(head[0])?;
        let primary = head[0] & PRIMARY != 0;
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
            primary,
        });
        if chunk.rows.len() >= ROWS_PER_CHUNK {
            f(std::mem::take(&mut chunk))?;
        }
    }
    if !chunk.rows.is_empty() {
        f(chunk)?;
    }
    Ok(())
}

impl Spilled {
    /// Writes every node, one range of drugs at a time (handing each range's journals to
    /// `index`), adds what the ranges held to `built`'s report and works out the top
    /// journals. The rows are read once: a second call fails.
    pub(super) fn write(
        &mut self,
        built: &mut BuiltGraph,
        out: &mut (impl Write + ?Sized),
        threads: usize,
        mut index: Option<&mut dyn IndexSink>,
    ) -> io::Result<()> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        // Taken: the rows are read once, and the folder goes when this returns, written or
        // not, rather than with the graph.
        let folder = self
            .dir
            .take()
            .ok_or_else(|| io::Error::other("the spilled rows were written already"))?;
        let dir = folder.path().to_path_buf();
        if let Some(index) = index.as_deref_mut() {
            index.journals(&self.journals);
        }
        let mut journals: HashMap<String, usize> = HashMap::new();
        let mut parts = std::mem::take(&mut self.parts);
        parts.reverse();
        let mut template = built.b.empty_like();
        template.drugs = built.b.drugs.clone();
        let (mut merged, mut mentioning, mut mentions) = (0, 0, 0);
        let this = &*self;
        // One thread reads the next range back while this one encodes and writes the last:
        // reading is one thread's work and writing often waits for the disk. A range is
        // handed over only when this thread is ready for it, so at most two are held.
        let (splits, loading) = std::thread::scope(|scope| -> io::Result<_> {
            let (loaded_tx, loaded_rx) = mpsc::sync_channel::<io::Result<(Part, BuiltGraph)>>(0);
            let (spare_tx, spare_rx) = mpsc::channel::<(Vec<u8>, Vec<Record>)>();
            let loader = scope.spawn(move || {
                let (mut splits, mut loading) = (0, std::time::Duration::ZERO);
                while let Some(part) = parts.pop() {
                    let started = std::time::Instant::now();
                    let loaded = this
                        .split(&dir, part, &template.drugs, &mut splits)
                        .and_then(|mut pieces| {
                            pieces.reverse();
                            let part = pieces.pop();
                            // Pieces of a range split again go before the ranges after it.
                            parts.extend(pieces);
                            part.map(|part| this.load(part, &template, spare_rx.try_recv().ok()))
                                .transpose()
                        });
                    loading += started.elapsed();
                    let loaded = loaded.map_err(|e| in_spill(&dir, e));
                    let failed = loaded.is_err();
                    match loaded.transpose() {
                        None => continue,
                        Some(loaded) => {
                            if loaded_tx.send(loaded).is_err() || failed {
                                break;
                            }
                        }
                    }
                }
                (splits, loading)
            });
            for loaded in loaded_rx {
                let (part, mut loaded) = loaded?;
                merged += loaded.b.report.merged;
                mentioning += loaded.b.report.mentioning;
                mentions += loaded.b.report.mentions;
                if index.is_some() {
                    loaded.index_ids = Some(this.index_ids(&loaded.b.journals)?);
                }
                // Reborrowed for this part only (`as_deref_mut` would keep it for the loop).
                let part_index = index.as_mut().map(|i| &mut **i as &mut dyn IndexSink);
                loaded.write_nodes(part.range.clone(), out, threads, part_index)?;
                for (j, count) in loaded
                    .journal_counts(part.range.clone())
                    .into_iter()
                    .enumerate()
                {
                    if count > 0 {
                        *journals.entry(loaded.b.journals[j].clone()).or_default() += count;
                    }
                }
                let BuiltGraph { b: mut used, .. } = loaded;
                used.text.clear();
                used.records.clear();
                // The loader may have finished: its buffers are then not needed.
                let _ = spare_tx.send((used.text, used.records));
            }
            loader
                .join()
                .map_err(|_| io::Error::other("the thread reading the spill stopped"))
        })?;
        self.splits += splits;
        self.loading += loading;
        let report = &mut built.b.report;
        report.merged += merged;
        report.mentioning += mentioning;
        report.mentions += mentions;
        drop(folder);
        let max = journals.values().copied().max().unwrap_or(0);
        let mut top: Vec<String> = journals
            .into_iter()
            .filter(|(_, c)| max > 0 && *c == max)
            .map(|(j, _)| j)
            .collect();
        top.sort();
        self.top = Some(TopJournals {
            max_distinct_drugs: max,
            journals: top,
        });
        Ok(())
    }

    /// The part itself when its rows fit the budget (or it holds one name), else its rows
    /// split again by the bytes its drugs took, into parts that fit.
    fn split(
        &self,
        dir: &Path,
        part: Part,
        drugs: &[(Option<String>, String)],
        splits: &mut usize,
    ) -> io::Result<Vec<Part>> {
        let bytes = |pos: usize| self.drug_bytes[self.order[pos] as usize];
        let held: u64 = part.range.clone().map(bytes).sum();
        let limit = range_budget(self.rows_budget);
        if held <= limit {
            return Ok(vec![part]);
        }
        let name = |pos: usize| &drugs[self.order[pos] as usize].1;
        let ranges = cut(part.range.clone(), limit, bytes, |pos| {
            pos > part.range.start && name(pos) == name(pos - 1)
        });
        let ranges = at_most(ranges, MAX_PARTS);
        if ranges.len() < 2 {
            return Ok(vec![part]);
        }
        *splits += 1;
        let prefix = format!("split-{splits}-");
        let mut writers = Writers::create(dir, &prefix, ranges, self.rows_budget)?;
        read_rows(&part.path, |chunk| {
            chunk
                .rows
                .iter()
                .try_for_each(|row| writers.write(&self.rank, &Row::of(&chunk, row)))
        })?;
        std::fs::remove_file(&part.path)?;
        writers.finish()
    }

    /// Reads a range's rows back into an in-memory graph of its drugs (made like
    /// `template`, with `spare`'s emptied buffers: pages the kernel need not hand out, and
    /// zero, again for every range), and removes its file.
    fn load(
        &self,
        part: Part,
        template: &GraphBuilder,
        spare: Option<(Vec<u8>, Vec<Record>)>,
    ) -> io::Result<(Part, BuiltGraph)> {
        let mut sub = template.empty_like();
        sub.drugs = template.drugs.clone();
        if let Some((text, records)) = spare {
            (sub.text, sub.records) = (text, records);
        }
        read_rows(&part.path, |chunk| {
            sub.accept_in_memory(chunk);
            Ok(())
        })?;
        std::fs::remove_file(&part.path)?;
        Ok((part, sub.finish_in_memory()))
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

    /// What the spill took: ranges, bytes on disk, ranges split again.
    pub(super) fn summary(&self) -> String {
        format!(
            "{} range(s) of drugs, {} MB on disk, {} range(s) split again; reading them back took {:.2}s",
            self.first_ranges,
            self.bytes / 1_000_000,
            self.splits,
            self.loading.as_secs_f64()
        )
    }

    /// The top journals, known once the graph is written.
    pub(super) fn top_journals(&self) -> TopJournals {
        self.top.clone().unwrap_or_default()
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
        let (out, top, report, spilled, _) = build_rows(plan, &rows());
        (out, top, report, spilled)
    }

    /// Builds and writes `rows`; also says how many ranges were split again.
    fn build_rows(
        plan: Option<SpillPlan>,
        rows: &[Row],
    ) -> (Vec<u8>, TopJournals, Report, bool, usize) {
        let mut b = GraphBuilder::new(drugs()).unwrap();
        if let Some(plan) = plan {
            b = b.with_budget(plan);
        }
        // One row a chunk: the spill starts in the middle of the input.
        b.add_rows(rows);
        let spilled = b.spilled();
        let mut built = b.finish();
        let mut out = Vec::new();
        built.write_json(&mut out, 2).unwrap();
        let splits = built.spilled.as_ref().map_or(0, |s| s.splits);
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
        (out, built.top_journals(), report, spilled, splits)
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
                input_rows: 0,
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
            input_rows: 0,
        };
        assert!(!build(Some(plan)).3, "a large budget stays in memory");
    }

    #[test]
    fn a_range_that_outgrows_the_budget_is_split_again_and_the_bytes_stay_the_same() {
        // The rows held when the spill begins mention one drug only, so the ranges cut from
        // them give every other drug almost nothing: the rows after pile into few ranges.
        let mut rows = rows();
        for (i, row) in rows.iter_mut().take(1_500).enumerate() {
            row.2 = format!("DRUG3 alone {i}");
        }
        let (memory, top, report, _, _) = build_rows(None, &rows);
        let dir = tempfile::tempdir().unwrap();
        let plan = SpillPlan {
            dir: dir.path().to_path_buf(),
            budget: 128 << 10,
            input_bytes: 0,
            input_rows: 0,
        };
        let (bytes, spilled_top, spilled_report, spilled, splits) = build_rows(Some(plan), &rows);
        assert!(spilled);
        assert!(splits > 0, "no range was split again");
        assert!(bytes == memory, "a split range changed the output");
        assert_eq!(spilled_top, top);
        assert_eq!(
            (
                spilled_report.merged,
                spilled_report.mentioning,
                spilled_report.mentions
            ),
            (report.merged, report.mentioning, report.mentions)
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn knowing_the_input_rows_cuts_ranges_that_fit_without_a_second_split() {
        let (memory, ..) = build(None);
        let dir = tempfile::tempdir().unwrap();
        let rows = rows();
        for budget in [128 << 10, 512 << 10] {
            let plan = SpillPlan {
                dir: dir.path().to_path_buf(),
                budget,
                input_bytes: 0,
                input_rows: rows.len() as u64,
            };
            let (bytes, _, _, spilled, splits) = build_rows(Some(plan), &rows);
            assert!(spilled && bytes == memory);
            assert_eq!(splits, 0, "a range was split again at budget {budget}");
        }
    }

    #[test]
    fn ranges_are_joined_down_to_the_most_files_a_spill_opens() {
        let ranges: Vec<Range<usize>> = (0..10).map(|i| i * 3..i * 3 + 3).collect();
        assert_eq!(at_most(ranges.clone(), 10), ranges);
        let joined = at_most(ranges, 4);
        assert!(joined.len() <= 4);
        assert_eq!(joined.first().map(|r| r.start), Some(0));
        assert_eq!(joined.last().map(|r| r.end), Some(30));
        assert!(joined.windows(2).all(|w| w[0].end == w[1].start));
    }

    #[test]
    fn only_spill_folders_left_by_killed_runs_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let age = |path: &Path, secs: u64| {
            let then = std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
            File::open(path).unwrap().set_modified(then).unwrap();
        };
        // Left by a killed run: unlocked and old.
        let left = dir.path().join(format!("{SPILL_PREFIX}left"));
        std::fs::create_dir(&left).unwrap();
        std::fs::write(left.join("range-0"), b"rows").unwrap();
        age(&left, 600);
        // In use by a live build, however old.
        let (live, _lock) = locked_folder(dir.path()).unwrap();
        age(live.path(), 600);
        // Just made: not locked yet, perhaps.
        let fresh = dir.path().join(format!("{SPILL_PREFIX}fresh"));
        std::fs::create_dir(&fresh).unwrap();
        // Not a spill folder.
        let other = dir.path().join("keep");
        std::fs::create_dir(&other).unwrap();
        age(&other, 600);
        assert_eq!(sweep_stale(dir.path()), 1);
        assert!(!left.exists());
        assert!(live.path().exists() && fresh.exists() && other.exists());
        assert_eq!(sweep_stale(&dir.path().join("missing")), 0);
    }

    #[test]
    fn a_spilled_graph_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = GraphBuilder::new(drugs()).unwrap().with_budget(SpillPlan {
            dir: dir.path().to_path_buf(),
            budget: 64 << 10,
            input_bytes: 0,
            input_rows: 0,
        });
        b.add_rows(&rows());
        let mut built = b.finish();
        built.write_json(&mut Vec::new(), 1).unwrap();
        // The rows were read back and their files removed as the ranges were written.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let again = built.write_json(&mut Vec::new(), 1).unwrap_err();
        assert!(again.to_string().contains("written already"), "{again}");
    }

    #[test]
    fn the_spill_folder_goes_with_a_builder_dropped_half_way() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = GraphBuilder::new(drugs()).unwrap().with_budget(SpillPlan {
            dir: dir.path().to_path_buf(),
            budget: 16 << 10,
            input_bytes: 0,
            input_rows: 0,
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
            input_rows: 0,
        });
        b.add_rows(&rows()[..1]);
        let mut built = b.finish();
        assert!(built.write_json(&mut Vec::new(), 1).is_err());
    }
}
