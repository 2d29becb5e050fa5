//! orchestrator: a single-binary replacement for Apache Airflow.
//!
//! The modules follow the data: [`config`] → [`dag`] (model, loading, validation,
//! timetables) → [`scheduler`] (the actor that owns runs) → [`executor`] → [`tasks`]
//! (built-in task types) → [`store`] (SQLite state). [`service`] holds the operations that
//! the two front-ends, [`cli`] and [`web`], share; [`daemon`] wires `serve` together.

pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod dag;
pub mod data;
pub mod executor;
pub mod graph;
pub mod ids;
pub mod metrics;
pub mod redact;
pub mod scheduler;
pub mod service;
pub mod state;
pub mod store;
pub mod tasks;
pub mod web;
