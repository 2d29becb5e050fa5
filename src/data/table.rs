//! Columns of an imported table: their types (given or inferred from a sample), and the
//! builder that turns rows of text or JSON cells into Arrow record batches, refusing a row
//! whole (with a reason) when a cell does not fit its column.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::exact::{self, exact_float, exact_int};

/// Rows per record batch.
pub const BATCH_ROWS: usize = 8192;
/// Rows looked at to infer column types.
pub const SAMPLE_ROWS: usize = 1000;

/// A column type, as given in a task's `schema:` or inferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// Text (the fallback for mixed columns).
    String,
    /// 64-bit integer.
    Int,
    /// 64-bit float.
    Float,
    /// true/false.
    Bool,
}

impl ColumnType {
    fn arrow(self) -> DataType {
        match self {
            Self::String => DataType::Utf8,
            Self::Int => DataType::Int64,
            Self::Float => DataType::Float64,
            Self::Bool => DataType::Boolean,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int => "int",
            Self::Float => "float",
            Self::Bool => "bool",
        }
    }

    /// The narrowest type holding both.
    fn widen(self, other: ColumnType) -> ColumnType {
        use ColumnType::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Int, Float) | (Float, Int) => Float,
            _ => String,
        }
    }
}

/// One cell as read.
#[derive(Clone, Copy, Debug)]
pub enum Cell<'a> {
    /// Absent or empty.
    Null,
    /// CSV text.
    Text(&'a str),
    /// A JSON value.
    Json(&'a Value),
}

impl Cell<'_> {
    fn kind(&self) -> Option<ColumnType> {
        match self {
            Cell::Null | Cell::Json(Value::Null) => None,
            Cell::Text(t) if t.trim().is_empty() => None,
            Cell::Text(t) => Some(text_kind(t.trim())),
            Cell::Json(Value::Bool(_)) => Some(ColumnType::Bool),
            Cell::Json(Value::Number(n)) if n.is_i64() => Some(ColumnType::Int),
            // Beyond i64 but held exactly as u64: only text keeps it.
            Cell::Json(Value::Number(n)) if n.is_u64() => Some(ColumnType::String),
            Cell::Json(Value::Number(_)) => Some(ColumnType::Float),
            Cell::Json(_) => Some(ColumnType::String),
        }
    }
}

/// The type of a trimmed, non-empty text: a number type only when it holds the value
/// exactly (`007`, `99999999999999999999` or `nan` stay text; see [`exact`]).
fn text_kind(t: &str) -> ColumnType {
    if exact_int(t).is_ok() {
        ColumnType::Int
    } else if exact_float(t).is_ok() {
        ColumnType::Float
    } else if t == "true" || t == "false" {
        ColumnType::Bool
    } else {
        ColumnType::String
    }
}

/// Largest magnitude up to which every integer is an `f64`.
const EXACT_FLOAT_INT: u64 = 1 << 53;

/// Whether an int cell is beyond what a float column could hold exactly.
fn beyond_float(cell: &Cell<'_>) -> bool {
    match cell {
        Cell::Text(t) => t
            .trim()
            .parse::<i64>()
            .is_ok_and(|v| v.unsigned_abs() > EXACT_FLOAT_INT),
        Cell::Json(Value::Number(n)) => n
            .as_i64()
            .is_some_and(|v| v.unsigned_abs() > EXACT_FLOAT_INT),
        _ => false,
    }
}

/// Infers each column's type from sample rows; all-null columns are strings. Ints and
/// floats together make a float column, unless an int is too big for a float: then text.
pub fn infer<'a>(
    columns: usize,
    rows: impl IntoIterator<Item = &'a [Cell<'a>]>,
) -> Vec<ColumnType> {
    let mut kinds: Vec<Option<ColumnType>> = vec![None; columns];
    let mut big = vec![false; columns];
    for row in rows {
        for ((k, big), cell) in kinds.iter_mut().zip(&mut big).zip(row) {
            if let Some(c) = cell.kind() {
                *k = Some(k.map_or(c, |prev| prev.widen(c)));
                *big |= c == ColumnType::Int && beyond_float(cell);
            }
        }
    }
    kinds
        .into_iter()
        .zip(big)
        .map(|(k, big)| match k {
            Some(ColumnType::Float) if big => ColumnType::String,
            k => k.unwrap_or(ColumnType::String),
        })
        .collect()
}

/// Marks the columns whose non-null sample values are all arrays or objects: those keep
/// them as JSON text. In any other column an array or object is rejected.
pub fn json_text_columns<'a>(
    columns: usize,
    rows: impl IntoIterator<Item = &'a [Cell<'a>]>,
) -> Vec<bool> {
    // None: nothing seen yet; Some(true): only nested values so far.
    let mut nested: Vec<Option<bool>> = vec![None; columns];
    for row in rows {
        for (n, cell) in nested.iter_mut().zip(row) {
            let is_nested = matches!(cell, Cell::Json(Value::Array(_) | Value::Object(_)));
            if is_nested || cell.kind().is_some() {
                *n = Some(n.unwrap_or(true) && is_nested);
            }
        }
    }
    nested.into_iter().map(|n| n == Some(true)).collect()
}

/// Builds the Arrow schema (every column nullable).
pub fn schema(names: &[String], types: &[ColumnType]) -> SchemaRef {
    let fields: Vec<Field> = names
        .iter()
        .zip(types)
        .map(|(n, t)| Field::new(n, t.arrow(), true))
        .collect();
    Arc::new(Schema::new(fields))
}

enum Column {
    S(StringBuilder),
    I(Int64Builder),
    F(Float64Builder),
    B(BooleanBuilder),
}

enum Typed<'a> {
    Null,
    S(std::borrow::Cow<'a, str>),
    I(i64),
    F(f64),
    B(bool),
}

/// Accumulates rows into record batches.
pub struct BatchBuilder {
    schema: SchemaRef,
    names: Vec<String>,
    types: Vec<ColumnType>,
    columns: Vec<Column>,
    /// Columns that keep arrays and objects as their JSON text (see [`json_text_columns`]).
    json_text: Vec<bool>,
    rows: usize,
}

impl BatchBuilder {
    /// A builder for these columns.
    pub fn new(names: Vec<String>, types: Vec<ColumnType>) -> Self {
        let schema = schema(&names, &types);
        let columns = types.iter().map(|t| new_column(*t)).collect();
        Self {
            schema,
            names,
            types,
            columns,
            json_text: Vec::new(),
            rows: 0,
        }
    }

    /// Makes the marked columns keep arrays and objects as their JSON text.
    pub fn keep_json_text(&mut self, columns: Vec<bool>) {
        self.json_text = columns;
    }

    /// The Arrow schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Column names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Rows buffered.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row is buffered.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Adds a row, or says why it does not fit (then nothing is added).
    pub fn push(&mut self, cells: &[Cell<'_>]) -> Result<(), String> {
        let mut typed = Vec::with_capacity(cells.len());
        let json_text = self.json_text.iter().chain(std::iter::repeat(&false));
        let columns = cells
            .iter()
            .zip(&self.types)
            .zip(&self.names)
            .zip(json_text);
        for (((cell, ty), name), &json) in columns {
            typed.push(convert(*cell, *ty, json).map_err(|why| format!("column '{name}': {why}"))?);
        }
        for (col, value) in self.columns.iter_mut().zip(typed) {
            append(col, value);
        }
        self.rows += 1;
        Ok(())
    }

    /// Takes the buffered rows as a batch.
    pub fn finish(&mut self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| -> ArrayRef {
                match c {
                    Column::S(b) => Arc::new(b.finish()),
                    Column::I(b) => Arc::new(b.finish()),
                    Column::F(b) => Arc::new(b.finish()),
                    Column::B(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

fn new_column(t: ColumnType) -> Column {
    match t {
        ColumnType::String => Column::S(StringBuilder::new()),
        ColumnType::Int => Column::I(Int64Builder::new()),
        ColumnType::Float => Column::F(Float64Builder::new()),
        ColumnType::Bool => Column::B(BooleanBuilder::new()),
    }
}

fn append(col: &mut Column, value: Typed<'_>) {
    match (col, value) {
        (Column::S(b), Typed::S(s)) => b.append_value(s),
        (Column::I(b), Typed::I(v)) => b.append_value(v),
        (Column::F(b), Typed::F(v)) => b.append_value(v),
        (Column::B(b), Typed::B(v)) => b.append_value(v),
        (Column::S(b), _) => b.append_null(),
        (Column::I(b), _) => b.append_null(),
        (Column::F(b), _) => b.append_null(),
        (Column::B(b), _) => b.append_null(),
    }
}

/// Converts a cell to its column's type, or says why it cannot without changing it.
/// Arrays and objects are taken, as JSON text, only in a `json_text` column.
fn convert(cell: Cell<'_>, ty: ColumnType, json_text: bool) -> Result<Typed<'_>, String> {
    use std::borrow::Cow;
    let not = |v: &str, note: String| {
        let v: String = v.chars().take(80).collect();
        format!("'{v}' is not {}{note}", ty.name())
    };
    // A JSON string in a typed column is read like CSV text ("11" in an int column).
    let cell = match cell {
        Cell::Json(Value::String(s)) if ty != ColumnType::String => Cell::Text(s.as_str()),
        other => other,
    };
    Ok(match (cell, ty) {
        (Cell::Null | Cell::Json(Value::Null), _) => Typed::Null,
        (Cell::Text(t), _) if t.trim().is_empty() => Typed::Null,
        (Cell::Json(v @ (Value::Array(_) | Value::Object(_))), ColumnType::String) if json_text => {
            Typed::S(Cow::Owned(v.to_string()))
        }
        // Among single values, a nested one is broken data: its JSON text is not a value
        // of the column (a title that is an array must not be matched as `["..."]`).
        (Cell::Json(v @ (Value::Array(_) | Value::Object(_))), _) => {
            let kind = if v.is_array() {
                "an array"
            } else {
                "an object"
            };
            let text: String = v.to_string().chars().take(80).collect();
            return Err(format!("{text} is {kind}, not a single value"));
        }
        (Cell::Text(t), ColumnType::String) => Typed::S(Cow::Borrowed(t)),
        (Cell::Json(Value::String(s)), ColumnType::String) => Typed::S(Cow::Borrowed(s)),
        (Cell::Json(v), ColumnType::String) => Typed::S(Cow::Owned(v.to_string())),
        (Cell::Text(t), ColumnType::Int) => {
            Typed::I(exact_int(t.trim()).map_err(|e| not(t, e.note()))?)
        }
        (Cell::Json(v), ColumnType::Int) => Typed::I(v.as_i64().ok_or_else(|| {
            let note = if v.is_u64() {
                exact::Inexact::TooBig.note()
            } else {
                String::new()
            };
            format!("{v} is not int{note}")
        })?),
        (Cell::Text(t), ColumnType::Float) => {
            Typed::F(exact_float(t.trim()).map_err(|e| not(t, e.note()))?)
        }
        // Integers beyond 2^53 are not all floats; the element's source text was checked
        // for fractions serde rounded (json_source).
        (Cell::Json(Value::Number(n)), ColumnType::Float) => {
            let exact = n.as_f64().filter(|_| n.is_f64()).or_else(|| {
                let v = n.as_f64()?;
                (v.abs() <= 9_007_199_254_740_992.0).then_some(v)
            });
            Typed::F(exact.ok_or_else(|| format!("{n} is not float (it would be rounded)"))?)
        }
        (Cell::Json(v), ColumnType::Float) => return Err(format!("{v} is not float")),
        (Cell::Text(t), ColumnType::Bool) => {
            Typed::B(t.trim().parse().map_err(|_| not(t, String::new()))?)
        }
        (Cell::Json(v), ColumnType::Bool) => {
            Typed::B(v.as_bool().ok_or_else(|| format!("{v} is not bool"))?)
        }
    })
}

/// The value at row `i` of an Arrow column as text (`None` for null), borrowed from the
/// batch for text columns; other types the import writes are formatted, the rest refused.
pub fn text_at(col: &dyn arrow_array::Array, i: usize) -> Result<Option<Cow<'_, str>>, String> {
    use arrow_array::{BooleanArray, Float64Array, Int64Array, StringArray};
    if col.is_null(i) {
        return Ok(None);
    }
    let any = col.as_any();
    if let Some(a) = any.downcast_ref::<StringArray>() {
        Ok(Some(Cow::Borrowed(a.value(i))))
    } else if let Some(a) = any.downcast_ref::<Int64Array>() {
        Ok(Some(Cow::Owned(a.value(i).to_string())))
    } else if let Some(a) = any.downcast_ref::<Float64Array>() {
        Ok(Some(Cow::Owned(a.value(i).to_string())))
    } else if let Some(a) = any.downcast_ref::<BooleanArray>() {
        Ok(Some(Cow::Owned(a.value(i).to_string())))
    } else {
        Err(format!("unsupported column type {}", col.data_type()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_ints_and_strings_infer_as_string() {
        let a = serde_json::json!(9);
        let b = serde_json::json!("11");
        let rows: Vec<Vec<Cell>> = vec![vec![Cell::Json(&a)], vec![Cell::Json(&b)]];
        assert_eq!(
            infer(1, rows.iter().map(Vec::as_slice)),
            vec![ColumnType::String]
        );
        let rows: Vec<Vec<Cell>> = vec![
            vec![Cell::Text("1"), Cell::Text("x")],
            vec![Cell::Text("2.5"), Cell::Text("")],
        ];
        assert_eq!(
            infer(2, rows.iter().map(Vec::as_slice)),
            vec![ColumnType::Float, ColumnType::String]
        );
    }

    fn inferred(rows: &[&[&str]]) -> Vec<ColumnType> {
        let rows: Vec<Vec<Cell>> = rows
            .iter()
            .map(|r| r.iter().map(|t| Cell::Text(t)).collect())
            .collect();
        infer(rows[0].len(), rows.iter().map(Vec::as_slice))
    }

    #[test]
    fn inference_keeps_as_text_what_a_number_type_would_change() {
        use ColumnType::*;
        let types = inferred(&[
            &[
                "99999999999999999999",
                "007",
                "1",
                "nan",
                "1e400",
                "9007199254740993",
            ],
            &["99999999999999999998", "008", "2", "1.5", "2.5", "0.5"],
        ]);
        assert_eq!(types, vec![String, String, Int, String, String, String]);
        // Ints small enough to be floats exactly do widen to float.
        assert_eq!(inferred(&[&["9007199254740992"], &["0.5"]]), vec![Float]);
        let (big, small) = (
            serde_json::json!(18446744073709551615u64),
            serde_json::json!(1),
        );
        let rows: Vec<Vec<Cell>> = vec![vec![Cell::Json(&big)], vec![Cell::Json(&small)]];
        assert_eq!(infer(1, rows.iter().map(Vec::as_slice)), vec![String]);
    }

    #[test]
    fn a_lossy_conversion_into_a_given_type_is_a_reject_with_the_reason() {
        let mut b = BatchBuilder::new(
            vec!["id".into(), "x".into()],
            vec![ColumnType::Int, ColumnType::Float],
        );
        let reasons: Vec<String> = [
            ["007", "1"],
            ["99999999999999999999", "1"],
            ["1", "1.00000000000000000001"],
            ["1", "1e400"],
        ]
        .iter()
        .map(|[a, x]| b.push(&[Cell::Text(a), Cell::Text(x)]).unwrap_err())
        .collect();
        assert_eq!(
            reasons,
            [
                "column 'id': '007' is not int (it would lose its leading zeros or sign)",
                "column 'id': '99999999999999999999' is not int (beyond the 64-bit range)",
                "column 'x': '1.00000000000000000001' is not float (it would become 1)",
                "column 'x': '1e400' is not float (it would become inf)",
            ]
        );
        let (big, nested) = (
            serde_json::json!(18446744073709551615u64),
            serde_json::json!(["a"]),
        );
        let err = b.push(&[Cell::Json(&big), Cell::Null]).unwrap_err();
        assert_eq!(
            err,
            "column 'id': 18446744073709551615 is not int (beyond the 64-bit range)"
        );
        let err = b.push(&[Cell::Null, Cell::Json(&nested)]).unwrap_err();
        assert_eq!(err, "column 'x': [\"a\"] is an array, not a single value");
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn a_json_id_beyond_i64_keeps_its_digits_as_text() {
        let id = serde_json::json!(18446744073709551615u64);
        let mut b = BatchBuilder::new(vec!["id".into()], vec![ColumnType::String]);
        b.push(&[Cell::Json(&id)]).unwrap();
        let batch = b.finish().unwrap();
        let text = text_at(batch.column(0).as_ref(), 0).unwrap();
        assert_eq!(text.as_deref(), Some("18446744073709551615"));
    }

    #[test]
    fn a_cell_that_does_not_fit_refuses_the_whole_row() {
        let mut b = BatchBuilder::new(
            vec!["id".into(), "name".into()],
            vec![ColumnType::Int, ColumnType::String],
        );
        b.push(&[Cell::Text("1"), Cell::Text("a")]).unwrap();
        let err = b.push(&[Cell::Text("x"), Cell::Text("b")]).unwrap_err();
        assert_eq!(err, "column 'id': 'x' is not int");
        assert_eq!(b.len(), 1);
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 1);
    }
}
