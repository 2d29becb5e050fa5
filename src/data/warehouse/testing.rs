//! Test warehouses on either backend, so that the warehouse's and the ledger's tests run the
//! same bodies on SQLite and on PostgreSQL (with the store's `on_both!`): a SQLite file in
//! a temporary folder, or a schema of its own in the `ORCHESTRATOR_TEST_POSTGRES` database
//! (connections' `search_path` set to it), dropped when the [`TestWarehouse`] is.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ops::Deref;
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::{Batches, Warehouse, WarehouseLocation};
use crate::data::ledger::LedgerTry;
use crate::store::Backend;
use crate::store::testing::{create_schema, drop_schema, postgres_base, with_schema};

/// A fresh, empty warehouse for one test, removed when dropped.
pub struct TestWarehouse {
    warehouse: Warehouse,
    location: WarehouseLocation,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
}

impl Deref for TestWarehouse {
    type Target = Warehouse;

    fn deref(&self) -> &Warehouse {
        &self.warehouse
    }
}

impl TestWarehouse {
    /// A new empty warehouse on `backend`.
    pub async fn open(backend: Backend) -> Self {
        let (location, dir, schema) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("w.db");
                (WarehouseLocation::Sqlite(path), Some(dir), None)
            }
            Backend::Postgres => {
                sqlx::any::install_default_drivers();
                let base = postgres_base();
                let schema = create_schema(&base).await;
                let url = with_schema(&base, &schema);
                (WarehouseLocation::Postgres(url), None, Some((base, schema)))
            }
        };
        Self {
            warehouse: Warehouse::open(&location, 4).unwrap(),
            location,
            backend,
            _dir: dir,
            schema,
        }
    }

    /// Another handle on the same database, sharing nothing with this one (a new process).
    pub fn reopen(&self) -> Warehouse {
        Warehouse::open(&self.location, 4).unwrap()
    }

    /// Like [`TestWarehouse::reopen`], with at most `connections` connections.
    pub fn reopen_with(&self, connections: u32) -> Warehouse {
        Warehouse::open(&self.location, connections).unwrap()
    }

    /// The first cell of a query.
    pub async fn scalar(&self, sql: &str) -> String {
        self.query(sql, 1).await.unwrap().rows[0][0].clone()
    }

    /// The names of the tables (not views) in the warehouse, sorted.
    pub async fn tables(&self) -> Vec<String> {
        let sql = match self.backend {
            Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
            Backend::Postgres => {
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() \
                 ORDER BY tablename"
            }
        };
        let rows = self.reopen().query(sql, 1000).await.unwrap().rows;
        rows.into_iter().map(|r| r[0].clone()).collect()
    }
}

impl Drop for TestWarehouse {
    fn drop(&mut self) {
        if let Some((base, schema)) = &self.schema {
            drop_schema(base, schema);
        }
    }
}

/// A one-column (`id`) batch.
pub fn ids(values: &[i64]) -> (SchemaRef, RecordBatch) {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    let array = Arc::new(Int64Array::from(values.to_vec()));
    let batch = RecordBatch::try_new(schema.clone(), vec![array]).unwrap();
    (schema, batch)
}

/// Batches as a load takes them.
pub fn batches(list: Vec<RecordBatch>) -> Batches {
    Box::new(list.into_iter().map(Ok))
}

/// A try of a run no other test uses, so that its writes are never taken over.
pub fn fresh() -> LedgerTry {
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    LedgerTry {
        run_uid: format!("run-{n}"),
        dag_id: "d".into(),
        run_id: format!("manual__{n}"),
        task_id: "t".into(),
        first_try: 1,
        try_number: 1,
    }
}
