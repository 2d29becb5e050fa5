//! CSV sources: a header row, then records, read in one streaming pass (a sample of the
//! first rows is held to infer types). Tolerates a UTF-8 BOM and blank or whitespace-only
//! lines; a record with the wrong number of fields or invalid UTF-8 is rejected with its
//! line, never silently dropped.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::DataError;
use super::parquet_io::TableWriter;
use super::table::{Cell, SAMPLE_ROWS, infer};

/// Reads a CSV file into `out`. Files after the first must have the same columns.
pub fn read_csv(path: &Path, delimiter: u8, out: &mut TableWriter) -> Result<(), DataError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|e| DataError::io(&shown, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(LineCounter::new(BufReader::with_capacity(1 << 20, file)));
    let mut record = csv::ByteRecord::new();
    let csv_err = |e: csv::Error| DataError::Format(format!("{shown}: {e}"));
    let header = loop {
        if !reader.read_byte_record(&mut record).map_err(csv_err)? {
            return Err(DataError::Format(format!(
                "{shown}: empty file, expected a header row"
            )));
        }
        if !is_blank(&record) {
            break header_names(&record, &shown)?;
        }
    };
    let mut sample = Vec::new();
    while sample.len() < SAMPLE_ROWS && reader.read_byte_record(&mut record).map_err(csv_err)? {
        sample.push((line_of(&reader, &record), record.clone()));
    }
    if out.started() {
        if out.names() != header.as_slice() {
            return Err(DataError::Format(format!(
                "{shown}: columns {header:?} differ from the first file's {:?}",
                out.names()
            )));
        }
    } else {
        let texts: Vec<Vec<&str>> = sample
            .iter()
            .filter(|(_, r)| r.len() == header.len())
            .filter_map(|(_, r)| r.iter().map(|f| std::str::from_utf8(f).ok()).collect())
            .collect();
        let cells: Vec<Vec<Cell>> = texts
            .iter()
            .map(|r| r.iter().map(|t| Cell::Text(t)).collect())
            .collect();
        let types = infer(header.len(), cells.iter().map(Vec::as_slice));
        out.begin(header.clone(), types)?;
    }
    let width = header.len();
    for (line, rec) in &sample {
        handle(*line, rec, width, delimiter, out)?;
    }
    while reader.read_byte_record(&mut record).map_err(csv_err)? {
        handle(line_of(&reader, &record), &record, width, delimiter, out)?;
    }
    out.stats.blank += reader.get_ref().empty_lines();
    Ok(())
}

fn line_of<R: Read>(reader: &csv::Reader<LineCounter<R>>, record: &csv::ByteRecord) -> u64 {
    record
        .position()
        .map_or(0, |p| reader.get_ref().line_at(p.byte()))
}

/// Tracks where lines start as bytes pass, so a record's byte offset gives its line (the
/// csv crate's own line count skips blank lines). Only offsets not yet asked about are kept.
struct LineCounter<R> {
    inner: R,
    state: RefCell<LineState>,
}

#[derive(Default)]
struct LineState {
    read: u64,
    newlines: VecDeque<u64>,
    passed: u64,
    empty: u64,
}

impl<R> LineCounter<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            state: RefCell::new(LineState::default()),
        }
    }

    /// 1-based line of the byte at `offset`; offsets must not decrease between calls.
    fn line_at(&self, offset: u64) -> u64 {
        let mut st = self.state.borrow_mut();
        while st.newlines.front().is_some_and(|&n| n < offset) {
            st.newlines.pop_front();
            st.passed += 1;
        }
        // The csv crate reports a record that follows empty lines at the first of them.
        let mut at = offset;
        while st.newlines.front() == Some(&at) {
            st.newlines.pop_front();
            st.passed += 1;
            st.empty += 1;
            at += 1;
        }
        st.passed + 1
    }

    /// Empty lines the csv crate skipped before the records asked about so far.
    fn empty_lines(&self) -> u64 {
        self.state.borrow().empty
    }
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let st = self.state.get_mut();
        let base = st.read;
        st.newlines.extend(
            buf[..n]
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| base + i as u64),
        );
        st.read += n as u64;
        Ok(n)
    }
}

fn is_blank(record: &csv::ByteRecord) -> bool {
    record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace))
}

fn header_names(record: &csv::ByteRecord, shown: &str) -> Result<Vec<String>, DataError> {
    let mut names: Vec<String> = Vec::with_capacity(record.len());
    for (i, field) in record.iter().enumerate() {
        let text = std::str::from_utf8(field)
            .map_err(|_| DataError::Format(format!("{shown}: the header is not valid UTF-8")))?;
        let mut name = text.trim_start_matches('\u{feff}').trim().to_string();
        if name.is_empty() {
            name = format!("column_{}", i + 1);
        }
        if names.contains(&name) {
            return Err(DataError::Format(format!(
                "{shown}: column '{name}' appears twice in the header"
            )));
        }
        names.push(name);
    }
    Ok(names)
}

fn handle(
    line: u64,
    rec: &csv::ByteRecord,
    width: usize,
    delimiter: u8,
    out: &mut TableWriter,
) -> Result<(), DataError> {
    if is_blank(rec) {
        out.stats.blank += 1;
        return Ok(());
    }
    let raw = || {
        let fields: Vec<String> = rec
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        fields.join(&char::from(delimiter).to_string())
    };
    if rec.len() != width {
        return out.reject(
            line,
            &raw(),
            &format!("expected {width} fields, found {}", rec.len()),
        );
    }
    let mut cells = Vec::with_capacity(width);
    for (i, field) in rec.iter().enumerate() {
        match std::str::from_utf8(field) {
            Ok(t) => cells.push(Cell::Text(t)),
            Err(_) => {
                return out.reject(line, &raw(), &format!("field {} is not valid UTF-8", i + 1));
            }
        }
    }
    out.row(line, &cells, raw)
}
