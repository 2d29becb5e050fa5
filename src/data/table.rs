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
            Cell::Json(Value::Number(_)) => Some(ColumnType::Float),
            Cell::Json(_) => Some(ColumnType::String),
        }
    }
}

fn text_kind(t: &str) -> ColumnType {
    if t.parse::<i64>().is_ok() {
        ColumnType::Int
    } else if t.parse::<f64>().is_ok() {
        ColumnType::Float
    } else if t == "true" || t == "false" {
        ColumnType::Bool
    } else {
        ColumnType::String
    }
}

/// Infers each column's type from sample rows; all-null columns are strings.
pub fn infer<'a>(
    columns: usize,
    rows: impl IntoIterator<Item = &'a [Cell<'a>]>,
) -> Vec<ColumnType> {
    let mut kinds: Vec<Option<ColumnType>> = vec![None; columns];
    for row in rows {
        for (k, cell) in kinds.iter_mut().zip(row) {
            if let Some(c) = cell.kind() {
                *k = Some(k.map_or(c, |prev| prev.widen(c)));
            }
        }
    }
    kinds
        .into_iter()
        .map(|k| k.unwrap_or(ColumnType::String))
        .collect()
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
            rows: 0,
        }
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
        for ((cell, ty), name) in cells.iter().zip(&self.types).zip(&self.names) {
            typed.push(
                convert(*cell, *ty)
                    .map_err(|v| format!("column '{name}': {v} is not {}", ty.name()))?,
            );
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

/// Converts a cell to its column's type; the error is the offending value, quoted.
fn convert(cell: Cell<'_>, ty: ColumnType) -> Result<Typed<'_>, String> {
    use std::borrow::Cow;
    let quoted = |s: &str| format!("'{}'", s.chars().take(80).collect::<String>());
    // A JSON string in a typed column is read like CSV text ("11" in an int column).
    let cell = match cell {
        Cell::Json(Value::String(s)) if ty != ColumnType::String => Cell::Text(s.as_str()),
        other => other,
    };
    Ok(match (cell, ty) {
        (Cell::Null | Cell::Json(Value::Null), _) => Typed::Null,
        (Cell::Text(t), _) if t.trim().is_empty() => Typed::Null,
        (Cell::Text(t), ColumnType::String) => Typed::S(Cow::Borrowed(t)),
        (Cell::Json(Value::String(s)), ColumnType::String) => Typed::S(Cow::Borrowed(s)),
        (Cell::Json(v), ColumnType::String) => Typed::S(Cow::Owned(v.to_string())),
        (Cell::Text(t), ColumnType::Int) => Typed::I(t.trim().parse().map_err(|_| quoted(t))?),
        (Cell::Json(v), ColumnType::Int) => Typed::I(v.as_i64().ok_or_else(|| v.to_string())?),
        (Cell::Text(t), ColumnType::Float) => Typed::F(t.trim().parse().map_err(|_| quoted(t))?),
        (Cell::Json(v), ColumnType::Float) => Typed::F(v.as_f64().ok_or_else(|| v.to_string())?),
        (Cell::Text(t), ColumnType::Bool) => Typed::B(t.trim().parse().map_err(|_| quoted(t))?),
        (Cell::Json(v), ColumnType::Bool) => Typed::B(v.as_bool().ok_or_else(|| v.to_string())?),
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
