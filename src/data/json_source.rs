//! JSON sources: one array of objects (tolerating a trailing comma before `]`, as in the
//! seed's `pubmed.json`) or newline-delimited objects. A streaming scanner cuts the input
//! into top-level elements without holding the file; each element is parsed on its own, so
//! a bad one is rejected with its line while a broken structure (unclosed array, garbage
//! between elements) fails the import with its line and column.

use std::fs::File;
use std::io::{BufRead, BufReader};

use serde_json::{Map, Value};

use super::DataError;
use super::exact::inexact_json_number;
use super::parquet_io::TableWriter;
use super::table::{Cell, SAMPLE_ROWS, infer, json_text_columns};

/// Reads an open JSON file, `name` as the user named it (for messages and rejects), into
/// `out`.
pub fn read_json(file: File, name: &str, out: &mut TableWriter) -> Result<(), DataError> {
    out.start_file(name);
    let mut scanner = Scanner::new(BufReader::with_capacity(1 << 20, file), name.to_string());
    let mut sample: Vec<(u64, Vec<u8>)> = Vec::new();
    while sample.len() < SAMPLE_ROWS {
        match scanner.next_element()? {
            Some(e) => sample.push(e),
            None => break,
        }
    }
    if !out.started() {
        let parsed: Vec<Map<String, Value>> = sample
            .iter()
            .filter_map(|(_, b)| serde_json::from_slice::<Map<String, Value>>(b).ok())
            .collect();
        let mut names: Vec<String> = Vec::new();
        for obj in &parsed {
            for k in obj.keys() {
                if !names.contains(k) {
                    names.push(k.clone());
                }
            }
        }
        let rows: Vec<Vec<Cell>> = parsed
            .iter()
            .map(|o| {
                names
                    .iter()
                    .map(|n| o.get(n).map_or(Cell::Null, Cell::Json))
                    .collect()
            })
            .collect();
        if names.is_empty() {
            // Nothing to take columns from: an empty input may be one of several (a glob),
            // so it is noted, and the import fails only if no input has columns.
            if sample.is_empty() {
                let shape = if scanner.array {
                    "holds an empty array"
                } else {
                    "is empty"
                };
                out.note_empty(format!("{name} {shape}"));
                return Ok(());
            }
            return Err(DataError::Format(format!(
                "{name}: none of the first {} element(s) is an object with keys, so there are no columns",
                sample.len()
            )));
        }
        let types = infer(names.len(), rows.iter().map(Vec::as_slice));
        let json_text = json_text_columns(names.len(), rows.iter().map(Vec::as_slice));
        out.begin(names, types)?;
        out.keep_json_text(json_text);
    }
    let names = out.names().to_vec();
    for (line, bytes) in sample {
        handle(line, &bytes, &names, out)?;
    }
    while let Some((line, bytes)) = scanner.next_element()? {
        handle(line, &bytes, &names, out)?;
    }
    Ok(())
}

fn handle(
    line: u64,
    bytes: &[u8],
    names: &[String],
    out: &mut TableWriter,
) -> Result<(), DataError> {
    let raw = || String::from_utf8_lossy(bytes).into_owned();
    let obj = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(obj)) => obj,
        Ok(other) => {
            let kind = match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                _ => "a scalar",
            };
            return out.reject(line, &raw(), &format!("element is {kind}, not an object"));
        }
        Err(e) => {
            let at = line + e.line().saturating_sub(1) as u64;
            return out.reject(
                line,
                &raw(),
                &format!("invalid JSON at line {at} column {}: {e}", e.column()),
            );
        }
    };
    // serde holds integers within 64 bits exactly and everything else as an f64: only an
    // element with an f64 needs its source text checked for a number that f64 changed.
    if obj.values().any(holds_f64)
        && let Some(why) = inexact_json_number(bytes)
    {
        return out.reject(line, &raw(), &why);
    }
    let cells: Vec<Cell> = names
        .iter()
        .map(|n| obj.get(n).map_or(Cell::Null, Cell::Json))
        .collect();
    out.row(line, &cells, raw)
}

fn holds_f64(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(holds_f64),
        Value::Object(o) => o.values().any(holds_f64),
        _ => false,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Start,
    Array { opened: u64 },
    Lines,
    Done,
}

/// Cuts a JSON stream into top-level elements.
struct Scanner<R> {
    reader: R,
    line: u64,
    column: u64,
    mode: Mode,
    path: String,
    /// Whether the input is an array (rather than newline-delimited objects).
    array: bool,
}

impl<R: BufRead> Scanner<R> {
    fn new(reader: R, path: String) -> Self {
        Self {
            reader,
            line: 1,
            column: 1,
            mode: Mode::Start,
            path,
            array: false,
        }
    }

    fn peek(&mut self) -> Result<Option<u8>, DataError> {
        let buf = self
            .reader
            .fill_buf()
            .map_err(|e| DataError::io(&self.path, e))?;
        Ok(buf.first().copied())
    }

    fn bump(&mut self, b: u8) {
        self.reader.consume(1);
        if b == b'\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
    }

    fn skip_space(&mut self) -> Result<Option<u8>, DataError> {
        while let Some(b) = self.peek()? {
            if !(b.is_ascii_whitespace()) {
                return Ok(Some(b));
            }
            self.bump(b);
        }
        Ok(None)
    }

    fn error(&self, what: &str) -> DataError {
        DataError::Format(format!(
            "{}: line {} column {}: {what}",
            self.path, self.line, self.column
        ))
    }

    /// The next element and the line it starts on.
    fn next_element(&mut self) -> Result<Option<(u64, Vec<u8>)>, DataError> {
        loop {
            match self.mode {
                Mode::Done => return Ok(None),
                Mode::Start => self.start()?,
                Mode::Array { opened } => {
                    let Some(b) = self.skip_space()? else {
                        return Err(self.error(&format!("unexpected end of file: the array opened at line {opened} is not closed")));
                    };
                    match b {
                        b']' => {
                            self.bump(b);
                            self.mode = Mode::Done;
                            self.expect_end()?;
                        }
                        b',' => self.bump(b),
                        _ => {
                            let element = self.element()?;
                            match self.skip_space()? {
                                Some(b',') | Some(b']') => {}
                                Some(other) => {
                                    return Err(self.error(&format!(
                                        "expected ',' or ']' after an array element, found '{}'",
                                        char::from(other)
                                    )));
                                }
                                None => {}
                            }
                            return Ok(Some(element));
                        }
                    }
                }
                Mode::Lines => {
                    match self.skip_space()? {
                        None => {
                            self.mode = Mode::Done;
                            continue;
                        }
                        // Not an object or array: the rest of the line is one bad element.
                        Some(b) if b != b'{' && b != b'[' => return self.rest_of_line().map(Some),
                        Some(_) => return self.element().map(Some),
                    }
                }
            }
        }
    }

    fn start(&mut self) -> Result<(), DataError> {
        if self
            .reader
            .fill_buf()
            .map_err(|e| DataError::io(&self.path, e))?
            .starts_with(b"\xEF\xBB\xBF")
        {
            self.reader.consume(3);
        }
        self.mode = match self.skip_space()? {
            None => Mode::Done,
            Some(b'[') => {
                self.bump(b'[');
                self.array = true;
                Mode::Array { opened: self.line }
            }
            Some(b'{') => Mode::Lines,
            Some(other) => {
                return Err(self.error(&format!(
                    "expected a JSON array or objects, found '{}'",
                    char::from(other)
                )));
            }
        };
        Ok(())
    }

    fn expect_end(&mut self) -> Result<(), DataError> {
        match self.skip_space()? {
            None => Ok(()),
            Some(b) => Err(self.error(&format!(
                "unexpected '{}' after the closing ']'",
                char::from(b)
            ))),
        }
    }

    fn rest_of_line(&mut self) -> Result<(u64, Vec<u8>), DataError> {
        let start = self.line;
        let mut out = Vec::new();
        while let Some(b) = self.peek()? {
            if b == b'\n' {
                break;
            }
            out.push(b);
            self.bump(b);
        }
        Ok((start, out))
    }

    /// Reads one value: a bracketed one up to its matching close, or a scalar up to a delimiter.
    fn element(&mut self) -> Result<(u64, Vec<u8>), DataError> {
        let start = self.line;
        let mut out = Vec::new();
        let mut depth = 0u32;
        let mut in_string = false;
        let mut escaped = false;
        loop {
            let Some(b) = self.peek()? else {
                if depth == 0 && !in_string && !out.is_empty() {
                    return Ok((start, out));
                }
                return Err(self.error(&format!(
                    "unexpected end of file in the element starting at line {start}"
                )));
            };
            if in_string {
                in_string = b != b'"' || escaped;
                escaped = b == b'\\' && !escaped;
            } else {
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 0 => depth -= 1,
                    b',' | b']' | b'}' if depth == 0 => return Ok((start, out)),
                    b if depth == 0 && b.is_ascii_whitespace() && !out.is_empty() => {
                        return Ok((start, out));
                    }
                    _ => {}
                }
            }
            out.push(b);
            self.bump(b);
            if depth == 0 && !in_string && matches!(b, b'}' | b']') {
                return Ok((start, out));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elements(text: &str) -> Result<Vec<(u64, String)>, DataError> {
        let mut s = Scanner::new(text.as_bytes(), "t.json".into());
        let mut out = Vec::new();
        while let Some((line, bytes)) = s.next_element()? {
            out.push((line, String::from_utf8(bytes).unwrap()));
        }
        Ok(out)
    }

    #[test]
    fn arrays_with_a_trailing_comma_and_ndjson_are_read() {
        let e = elements("[\n {\"a\": 1},\n {\"a\": \"x,]}\"},\n]\n").unwrap();
        assert_eq!(
            e,
            vec![(2, "{\"a\": 1}".into()), (3, "{\"a\": \"x,]}\"}".into())]
        );
        let e = elements("\u{feff}{\"a\":1}\n\n{\"a\":2}\n").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].0, 3);
        assert!(elements("").unwrap().is_empty());
    }

    #[test]
    fn broken_structure_names_line_and_column() {
        let err = elements("[\n {\"a\": 1}\n {\"a\": 2}\n]")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "t.json: line 3 column 2: expected ',' or ']' after an array element, found '{'"
        );
        let err = elements("[\n {\"a\": 1},\n").unwrap_err().to_string();
        assert_eq!(
            err,
            "t.json: line 3 column 1: unexpected end of file: the array opened at line 1 is not closed"
        );
        let err = elements("hello").unwrap_err().to_string();
        assert_eq!(
            err,
            "t.json: line 1 column 1: expected a JSON array or objects, found 'h'"
        );
    }
}

#[cfg(test)]
mod import_tests {
    use super::*;
    use crate::data::testing::{Imported, import};

    fn import_json(text: &str) -> Result<Imported, DataError> {
        import("t.json", text.as_bytes(), read_json)
    }

    #[test]
    fn an_id_column_of_big_integers_keeps_every_digit() {
        let t = import_json(
            "[{\"id\": 18446744073709551615, \"n\": 1},\n {\"id\": 9223372036854775808, \"n\": 2}]",
        )
        .unwrap();
        assert_eq!(t.columns, ["id:Utf8", "n:Int64"]);
        let ids: Vec<_> = t.rows.iter().map(|r| r[0].as_deref()).collect();
        assert_eq!(
            ids,
            [Some("18446744073709551615"), Some("9223372036854775808")]
        );
        assert!(t.rejects.is_empty(), "{:?}", t.rejects);
    }

    #[test]
    fn an_input_without_objects_is_an_error_naming_file_and_table() {
        let err = |text: &str| import_json(text).unwrap_err().to_string();
        for (text, what) in [
            ("", "is empty"),
            ("  \n", "is empty"),
            ("[]", "holds an empty array"),
            ("[\n]\n", "holds an empty array"),
        ] {
            let e = err(text);
            assert!(e.starts_with("t: nothing to take columns from: /"), "{e}");
            assert!(e.ends_with(&format!("/t.json {what}")), "{e}");
        }
        let e = err("[1, \"x\", {}]");
        assert!(e.ends_with("/t.json: none of the first 3 element(s) is an object with keys, so there are no columns"), "{e}");
    }

    #[test]
    fn a_title_that_is_an_array_or_object_is_rejected_not_stringified() {
        let t = import_json(
            "[{\"id\": 1, \"title\": \"Aspirin\", \"tags\": [\"a\"]},\n {\"id\": 2, \"title\": [\"Aspirin\"]},\n {\"id\": 3, \"title\": {\"t\": 1}, \"tags\": {\"b\": 2}}]",
        )
        .unwrap();
        // A column of only arrays and objects keeps them as JSON text.
        assert_eq!(t.columns, ["id:Int64", "tags:Utf8", "title:Utf8"]);
        let kept = ["1", "[\"a\"]", "Aspirin"].map(|c| Some(c.to_string()));
        assert_eq!(t.rows, [kept.to_vec()]);
        assert_eq!(
            t.rejects,
            [
                (
                    2,
                    "column 'title': [\"Aspirin\"] is an array, not a single value".to_string()
                ),
                (
                    3,
                    "column 'title': {\"t\":1} is an object, not a single value".to_string()
                ),
            ]
        );
    }

    #[test]
    fn more_columns_than_the_warehouse_allows_fail_with_the_count() {
        let keys: Vec<String> = (0..2001).map(|i| format!("\"c{i}\": {i}")).collect();
        let err = import_json(&format!("{{{}}}", keys.join(","))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t: 2001 columns, more than the 2000 a warehouse table can hold"
        );
    }

    #[test]
    fn generated_broken_json_never_panics_and_errors_name_the_file() {
        let mut corpus = crate::data::testing::Corpus::new(11);
        let mut outcomes = [0; 2];
        for _ in 0..400 {
            let base = "[{\"id\": 1, \"t\": \"a\"},\n{\"id\": 2.5, \"t\": [1]}]";
            let text = corpus.mutate(base, "{}[]\",:1a \n-.e9", 3);
            let result = import_json(&text);
            outcomes[usize::from(result.is_err())] += 1;
            if let Err(e) = result {
                let e = e.to_string();
                assert!(
                    e.contains("t.json") || e.starts_with("t: "),
                    "{text:?}: {e}"
                );
            }
        }
        assert!(outcomes[0] > 20 && outcomes[1] > 20, "ok/err: {outcomes:?}");
    }

    #[test]
    fn floats_keep_their_exact_value() {
        // serde_json's default float parser gave 1.363409242341772e48 for the first, and
        // the second was refused as inexact (found by tests/integration/fuzz.rs).
        let t = import_json(
            "{\"x\": 1.3634092423417718e+48}\n{\"x\": -1138437394645142.2}\n{\"x\": 0.1}\n",
        )
        .unwrap();
        assert!(t.rejects.is_empty(), "{:?}", t.rejects);
        let xs: Vec<f64> = t
            .rows
            .iter()
            .map(|r| r[0].as_deref().unwrap().parse().unwrap())
            .collect();
        assert_eq!(xs, [1.3634092423417718e48, -1138437394645142.2, 0.1]);
        assert_eq!(
            xs[0].to_bits(),
            "1.3634092423417718e48".parse::<f64>().unwrap().to_bits()
        );
    }

    #[test]
    fn a_number_serde_would_round_is_a_reject_with_line_and_reason() {
        let t = import_json(
            "{\"id\": 1, \"x\": 0.5}\n{\"id\": 99999999999999999999, \"x\": 0.5}\n{\"id\": 3, \"x\": 1.00000000000000000001}\n",
        )
        .unwrap();
        assert_eq!(
            t.rows,
            [vec![Some("1".to_string()), Some("0.5".to_string())]]
        );
        assert_eq!(
            t.rejects,
            [
                (2, "number 99999999999999999999 is beyond 64-bit integers (quote it to keep it as text)".to_string()),
                (3, "number 1.00000000000000000001 would become 1 as a 64-bit float (quote it to keep it as text)".to_string()),
            ]
        );
    }
}
