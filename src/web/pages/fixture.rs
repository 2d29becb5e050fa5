//! Test fixture for the page handlers: a temporary store, a DAG bag of `etl` (extract →
//! transform → load), the router over a service without an engine, and runs driven
//! through the store's scheduler writes (claim, tries, log lines, finish) as an engine
//! would write them.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use chrono::Utc;
use tower::ServiceExt;

use crate::dag::DagBag;
use crate::dag::build::{DagText, build_dag};
use crate::ids::TaskId;
use crate::service::{RunRow, Service, TriggerRequest};
use crate::state::{RunState, TaskState};
use crate::store::{Change, InstanceKind, Owner, Store};
use crate::tasks::LogLine;
use crate::web::{AppState, router};

/// The DAG every test uses.
pub const ETL: &str = "dag_id: etl\ntasks:\n  extract: {type: noop}\n  \
                       transform: {type: noop, depends_on: extract}\n  \
                       load: {type: noop, depends_on: transform}\n";

/// A store, a service over it and an owner that writes as a scheduler.
pub struct Fixture {
    _db: crate::store::testing::TestDb,
    /// The store the service reads.
    pub store: Store,
    /// The service the router uses.
    pub service: Service,
    owner: Owner,
}

impl Fixture {
    /// A fresh store with the `etl` DAG loaded.
    pub async fn new(backend: crate::store::Backend) -> Self {
        let db = crate::store::testing::TestDb::open(backend).await;
        let store = db.store();
        let dag = build_dag(&DagText {
            path: Path::new("etl.yaml"),
            project: None,
            default_dag_id: None,
            text: ETL.into(),
        })
        .unwrap();
        let mut bag = DagBag::default();
        bag.dags.insert(dag.id.clone(), Arc::new(dag));
        let service = Service::with_bag(store.clone(), bag);
        let owner = store
            .register_instance(
                InstanceKind::Foreground,
                std::time::Duration::from_secs(600),
            )
            .await
            .unwrap();
        Self {
            _db: db,
            store,
            service,
            owner,
        }
    }

    /// The dashboard's router over the service.
    pub fn app(&self) -> Router {
        router(AppState {
            service: self.service.clone(),
        })
    }

    /// A manual run of `etl` with `conf`, claimed (running, tasks with no status).
    pub async fn running_run(&self, conf: serde_json::Value) -> RunRow {
        let req = TriggerRequest { conf, owner: None };
        let run = self.service.trigger("etl", req).await.unwrap();
        let tasks: Vec<(TaskId, u32)> = ["extract", "transform", "load"]
            .iter()
            .map(|t| (TaskId::new(*t), 1))
            .collect();
        assert!(
            self.store
                .claim_run(run.key, &self.owner, &tasks)
                .await
                .unwrap()
        );
        self.service.refresh(&run).await.unwrap()
    }

    /// Applies scheduler changes.
    pub async fn commit(&self, changes: &[Change]) {
        self.store.commit(&self.owner, changes).await.unwrap();
    }

    /// Starts try `n` of `task`.
    pub async fn start(&self, run: &RunRow, task: &str, n: u32) {
        let change = Change::StartTry {
            run: run.key,
            task: TaskId::new(task),
            try_number: n,
            at: Utc::now(),
        };
        self.commit(&[change]).await;
    }

    /// Writes `(level, message)` lines to try `n` of `task`, numbered from `first_seq`.
    pub async fn log(
        &self,
        run: &RunRow,
        task: &str,
        n: u32,
        first_seq: u64,
        lines: &[(&'static str, &str)],
    ) {
        let lines = lines
            .iter()
            .zip(first_seq..)
            .map(|((level, message), seq)| LogLine {
                seq,
                ts: Utc::now(),
                level,
                message: (*message).to_string(),
            })
            .collect();
        let change = Change::Logs {
            run: run.key,
            task: TaskId::new(task),
            try_number: n,
            lines,
            dropped: None,
        };
        self.commit(&[change]).await;
    }

    /// Ends try `n` of `task` with `state`.
    pub async fn finish(
        &self,
        run: &RunRow,
        task: &str,
        n: u32,
        state: TaskState,
        error: Option<&str>,
    ) {
        let change = Change::FinishTry {
            run: run.key,
            task: TaskId::new(task),
            try_number: n,
            state,
            at: Utc::now(),
            error: error.map(str::to_string),
            next_retry_at: None,
            interrupted: false,
        };
        self.commit(&[change]).await;
    }

    /// Ends the run with `state`.
    pub async fn finish_run(&self, run: &RunRow, state: RunState) -> RunRow {
        let change = Change::FinishRun {
            run: run.key,
            state,
            at: Utc::now(),
            note: None,
        };
        self.commit(&[change]).await;
        self.service.refresh(run).await.unwrap()
    }

    /// A failed run: extract succeeded, transform failed (with `<script>` in its error and
    /// log), load upstream_failed.
    pub async fn failed_run(&self) -> RunRow {
        let run = self
            .running_run(serde_json::json!({"note": "<script>alert(1)</script>"}))
            .await;
        self.start(&run, "extract", 1).await;
        self.log(
            &run,
            "extract",
            1,
            1,
            &[("INFO", "extracting"), ("STDOUT", "42 rows")],
        )
        .await;
        self.finish(&run, "extract", 1, TaskState::Success, None)
            .await;
        self.start(&run, "transform", 1).await;
        self.log(
            &run,
            "transform",
            1,
            1,
            &[("STDERR", "<script>alert(2)</script>")],
        )
        .await;
        self.finish(
            &run,
            "transform",
            1,
            TaskState::Failed,
            Some("exit 1: <b>boom</b>"),
        )
        .await;
        let change = Change::SetTaskState {
            run: run.key,
            task: TaskId::new("load"),
            state: TaskState::UpstreamFailed,
            at: Utc::now(),
        };
        self.commit(&[change]).await;
        self.finish_run(&run, RunState::Failed).await
    }

    /// `GET uri`: status, headers and body.
    pub async fn get(&self, uri: &str) -> (StatusCode, HeaderMap, String) {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        self.send(request).await
    }

    /// `POST uri` with a form body.
    pub async fn post(&self, uri: &str, form: &str) -> (StatusCode, HeaderMap, String) {
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()))
            .unwrap();
        self.send(request).await
    }

    /// Sends a request through the router.
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
        let response = self.app().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }
}
