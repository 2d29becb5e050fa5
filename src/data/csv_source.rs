//! CSV sources: a header row, then records, read in one streaming pass (a sample of the
//! first rows is held to infer types). Tolerates a UTF-8 BOM and blank or whitespace-only
//! lines; a record with the wrong number of fields or invalid UTF-8 is rejected with its
//! line, never silently dropped.

use std::fs::File;
use std::io::BufReader;
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
        .from_reader(BufReader::with_capacity(1 << 20, file));
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
        sample.push((line_of(&record), record.clone()));
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
        handle(line_of(&record), &record, width, delimiter, out)?;
    }
    Ok(())
}

fn line_of(record: &csv::ByteRecord) -> u64 {
    record.position().map_or(0, |p| p.line())
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
