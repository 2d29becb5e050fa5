//! Test helpers for the readers: import a text into a table and read back what was kept.

use std::fs::File;

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

/// Writes `text` to `file_name` in a temporary folder and imports it with `read` (given the
/// open file and its full path as its name).
pub fn import(
    file_name: &str,
    text: &[u8],
    read: impl Fn(File, &str, &mut TableWriter) -> Result<(), DataError>,
) -> Result<Imported, DataError> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join(file_name);
    std::fs::write(&input, text).unwrap();
    let [parquet, rejects] =
        ["t.parquet", "t.rejects"].map(|f| File::create(dir.path().join(f)).unwrap());
    let mut out = TableWriter::new(parquet, rejects, Vec::new(), "t");
    let name = input.display().to_string();
    read(File::open(&input).unwrap(), &name, &mut out)?;
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
        assert_eq!(v["file"], name.as_str(), "a reject names its file");
        imported.rejects.push((v["line"].as_u64().unwrap(), reason));
    }
    Ok(imported)
}

/// A small deterministic generator (xorshift) for generated-input tests: the same seed gives
/// the same corpus, so a failure names a reproducible case.
pub struct Corpus(u64);

impl Corpus {
    /// A generator from `seed` (not 0).
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `base` with up to `edits` characters deleted or inserted (from `alphabet`), at random.
    pub fn mutate(&mut self, base: &str, alphabet: &str, edits: usize) -> String {
        let mut chars: Vec<char> = base.chars().collect();
        let extra: Vec<char> = alphabet.chars().collect();
        for _ in 0..=(self.next() % edits as u64) {
            let at = (self.next() % (chars.len() as u64 + 1)) as usize;
            if self.next().is_multiple_of(2) && at < chars.len() {
                chars.remove(at);
            } else {
                chars.insert(at, extra[(self.next() % extra.len() as u64) as usize]);
            }
        }
        chars.into_iter().collect()
    }

    /// A text of up to `max_len` characters drawn from `alphabet`.
    pub fn text(&mut self, alphabet: &str, max_len: usize) -> String {
        let chars: Vec<char> = alphabet.chars().collect();
        let len = (self.next() % (max_len as u64 + 1)) as usize;
        (0..len)
            .map(|_| chars[(self.next() % chars.len() as u64) as usize])
            .collect()
    }
}
