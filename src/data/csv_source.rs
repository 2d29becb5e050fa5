//! CSV sources: a header row, then records, read in one streaming pass (a sample of the
//! first rows is held to infer types). Tolerates a UTF-8 BOM and blank or whitespace-only
//! lines; a record with the wrong number of fields or invalid UTF-8 is rejected with its
//! line, never silently dropped.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use super::DataError;
use super::parquet_io::TableWriter;
use super::table::{Cell, SAMPLE_ROWS, infer};

/// Reads an open CSV file, `name` as the user named it (for messages and rejects), into
/// `out`. Files after the first must have the same columns. (An import of several files
/// reads them through one [`CsvReader`].)
pub fn read_csv(
    file: File,
    name: &str,
    delimiter: u8,
    out: &mut TableWriter,
) -> Result<(), DataError> {
    CsvReader::default().read(file, name, delimiter, out)
}

/// A CSV parser kept across the files of an import: building one costs about as much as
/// reading a small file, which a glob of a million small files would pay a million times.
#[derive(Default)]
pub struct CsvReader {
    /// The parser and the delimiter it was built for.
    parser: Option<(u8, csv::Reader<LineCounter>)>,
}

impl CsvReader {
    /// Reads an open CSV file into `out`, as [`read_csv`] does.
    pub fn read(
        &mut self,
        file: File,
        name: &str,
        delimiter: u8,
        out: &mut TableWriter,
    ) -> Result<(), DataError> {
        let csv_err = |e: csv::Error| DataError::Format(format!("{name}: {e}"));
        let reader = match &mut self.parser {
            Some((d, reader)) if *d == delimiter => reader,
            parser => {
                &mut parser
                    .insert((delimiter, new_parser(delimiter).map_err(csv_err)?))
                    .1
            }
        };
        reader.get_mut().start(file);
        // Clears the parser's buffer and state and counts bytes and lines from 0 again.
        reader
            .seek_raw(SeekFrom::Start(0), csv::Position::new())
            .map_err(csv_err)?;
        let read = read_records(reader, name, delimiter, out);
        // The file is closed even when reading it failed.
        let file = reader.get_mut().stop();
        let last = read?;
        let mut file = file.ok_or_else(|| DataError::Format(format!("{name}: file lost")))?;
        if ends_in_open_quote(&mut file, last.1, delimiter).map_err(|e| DataError::io(name, e))? {
            return Err(DataError::Format(format!(
                "{name}: line {}: a quoted field is never closed (the quote runs to the end of the file)",
                last.0
            )));
        }
        Ok(())
    }
}

/// A parser for `delimiter`, fed by a [`LineCounter`] holding no file yet, and already
/// moved past its header logic (this module reads headers itself): every file then starts
/// with a rewind.
fn new_parser(delimiter: u8) -> Result<csv::Reader<LineCounter>, csv::Error> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .buffer_capacity(1 << 20)
        .from_reader(LineCounter::default());
    reader.seek_raw(SeekFrom::Start(0), csv::Position::new())?;
    Ok(reader)
}

/// Reads the header and records of the file `reader` has just started; returns the (line,
/// byte offset) of the last record, which only can run into the end of the file inside a
/// quote (the csv crate takes the end of the file for the end of the field).
fn read_records(
    reader: &mut csv::Reader<LineCounter>,
    name: &str,
    delimiter: u8,
    out: &mut TableWriter,
) -> Result<(u64, u64), DataError> {
    out.start_file(name);
    let mut record = csv::ByteRecord::new();
    let csv_err = |e: csv::Error| DataError::Format(format!("{name}: {e}"));
    let mut last: (u64, u64);
    let header = loop {
        if !reader.read_byte_record(&mut record).map_err(csv_err)? {
            return Err(DataError::Format(format!(
                "{name}: empty file, expected a header row"
            )));
        }
        last = (line_of(reader, &record), start_of(&record));
        if record.len() > 1 && is_blank(&record) {
            return Err(DataError::Format(format!(
                "{name}: line {}: the header has only delimiters, no column names",
                last.0
            )));
        }
        if !is_blank(&record) {
            break header_names(&record, name)?;
        }
        out.stats.blank += 1;
    };
    let mut sample = Vec::new();
    while sample.len() < SAMPLE_ROWS && reader.read_byte_record(&mut record).map_err(csv_err)? {
        last = (line_of(reader, &record), start_of(&record));
        sample.push((last.0, record.clone()));
    }
    if out.started() {
        if out.names() != header.as_slice() {
            return Err(DataError::Format(format!(
                "{name}: columns {header:?} differ from the first file's {:?}",
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
        last = (line_of(reader, &record), start_of(&record));
        handle(last.0, &record, width, delimiter, out)?;
    }
    out.stats.blank += reader.get_ref().empty_lines();
    Ok(last)
}

fn start_of(record: &csv::ByteRecord) -> u64 {
    record.position().map_or(0, csv::Position::byte)
}

/// Whether the record starting at byte `from` of the file ends inside a quoted field, i.e.
/// its quote is never closed. Follows the csv crate's rules: a field is quoted when it starts
/// with `"`, `""` inside it is a quote, and after the closing quote the field runs on
/// unquoted to the next delimiter or line end. Reads the file already open (not its path
/// again: the file may have been renamed or removed since it was opened).
fn ends_in_open_quote(file: &mut File, from: u64, delimiter: u8) -> std::io::Result<bool> {
    #[derive(PartialEq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    file.seek(SeekFrom::Start(from))?;
    // A buffered reader's buffer is not zeroed first (a zeroed array per file shows in
    // imports of many small files).
    let mut file = BufReader::with_capacity(64 * 1024, file);
    let mut state = State::FieldStart;
    loop {
        let buf = file.fill_buf()?;
        let n = buf.len();
        if n == 0 {
            return Ok(state == State::Quoted);
        }
        for &b in buf {
            let end = b == delimiter || b == b'\n' || b == b'\r';
            state = match state {
                State::Quoted if b == b'"' => State::QuoteInQuoted,
                State::Quoted => State::Quoted,
                State::QuoteInQuoted if b == b'"' => State::Quoted,
                State::FieldStart if b == b'"' => State::Quoted,
                _ if end => State::FieldStart,
                _ => State::Unquoted,
            };
        }
        file.consume(n);
    }
}

fn line_of(reader: &csv::Reader<LineCounter>, record: &csv::ByteRecord) -> u64 {
    record
        .position()
        .map_or(0, |p| reader.get_ref().line_at(p.byte()))
}

/// The file being read, under the parser: tracks where lines start as bytes pass, so a
/// record's byte offset gives its line (the csv crate's own line count skips blank lines).
/// Only offsets not yet asked about are kept.
#[derive(Default)]
struct LineCounter {
    file: Option<File>,
    state: RefCell<LineState>,
}

#[derive(Default)]
struct LineState {
    read: u64,
    /// Offsets of the `\n`s not yet passed, with [`AFTER_CR`] set on those ending `\r\n`.
    newlines: VecDeque<u64>,
    passed: u64,
    empty: u64,
    /// Whether the last byte read was `\r` (a `\r\n` can straddle two reads).
    last_cr: bool,
}

/// Flag bit on a newline offset: the line ends with `\r\n`.
const AFTER_CR: u64 = 1 << 63;

impl LineCounter {
    /// Starts on `file`, counting from its first byte.
    fn start(&mut self, file: File) {
        self.file = Some(file);
        *self.state.get_mut() = LineState::default();
    }

    /// Gives the file back; reads then see an end.
    fn stop(&mut self) -> Option<File> {
        self.file.take()
    }

    /// 1-based line of the byte at `offset`; offsets must not decrease between calls.
    fn line_at(&self, offset: u64) -> u64 {
        let mut st = self.state.borrow_mut();
        while st.newlines.front().is_some_and(|&n| n & !AFTER_CR < offset) {
            st.newlines.pop_front();
            st.passed += 1;
        }
        // The csv crate ends a record at the `\r` of a `\r\n` and reports the next one at the
        // `\n`, which still belongs to the line before.
        let mut at = offset;
        if st.newlines.front() == Some(&(offset | AFTER_CR)) {
            st.newlines.pop_front();
            st.passed += 1;
            at += 1;
        }
        // It reports a record that follows empty lines at the first of them: an empty line
        // is a `\n` at `at`, or a `\r\n` whose `\n` is at `at + 1`.
        while let Some(&n) = st.newlines.front() {
            if n == at {
                at += 1;
            } else if n == (at + 1) | AFTER_CR {
                at += 2;
            } else {
                break;
            }
            st.newlines.pop_front();
            st.passed += 1;
            st.empty += 1;
        }
        st.passed + 1
    }

    /// Empty lines the csv crate skipped before the records asked about so far.
    fn empty_lines(&self) -> u64 {
        self.state.borrow().empty
    }
}

impl Read for LineCounter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(file) = self.file.as_mut() else {
            return Ok(0);
        };
        let n = file.read(buf)?;
        let st = self.state.get_mut();
        let (base, last_cr) = (st.read, st.last_cr);
        let data = &buf[..n];
        st.newlines
            .extend(memchr::memchr_iter(b'\n', data).map(|i| {
                let cr = if i == 0 {
                    last_cr
                } else {
                    data[i - 1] == b'\r'
                };
                (base + i as u64) | if cr { AFTER_CR } else { 0 }
            }));
        if let Some(&last) = data.last() {
            st.last_cr = last == b'\r';
        }
        st.read += n as u64;
        Ok(n)
    }
}

/// The parser rewinds its source when it starts a file (see [`CsvReader::read`]): the file
/// has just been opened, so there is nothing to move. Nothing else seeks it.
impl Seek for LineCounter {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        match to {
            SeekFrom::Start(0) => Ok(0),
            _ => Err(std::io::Error::other("a CSV source is only rewound")),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::table::BATCH_ROWS;

    /// Imports `text`; returns the (line, raw) of each rejected row and the blank lines.
    fn import(text: &str) -> (Vec<(u64, String)>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        std::fs::write(&input, text).unwrap();
        let files =
            ["out.parquet", "out.rejects"].map(|f| File::create(dir.path().join(f)).unwrap());
        let [parquet, rejects] = files;
        let mut out = TableWriter::new(parquet, rejects, Vec::new(), "t");
        read_csv(File::open(&input).unwrap(), "in.csv", b',', &mut out).unwrap();
        let blank = out.finish().unwrap().blank;
        let rejected = std::fs::read_to_string(dir.path().join("out.rejects"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["line"].as_u64().unwrap(),
                    v["raw"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (rejected, blank)
    }

    #[test]
    fn a_cancelled_import_stops_at_the_next_batch() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        let rows: String = (0..3 * BATCH_ROWS).map(|i| format!("{i}\n")).collect();
        std::fs::write(&input, format!("n\n{rows}")).unwrap();
        let [parquet, rejects] =
            ["out.parquet", "out.rejects"].map(|f| File::create(dir.path().join(f)).unwrap());
        let checks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = std::sync::Arc::clone(&checks);
        // Cancelled from the second batch on.
        let mut out = TableWriter::new(parquet, rejects, Vec::new(), "t")
            .stop_when(move || seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 1);
        let err = read_csv(File::open(&input).unwrap(), "in.csv", b',', &mut out).unwrap_err();
        assert!(matches!(err, DataError::Cancelled(_)), "{err}");
        assert_eq!(err.to_string(), "importing t stopped");
        assert_eq!(
            out.stats.rows as usize,
            2 * BATCH_ROWS,
            "it read one batch more"
        );
    }

    #[test]
    fn one_parser_reads_file_after_file_each_from_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            ("a.csv", "a,b\n1,2\n\nbad\n3,\"x\ny\"\n", b','),
            ("b.tsv", "a\tb\n\n4\t5\nworse\n", b'\t'),
            ("c.csv", "a,b\r\n6,7\r\nlast\r\n", b','),
        ];
        let [parquet, rejects] =
            ["out.parquet", "out.rejects"].map(|f| File::create(dir.path().join(f)).unwrap());
        let mut out = TableWriter::new(parquet, rejects, Vec::new(), "t");
        let mut csv = CsvReader::default();
        for (name, text, delimiter) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
            let file = File::open(dir.path().join(name)).unwrap();
            csv.read(file, name, delimiter, &mut out).unwrap();
        }
        std::fs::write(dir.path().join("d.csv"), "a,b\n8,\"open\n").unwrap();
        let file = File::open(dir.path().join("d.csv")).unwrap();
        let err = csv.read(file, "d.csv", b',', &mut out).unwrap_err();
        assert_eq!(
            err.to_string(),
            "d.csv: line 2: a quoted field is never closed (the quote runs to the end of the file)"
        );
        let stats = out.finish().unwrap();
        assert_eq!((stats.rows, stats.blank), (5, 2));
        let rejected: Vec<(String, u64)> = std::fs::read_to_string(dir.path().join("out.rejects"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["file"].as_str().unwrap().into(),
                    v["line"].as_u64().unwrap(),
                )
            })
            .collect();
        let expected = [("a.csv", 4), ("b.tsv", 4), ("c.csv", 3)].map(|(f, l)| (f.into(), l));
        assert_eq!(rejected, expected);
    }

    #[test]
    fn rejected_rows_carry_their_line_after_blank_lines_lf_or_crlf() {
        let lf = "a,b\n1,2\n\n\nbad\n3,4\n  \nworse\n";
        let expected = (vec![(5, "bad".to_string()), (8, "worse".to_string())], 3);
        assert_eq!(import(lf), expected);
        assert_eq!(import(&lf.replace('\n', "\r\n")), expected);
    }

    #[test]
    fn a_crlf_split_across_reads_still_counts_as_one_line_end() {
        // Reads come in power-of-two sizes: put the `\r` of a `\r\n` as the last byte of the
        // first MiB and its `\n` as the first byte of the next.
        let mut text = String::from("a,b\r\n");
        while text.len() < (1 << 20) - 100 {
            text.push_str("x,y\r\n");
        }
        let rows = text.lines().count() as u64;
        let pad = (1 << 20) - 3 - text.len();
        text.push_str(&"z".repeat(pad));
        text.push_str(",z\r\n\r\nbad\r\n");
        assert_eq!(text.as_bytes()[(1 << 20) - 1], b'\r');
        assert_eq!(import(&text), (vec![(rows + 3, "bad".to_string())], 1));
    }
}

#[cfg(test)]
mod import_tests {
    use super::*;
    use crate::data::testing::{Imported, import};

    pub(super) fn import_csv(text: &str) -> Result<Imported, DataError> {
        import("t.csv", text.as_bytes(), |f, name, out| {
            read_csv(f, name, b',', out)
        })
    }

    fn column(t: &Imported, i: usize) -> Vec<&str> {
        t.rows
            .iter()
            .map(|r| r[i].as_deref().unwrap_or(""))
            .collect()
    }

    #[test]
    fn an_unclosed_quote_fails_the_import_with_its_line() {
        let err =
            import_csv("atccode,drug\nA04AD,DIPHENHYDRAMINE\nV03AB,\"ETHANOL\nA03BA,ATROPINE\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.ends_with("/t.csv: line 3: a quoted field is never closed (the quote runs to the end of the file)"),
            "{err}"
        );
        let err = import_csv("a,\"b\n1,2\n").unwrap_err().to_string();
        assert!(err.ends_with("/t.csv: line 1: a quoted field is never closed (the quote runs to the end of the file)"), "{err}");
    }

    #[test]
    fn closed_quotes_with_line_breaks_escapes_and_trailing_text_are_fine() {
        for text in [
            "a,b\n1,\"two\nlines\"\n",
            "a,b\n1,\"say \"\"hi\"\"\"",
            "a,b\n1,\"x\"y\"\n",
            "a,b\n1,\"x\"\"\"\n\n\n",
            "a,b\n\"1\",\"\"\r\n",
        ] {
            let t = import_csv(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(t.rows.len(), 1, "{text:?}");
        }
    }

    #[test]
    fn a_header_of_only_delimiters_is_an_error_not_skipped() {
        let err = import_csv("\n,,\na,b,c\n1,2,3\n").unwrap_err().to_string();
        assert!(
            err.ends_with("/t.csv: line 2: the header has only delimiters, no column names"),
            "{err}"
        );
    }

    #[test]
    fn more_columns_than_the_warehouse_allows_fail_with_the_count() {
        let header: Vec<String> = (0..2500).map(|i| format!("c{i}")).collect();
        let err = import_csv(&format!("{}\n", header.join(","))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t: 2500 columns, more than the 2000 a warehouse table can hold"
        );
    }

    #[test]
    fn generated_broken_csv_never_panics_and_errors_name_the_file() {
        let mut corpus = crate::data::testing::Corpus::new(7);
        let mut outcomes = [0; 2];
        for _ in 0..400 {
            let text = corpus.text("a1,\"\n\r ", 40);
            let result = import_csv(&text);
            outcomes[usize::from(result.is_err())] += 1;
            if let Err(e) = result {
                let e = e.to_string();
                assert!(
                    e.contains("t.csv: ") || e.starts_with("t: "),
                    "{text:?}: {e}"
                );
            }
        }
        assert!(outcomes[0] > 20 && outcomes[1] > 20, "ok/err: {outcomes:?}");
    }

    #[test]
    fn numeric_looking_ids_keep_their_text() {
        let t = import_csv("id,code,n\n99999999999999999999,007,1\n12345678901234567890,010,2\n")
            .unwrap();
        assert_eq!(t.columns, ["id:Utf8", "code:Utf8", "n:Int64"]);
        assert_eq!(
            column(&t, 0),
            ["99999999999999999999", "12345678901234567890"]
        );
        assert_eq!(column(&t, 1), ["007", "010"]);
    }
}
