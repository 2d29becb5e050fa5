//! Data plumbing shared by the data tasks: storage [`location`]s (local or object store),
//! local [`glob`]s walked without holding their matches, reading CSV and JSON sources into
//! Arrow batches with per-row rejects ([`csv_source`], [`json_source`], [`table`]), Parquet
//! in and out ([`parquet_io`]), and the [`warehouse`] (SQLite or PostgreSQL) with its
//! [`ledger`] of committed writes.

pub mod csv_source;
pub mod direct;
pub mod exact;
pub mod glob;
pub mod json_source;
pub mod ledger;
pub mod location;
pub mod parquet_io;
pub mod table;
#[cfg(test)]
pub mod testing;
pub mod warehouse;

pub use location::Location;

/// Errors of the data layer; each names the file or table concerned.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An input does not exist.
    #[error("{0}: no such file")]
    Missing(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A storage URL or path is not usable.
    #[error("bad location {0}")]
    Location(String),
    /// The object store refused an operation.
    #[error("{0}")]
    Store(String),
    /// The input is malformed as a whole (not just some rows).
    #[error("{0}")]
    Format(String),
    /// Arrow or Parquet failed.
    #[error("{context}: {message}")]
    Arrow { context: String, message: String },
    /// The warehouse database failed.
    #[error("warehouse {path}: {message}")]
    Warehouse { path: String, message: String },
    /// The PostgreSQL warehouse could not be reached or refused the connection (`target`
    /// is `host:port/database as user`, never the password).
    #[error("cannot connect to the PostgreSQL warehouse at {target}: {cause}")]
    WarehouseConnect { target: String, cause: String },
    /// Refused for a reason no retry can change (a script that commits by itself).
    #[error("{0}")]
    Refused(String),
    /// The work stopped because it was cancelled; nothing was committed.
    #[error("{0}")]
    Cancelled(String),
}

impl DataError {
    /// An I/O error on `path`.
    pub fn io(path: &str, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_string(),
            source,
        }
    }

    /// An Arrow/Parquet error while doing `context`.
    pub fn arrow(context: &str, e: impl std::fmt::Display) -> Self {
        Self::Arrow {
            context: context.to_string(),
            message: e.to_string(),
        }
    }
}

/// Where the data tasks read and write, from the configuration.
#[derive(Clone, Debug)]
pub struct DataPaths {
    /// Staging store (Parquet tables).
    pub staging: Location,
    /// Output store (graph, exports).
    pub output: Location,
    /// The warehouse (SQLite file or PostgreSQL database).
    pub warehouse: warehouse::Warehouse,
}
