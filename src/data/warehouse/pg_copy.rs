//! Arrow record batches in PostgreSQL's binary `COPY` format, for the PostgreSQL warehouse's
//! `load`. Written here rather than taken from a crate: the one that does this (`pgpq`) is
//! built on another major version of Arrow than ours, and the staged tables hold only the
//! four types `import` writes (`Int64`, `Float64`, `Boolean`, `Utf8`), a few lines each.
//!
//! The format (PostgreSQL manual, "COPY", "Binary Format"): an 11-byte signature, a flags
//! word and a header-extension length ([`HEADER`]); then per row a 16-bit field count and,
//! per field, a 32-bit length (-1 for NULL) followed by the value in the type's binary
//! send/receive form, all big-endian; then a 16-bit -1 ([`TRAILER`]).

use arrow_array::{Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Schema};

use crate::data::DataError;

/// Signature, flags (no OIDs) and an empty header extension.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The end of the data.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// The PostgreSQL type each supported Arrow type is stored as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgType {
    /// `Int64`.
    BigInt,
    /// `Float64`.
    Double,
    /// `Boolean`.
    Boolean,
    /// `Utf8`.
    Text,
}

impl PgType {
    /// The type for an Arrow type, or the error naming the column.
    fn of(name: &str, data_type: &DataType) -> Result<Self, DataError> {
        Ok(match data_type {
            DataType::Int64 => Self::BigInt,
            DataType::Float64 => Self::Double,
            DataType::Boolean => Self::Boolean,
            DataType::Utf8 => Self::Text,
            other => {
                return Err(DataError::Format(format!(
                    "column '{name}': type {other} cannot be loaded"
                )));
            }
        })
    }

    /// The name `CREATE TABLE` takes, as `format_type` also prints it.
    pub fn sql(self) -> &'static str {
        match self {
            Self::BigInt => "bigint",
            Self::Double => "double precision",
            Self::Boolean => "boolean",
            Self::Text => "text",
        }
    }

    /// Whether an existing column of type `existing` (as `format_type` prints it) takes
    /// this type's binary values unchanged.
    pub fn fits(self, existing: &str) -> bool {
        existing == self.sql() || (self == Self::Text && existing.starts_with("character varying"))
    }
}

/// Encodes batches of one schema.
#[derive(Clone, Debug)]
pub struct RowEncoder {
    columns: Vec<(String, PgType)>,
}

impl RowEncoder {
    /// An encoder for `schema`, refusing types it cannot store and schemas PostgreSQL
    /// cannot take (no column, or more than a row can hold).
    pub fn new(schema: &Schema) -> Result<Self, DataError> {
        let columns = schema
            .fields()
            .iter()
            .map(|f| Ok((f.name().clone(), PgType::of(f.name(), f.data_type())?)))
            .collect::<Result<Vec<_>, DataError>>()?;
        if columns.is_empty() {
            return Err(DataError::Format(
                "a table needs at least one column".into(),
            ));
        }
        if i16::try_from(columns.len()).is_err() {
            return Err(DataError::Format(format!(
                "{} columns: more than a PostgreSQL row can hold",
                columns.len()
            )));
        }
        Ok(Self { columns })
    }

    /// Column names and their PostgreSQL types, in schema order.
    pub fn columns(&self) -> &[(String, PgType)] {
        &self.columns
    }

    /// Appends the rows of `batch` to `out` (no header, no trailer); `first_row` is the
    /// number of the batch's first row in the table (from 1), for error messages.
    pub fn encode(
        &self,
        batch: &RecordBatch,
        first_row: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), DataError> {
        let columns = self.typed(batch, first_row)?;
        out.reserve(estimate(batch, columns.len()));
        // Validated in `new`: the count fits.
        let width = (columns.len() as i16).to_be_bytes();
        for row in 0..batch.num_rows() {
            out.extend_from_slice(&width);
            for column in &columns {
                column.put(row, out);
            }
        }
        Ok(())
    }

    /// The batch's columns, checked against the schema (types, and no NUL in text).
    fn typed<'a>(
        &self,
        batch: &'a RecordBatch,
        first_row: u64,
    ) -> Result<Vec<Column<'a>>, DataError> {
        if batch.num_columns() != self.columns.len() {
            return Err(DataError::Format(format!(
                "a batch has {} columns, the table {}",
                batch.num_columns(),
                self.columns.len()
            )));
        }
        self.columns
            .iter()
            .zip(batch.columns())
            .map(|((name, ty), array)| Column::new(name, *ty, array.as_ref(), first_row))
            .collect()
    }
}

/// Bytes a batch takes, give or take: 2 per row, 4 per field, the fixed widths and the text.
fn estimate(batch: &RecordBatch, width: usize) -> usize {
    let fixed: usize = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Utf8 => c.to_data().buffers().get(1).map_or(0, |b| b.len()),
            DataType::Boolean => c.len(),
            _ => 8 * c.len(),
        })
        .sum();
    batch.num_rows() * (2 + 4 * width) + fixed
}

/// One column of a batch, downcast once.
enum Column<'a> {
    BigInt(&'a Int64Array),
    Double(&'a Float64Array),
    Boolean(&'a BooleanArray),
    Text(&'a StringArray),
}

impl<'a> Column<'a> {
    fn new(
        name: &str,
        ty: PgType,
        array: &'a dyn Array,
        first_row: u64,
    ) -> Result<Self, DataError> {
        let any = array.as_any();
        let wrong = || {
            DataError::Format(format!(
                "column '{name}': a batch holds {} where the schema says {}",
                array.data_type(),
                ty.sql()
            ))
        };
        Ok(match ty {
            PgType::BigInt => Self::BigInt(any.downcast_ref().ok_or_else(wrong)?),
            PgType::Double => Self::Double(any.downcast_ref().ok_or_else(wrong)?),
            PgType::Boolean => Self::Boolean(any.downcast_ref().ok_or_else(wrong)?),
            PgType::Text => {
                let text: &StringArray = any.downcast_ref().ok_or_else(wrong)?;
                refuse_nul(name, text, first_row)?;
                Self::Text(text)
            }
        })
    }

    fn put(&self, row: usize, out: &mut Vec<u8>) {
        let valid = match self {
            Self::BigInt(a) => a.is_valid(row),
            Self::Double(a) => a.is_valid(row),
            Self::Boolean(a) => a.is_valid(row),
            Self::Text(a) => a.is_valid(row),
        };
        if !valid {
            out.extend_from_slice(&(-1i32).to_be_bytes());
            return;
        }
        match self {
            Self::BigInt(a) => put_field(out, &a.value(row).to_be_bytes()),
            Self::Double(a) => put_field(out, &a.value(row).to_bits().to_be_bytes()),
            Self::Boolean(a) => put_field(out, &[u8::from(a.value(row))]),
            Self::Text(a) => put_field(out, a.value(row).as_bytes()),
        }
    }
}

/// A field: its length, then its bytes. A text longer than 2 GiB cannot be in an Arrow
/// `Utf8` array (32-bit offsets), so the length always fits.
fn put_field(out: &mut Vec<u8>, value: &[u8]) {
    let len = i32::try_from(value.len()).unwrap_or(i32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

/// PostgreSQL text cannot hold the NUL character: a value with one fails the load, naming
/// the column and row, rather than being changed (values are kept exactly or refused).
fn refuse_nul(name: &str, text: &StringArray, first_row: u64) -> Result<(), DataError> {
    if memchr::memchr(0, text.value_data()).is_none() {
        return Ok(());
    }
    // The bytes of a null slot are not a value: only a valid one counts.
    let Some(i) = (0..text.len()).find(|&i| text.is_valid(i) && text.value(i).contains('\0'))
    else {
        return Ok(());
    };
    Err(DataError::Format(format!(
        "column '{name}', row {}: the text holds a NUL character, which PostgreSQL cannot \
         store",
        first_row + i as u64
    )))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::ArrayRef;
    use arrow_schema::Field;

    use super::*;

    /// Encodes one column and returns the bytes of its rows.
    fn encoded(name: &str, array: ArrayRef) -> Vec<u8> {
        let batch = RecordBatch::try_from_iter([(name, array)]).unwrap();
        let encoder = RowEncoder::new(&batch.schema()).unwrap();
        let mut out = Vec::new();
        encoder.encode(&batch, 1, &mut out).unwrap();
        out
    }

    /// A one-field row: count 1, then the field.
    fn row(field: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 1];
        v.extend_from_slice(field);
        v
    }

    const NULL: [u8; 4] = [0xff, 0xff, 0xff, 0xff];

    #[test]
    fn the_header_and_trailer_are_the_documented_bytes() {
        assert_eq!(HEADER.len(), 19);
        assert_eq!(&HEADER[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(TRAILER, [0xff, 0xff]);
    }

    #[test]
    fn bigints_are_eight_big_endian_bytes_and_nulls_a_minus_one_length() {
        let out = encoded(
            "n",
            Arc::new(Int64Array::from(vec![Some(-2), None, Some(258)])),
        );
        let expected = [
            row(&[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]),
            row(&NULL),
            row(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2]),
        ]
        .concat();
        assert_eq!(out, expected);
    }

    #[test]
    fn doubles_are_their_ieee_bits_big_endian_nan_and_null_included() {
        let out = encoded(
            "x",
            Arc::new(Float64Array::from(vec![Some(1.5), None, Some(f64::NAN)])),
        );
        let mut one_and_a_half = vec![0, 0, 0, 8];
        one_and_a_half.extend_from_slice(&[0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
        let mut nan = vec![0, 0, 0, 8];
        nan.extend_from_slice(&f64::NAN.to_bits().to_be_bytes());
        assert_eq!(out, [row(&one_and_a_half), row(&NULL), row(&nan)].concat());
    }

    #[test]
    fn booleans_are_one_byte() {
        let out = encoded(
            "b",
            Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
        );
        let expected = [row(&[0, 0, 0, 1, 1]), row(&[0, 0, 0, 1, 0]), row(&NULL)].concat();
        assert_eq!(out, expected);
    }

    #[test]
    fn text_is_its_utf8_bytes_empty_text_is_not_null() {
        let out = encoded(
            "s",
            Arc::new(StringArray::from(vec![Some("ñ"), Some(""), None])),
        );
        let expected = [
            row(&[0, 0, 0, 2, 0xc3, 0xb1]),
            row(&[0, 0, 0, 0]),
            row(&NULL),
        ]
        .concat();
        assert_eq!(out, expected);
    }

    #[test]
    fn rows_hold_every_column_in_schema_order() {
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(vec![7])) as ArrayRef),
            ("ok", Arc::new(BooleanArray::from(vec![None])) as ArrayRef),
        ])
        .unwrap();
        let mut out = Vec::new();
        RowEncoder::new(&batch.schema())
            .unwrap()
            .encode(&batch, 1, &mut out)
            .unwrap();
        let expected = [&[0, 2][..], &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7], &NULL].concat();
        assert_eq!(out, expected);
    }

    #[test]
    fn a_nul_in_text_and_an_unsupported_type_are_refused_by_name() {
        let batch = RecordBatch::try_from_iter([(
            "title",
            Arc::new(StringArray::from(vec!["ok", "a\0b"])) as ArrayRef,
        )])
        .unwrap();
        let err = RowEncoder::new(&batch.schema())
            .unwrap()
            .encode(&batch, 8193, &mut Vec::new())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "column 'title', row 8194: the text holds a NUL character, which PostgreSQL \
             cannot store"
        );
        let schema = Schema::new(vec![Field::new("d", DataType::Date32, true)]);
        let err = RowEncoder::new(&schema).unwrap_err();
        assert_eq!(err.to_string(), "column 'd': type Date32 cannot be loaded");
    }

    #[test]
    fn existing_columns_fit_when_postgresql_reads_the_same_bytes() {
        assert!(PgType::Text.fits("character varying(20)"));
        assert!(PgType::BigInt.fits("bigint"));
        assert!(!PgType::BigInt.fits("integer"));
        assert!(!PgType::Double.fits("real"));
    }
}
