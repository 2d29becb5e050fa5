//! Entry point: parse the command line, set up logging, run, map the outcome to an exit code
//! (0 success, 1 failure, 2 usage or configuration error).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use orchestrator::cli::{Cli, Command, Outcome, execute};
use orchestrator::config::ConfigError;
use orchestrator::data::DataError;
use orchestrator::service::ServiceError;
use orchestrator::store::StoreError;
use orchestrator::tasks::supervise;
use tracing_subscriber::EnvFilter;

/// How long the exit waits for blocking work still running: enough for an interrupted
/// statement to roll back cleanly, never the length of abandoned work.
const ABANDONED_WORK_GRACE: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    // A shell task's supervisor: no CLI, logging or runtime (see `tasks::supervise`).
    if let Some(command) = supervise::requested() {
        return supervise::run(&command);
    }
    supervise::enable();
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Dags(_)
            | Command::Runs(_)
            | Command::Logs { .. }
            | Command::Graph(_)
            | Command::Backfill { .. }
            | Command::Db(_)
    ) {
        default_sigpipe();
    }
    let default_level = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(orchestrator::redact::RedactedStderr)
        .with_ansi(ansi)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(execute(cli));
    // Dropping a runtime waits for all its blocking work, including the work of tries that
    // were cancelled and abandoned after their grace period (their statements are
    // interrupted and they commit nothing, so there is nothing left worth waiting for).
    runtime.shutdown_timeout(ABANDONED_WORK_GRACE);
    match outcome {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {}", orchestrator::redact::text(&format!("{err:#}")));
            if is_usage_error(&err) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Listing commands end quietly when their reader goes away (`orchestrator runs list | head`)
/// instead of failing on a broken pipe. Not for commands that run tasks or serve: those keep
/// Rust's default of ignoring SIGPIPE.
#[allow(unsafe_code)]
fn default_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called first thing in `main`, before any other thread exists; restoring the
    // default disposition installs no handler code.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

fn is_usage_error(err: &anyhow::Error) -> bool {
    // A state database that cannot be reached or has a schema this version cannot use is a
    // set-up error, like a bad configuration.
    let unusable = |e: &StoreError| matches!(e, StoreError::Connect { .. } | StoreError::Schema(_));
    let unusable_store = err.chain().any(|e| {
        e.downcast_ref::<StoreError>().is_some_and(unusable)
            || matches!(e.downcast_ref::<ServiceError>(), Some(ServiceError::Store(s)) if unusable(s))
    });
    // So is a PostgreSQL warehouse that cannot be reached when a command starts.
    let unreachable_warehouse = err
        .chain()
        .any(|e| matches!(e.downcast_ref(), Some(DataError::WarehouseConnect { .. })));
    unusable_store
        || unreachable_warehouse
        || err.downcast_ref::<ConfigError>().is_some()
        || matches!(
            err.downcast_ref::<ServiceError>(),
            Some(
                ServiceError::UnknownDag(_)
                    | ServiceError::UnknownRun(_)
                    | ServiceError::UnknownTask(_)
                    | ServiceError::AmbiguousRun(..)
                    | ServiceError::Invalid(_)
            )
        )
}
