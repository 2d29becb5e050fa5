//! The warehouse ledger: table `_orchestrator_ledger`, one row per warehouse write that a
//! try of a task committed, written in the same transaction as the write itself. A retry
//! reads it to tell whether an earlier try of the same attempt already committed the write
//! (the crash fell between the warehouse commit and the state-store commit), and then takes
//! that result instead of writing twice. Used by the [`super::warehouse`] backends only:
//! [`sqlite`] and [`postgres`] hold the same three statements for each engine.

pub(crate) mod postgres;
pub(crate) mod sqlite;
#[cfg(test)]
mod tests;

/// Name of the ledger table in the warehouse.
pub const LEDGER_TABLE: &str = "_orchestrator_ledger";

/// The ledger item of a `sql` script (tables are their own items; no table has this name).
pub const SCRIPT_ITEM: &str = "(script)";

/// The try that writes: the ledger key of its writes, less the item written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerTry {
    /// Unique id of the run across state databases.
    pub run_uid: String,
    /// DAG of the run (for people reading the ledger).
    pub dag_id: String,
    /// Run id (for people reading the ledger).
    pub run_id: String,
    /// The writing task.
    pub task_id: String,
    /// First try of the current attempt: rows of tries `first_try..=try_number` count.
    pub first_try: u32,
    /// This try.
    pub try_number: u32,
}

/// A write an earlier try (or an earlier run of this try) committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The try that committed it.
    pub try_number: u32,
    /// Rows it wrote (loaded, in the result table, or changed by the script).
    pub rows: u64,
}

/// The result of a write recorded in the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ledgered<T> {
    /// This try wrote and committed it.
    Written(T),
    /// A try of the same attempt had committed it already; nothing was written.
    AlreadyCommitted(Committed),
}

/// What kind of write a ledger row records (column `operation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `load`, mode replace.
    LoadReplace,
    /// `load`, mode append.
    LoadAppend,
    /// `sql` with `into_table`.
    SqlIntoTable,
    /// `sql` script.
    SqlScript,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::LoadReplace => "load_replace",
            Self::LoadAppend => "load_append",
            Self::SqlIntoTable => "sql_into_table",
            Self::SqlScript => "sql_script",
        }
    }
}
