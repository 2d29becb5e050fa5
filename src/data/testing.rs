//! Test helpers for the readers: import a text into a table and read back what was kept.

use std::fs::File;
use std::path::Path;

use super::DataError;
use super::parquet_io::{ImportStats, TableWriter, read_batches};
use super::table::text_at;

/// What an import kept and refused.
#[derive(Debug, Default)]
pub struct Imported {
    /// Column names and Arrow types, as `name:type`.
    pub columns: Vec<String>,
    /// Every cell as text (`None` for null).
    pub rows: Vec<Vec<Option<String>>>,
    /// (line, reason) of each rejected row.
    pub rejects: Vec<(u64, String)>,
    /// Counts.
    pub stats: ImportStats,
}

/// Writes `text` to `file_name` in a temporary folder and imports it with `read`.
pub fn import(
    file_name: &str,
    text: &[u8],
    read: impl Fn(&Path, &mut TableWriter) -> Result<(), DataError>,
) -> Result<Imported, DataError> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join(file_name);
    std::fs::write(&input, text).unwrap();
    let [parquet, rejects] =
        ["t.parquet", "t.rejects"].map(|f| File::create(dir.path().join(f)).unwrap());
    let mut out = TableWriter::new(parquet, rejects, Vec::new(), "t");
    read(&input, &mut out)?;
    let stats = out.finish()?;
    let mut imported = Imported {
        stats,
        ..Imported::default()
    };
    let batches = read_batches(&dir.path().join("t.parquet")).unwrap();
    imported.columns = arrow_array::RecordBatchReader::schema(&batches)
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect();
    for batch in batches {
        let batch = batch.unwrap();
        for i in 0..batch.num_rows() {
            let row = batch
                .columns()
                .iter()
                .map(|c| text_at(c.as_ref(), i).unwrap().map(|t| t.into_owned()));
            imported.rows.push(row.collect());
        }
    }
    let rejected = std::fs::read_to_string(dir.path().join("t.rejects")).unwrap();
    for l in rejected.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let reason = v["reason"].as_str().unwrap().to_string();
        imported.rejects.push((v["line"].as_u64().unwrap(), reason));
    }
    Ok(imported)
}
