//! Integration tests: the real binary, real SQLite, real HTTP, real processes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod api_client;
mod auth;
mod browser;
mod cli;
mod dashboard;
mod dashboard_runs;
mod execution;
mod fuzz;
mod graph_budget;
mod hostile_dags;
mod hostile_data;
mod hostile_http;
mod import_inputs;
mod logs;
mod metrics;
mod pg_warehouse;
mod pipeline;
mod processes;
mod recovery;
mod s3;
mod secrets;
mod server;
mod several;
mod support;
mod torture;
mod warehouse;
