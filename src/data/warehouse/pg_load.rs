//! The parts of a PostgreSQL `load` (and of `into_table`) around the connection: the names
//! of side tables, the staging table of a replace, the checks of an append, and the
//! `COPY` itself, fed by a blocking thread that encodes the batches as they come.

use sqlx::PgConnection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::pg_copy::{HEADER, RowEncoder, TRAILER};
use super::postgres::{Batches, execute};
use super::{IN_CURRENT_SCHEMA, quote};
use crate::data::DataError;

/// Longest identifier PostgreSQL keeps (longer ones are silently cut).
const MAX_NAME_BYTES: usize = 63;
/// Encoded batches waiting for the connection.
const CHUNKS_AHEAD: usize = 2;

/// A table name PostgreSQL keeps as given, quoted.
fn pg_name(name: &str) -> Result<String, DataError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(DataError::Format(format!(
            "name '{name}' is longer than the {MAX_NAME_BYTES} bytes PostgreSQL keeps"
        )));
    }
    quote(name)
}

/// The table a replace loads into: `<table>__loading`, or, when that would be cut short
/// (and could then name another table), a name made from a hash of the table's.
pub(super) fn staging_name(table: &str) -> Result<String, DataError> {
    side_name(table, "__loading")
}

/// The table `into_table` builds the result in.
pub(super) fn building_name(table: &str) -> Result<String, DataError> {
    side_name(table, "__building")
}

fn side_name(table: &str, suffix: &str) -> Result<String, DataError> {
    pg_name(table)?;
    let plain = format!("{table}{suffix}");
    if plain.len() <= MAX_NAME_BYTES {
        return Ok(plain);
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(table.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("_orchestrator_{hex}{suffix}"))
}

/// Creates the staging table of a replace (dropping a leftover); returns its quoted name.
pub(super) async fn create_staging(
    conn: &mut PgConnection,
    staging: &str,
    encoder: &RowEncoder,
    err: impl Fn(sqlx::Error) -> DataError + Copy,
) -> Result<String, DataError> {
    let staging_q = quote(staging)?;
    execute(conn, format!("DROP TABLE IF EXISTS {staging_q}"), err).await?;
    let create = format!("CREATE TABLE {staging_q} ({})", column_defs(encoder)?);
    execute(conn, create, err).await?;
    Ok(staging_q)
}

fn column_defs(encoder: &RowEncoder) -> Result<String, DataError> {
    encoder
        .columns()
        .iter()
        .map(|(name, ty)| Ok(format!("{} {}", pg_name(name)?, ty.sql())))
        .collect::<Result<Vec<_>, DataError>>()
        .map(|defs| defs.join(", "))
}

/// Makes `table` ready for an append: creates it when absent, else checks that it has
/// every column of the staged table, by name, with a type that takes its values. Returns
/// the quoted name.
pub(super) async fn prepare_append(
    conn: &mut PgConnection,
    table: &str,
    encoder: &RowEncoder,
    err: impl Fn(sqlx::Error) -> DataError + Copy,
) -> Result<String, DataError> {
    let table_q = pg_name(table)?;
    let exists: bool = sqlx::query_scalar(IN_CURRENT_SCHEMA)
        .bind(&table_q)
        .fetch_one(&mut *conn)
        .await
        .map_err(err)?;
    if !exists {
        let create = format!("CREATE TABLE {table_q} ({})", column_defs(encoder)?);
        execute(conn, create, err).await?;
        return Ok(table_q);
    }
    let existing: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
    )
    .bind(&table_q)
    .fetch_all(&mut *conn)
    .await
    .map_err(err)?;
    for (name, ty) in encoder.columns() {
        let refuse =
            |why: String| DataError::Format(format!("cannot append to table {table}: {why}"));
        match existing.iter().find(|(n, _)| n == name) {
            None => {
                return Err(refuse(format!(
                    "it has no column '{name}' (add it, or load with mode replace)"
                )));
            }
            Some((_, found)) if !ty.fits(found) => {
                return Err(refuse(format!(
                    "column '{name}' is {found} in the table but {} in the staged table",
                    ty.sql()
                )));
            }
            Some(_) => {}
        }
    }
    Ok(table_q)
}

/// The `COPY` of one load: the encoded chunks and the thread that makes them.
pub(super) struct CopyIn<'a> {
    encoder: &'a RowEncoder,
    chunks: mpsc::Receiver<Vec<u8>>,
    producer: tokio::task::JoinHandle<Result<u64, DataError>>,
}

impl<'a> CopyIn<'a> {
    /// Starts encoding `batches` on a blocking thread, until the load ends or `cancel`
    /// fires.
    pub(super) fn start(
        encoder: &'a RowEncoder,
        batches: Batches,
        cancel: &CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
        let (encoding, stop) = (encoder.clone(), cancel.clone());
        let producer =
            tokio::task::spawn_blocking(move || encode_all(&encoding, batches, &tx, &stop));
        Self {
            encoder,
            chunks: rx,
            producer,
        }
    }

    /// Streams every chunk into `into` (quoted) with `COPY … FROM STDIN (FORMAT binary)`,
    /// naming the columns; returns the rows copied. An encoding or reading error aborts the
    /// `COPY` (and so the transaction).
    pub(super) async fn run(
        mut self,
        conn: &mut PgConnection,
        into: &str,
        err: impl Fn(sqlx::Error) -> DataError + Copy,
    ) -> Result<u64, DataError> {
        let names = self
            .encoder
            .columns()
            .iter()
            .map(|(name, _)| quote(name))
            .collect::<Result<Vec<_>, _>>()?
            .join(", ");
        let statement = format!("COPY {into} ({names}) FROM STDIN (FORMAT binary)");
        let mut copy = conn.copy_in_raw(&statement).await.map_err(err)?;
        copy.send(HEADER).await.map_err(err)?;
        let mut sent = Ok(());
        while let Some(chunk) = self.chunks.recv().await {
            if let Err(e) = copy.send(chunk).await {
                sent = Err(err(e));
                break;
            }
        }
        // Unblocks a producer stopped on a full channel.
        drop(self.chunks);
        let produced = self
            .producer
            .await
            .unwrap_or_else(|e| Err(DataError::Format(format!("the row encoder stopped: {e}"))));
        match (sent, produced) {
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => {
                // The server answers an abort with an error, which says nothing more.
                let _ = copy.abort(e.to_string()).await;
                Err(e)
            }
            (Ok(()), Ok(rows)) => {
                copy.send(TRAILER).await.map_err(err)?;
                let copied = copy.finish().await.map_err(err)?;
                if copied != rows {
                    return Err(DataError::Format(format!(
                        "COPY took {copied} row(s) of the {rows} sent"
                    )));
                }
                Ok(copied)
            }
        }
    }
}

/// Encodes every batch and sends it to the connection; returns the rows encoded. Stops at
/// the first bad batch, when cancelled, and when the connection side stopped listening.
fn encode_all(
    encoder: &RowEncoder,
    batches: Batches,
    chunks: &mpsc::Sender<Vec<u8>>,
    cancel: &CancellationToken,
) -> Result<u64, DataError> {
    let mut rows = 0u64;
    for batch in batches {
        if cancel.is_cancelled() {
            return Err(DataError::Cancelled("the load was cancelled".into()));
        }
        let batch = batch?;
        let mut chunk = Vec::new();
        encoder.encode(&batch, rows + 1, &mut chunk)?;
        if chunks.blocking_send(chunk).is_err() {
            return Err(DataError::Cancelled("the load stopped taking rows".into()));
        }
        rows += batch.num_rows() as u64;
    }
    Ok(rows)
}
