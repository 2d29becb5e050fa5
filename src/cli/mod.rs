//! The command line (clap): parses arguments and dispatches to one function per command.
//! Commands share the service layer with the web API; output is a table or `-o json`.

mod dags;
mod db;
mod graph;
mod output;
mod run;
mod runs;
mod users;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Config, parse_bind};

/// A single-binary replacement for Apache Airflow: YAML DAGs, SQLite state, a web dashboard.
#[derive(Debug, Parser)]
#[command(name = "orchestrator", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file [default: config/orchestrator.yaml if present; env ORCHESTRATOR_CONFIG]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format of list/show commands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for scripts.
    Json,
}

/// `backfill --reprocess`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ReprocessArg {
    /// Skip every date that has a run.
    #[default]
    None,
    /// Run again the dates whose run failed.
    Failed,
    /// Run again every date whose run finished.
    All,
}

impl From<ReprocessArg> for crate::service::Reprocess {
    fn from(arg: ReprocessArg) -> Self {
        match arg {
            ReprocessArg::None => Self::None,
            ReprocessArg::Failed => Self::Failed,
            ReprocessArg::All => Self::All,
        }
    }
}

/// `mark --state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MarkState {
    /// Succeeded.
    Success,
    /// Failed.
    Failed,
}

impl From<MarkState> for crate::state::TaskState {
    fn from(state: MarkState) -> Self {
        match state {
            MarkState::Success => Self::Success,
            MarkState::Failed => Self::Failed,
        }
    }
}

/// `users add --role`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Reads DAGs, runs and logs.
    Viewer,
    /// Also triggers, pauses, clears and marks.
    Op,
    /// Also manages users.
    Admin,
}

impl From<RoleArg> for crate::service::Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Viewer => Self::Viewer,
            RoleArg::Op => Self::Op,
            RoleArg::Admin => Self::Admin,
        }
    }
}

/// `-o json`.
#[derive(Debug, Args)]
pub struct OutputArg {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: scheduler plus HTTP listener (default 127.0.0.1:8888).
    Serve {
        /// Listen address (overrides the config's `bind`).
        #[arg(long, value_parser = parse_bind)]
        bind: Option<SocketAddr>,
        /// Allow a non-loopback `--bind` although no users exist: anyone who can reach the
        /// address can then trigger and change runs.
        #[arg(long)]
        insecure_no_auth: bool,
    },
    /// Queue a manual run; a running server starts it at once.
    Trigger {
        /// DAG to run.
        dag_id: String,
        /// Run configuration, a JSON object (available as `{{ conf.x }}`).
        #[arg(long)]
        conf: Option<String>,
        /// Follow the run to its end; exit non-zero if it failed. Without a server, runs it here.
        #[arg(long)]
        wait: bool,
    },
    /// Run one DAG run in the foreground with live progress; exit code = outcome.
    Run {
        /// DAG to run.
        dag_id: String,
        /// Run configuration, a JSON object.
        #[arg(long)]
        conf: Option<String>,
    },
    /// List, show and validate DAGs.
    #[command(subcommand)]
    Dags(DagsCommand),
    /// List and show runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Show the log of a task instance.
    Logs {
        /// Run id.
        run_id: String,
        /// Task id.
        task_id: String,
        /// Try number [default: the latest].
        #[arg(long = "try")]
        try_number: Option<u32>,
        /// DAG, when the run id exists in several.
        #[arg(long)]
        dag: Option<String>,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Pause a DAG: no new scheduled or queued runs start.
    Pause {
        /// DAG to pause.
        dag_id: String,
    },
    /// Unpause a DAG.
    Unpause {
        /// DAG to unpause.
        dag_id: String,
    },
    /// Re-run a finished run's tasks (all, the failed ones and their downstream, or one
    /// task with or without its downstream).
    Clear {
        /// Run id.
        run_id: String,
        /// Only failed tasks and everything downstream of them.
        #[arg(long, conflicts_with = "task")]
        failed: bool,
        /// Only this task (with `--downstream`, also every task downstream of it).
        #[arg(long, value_name = "TASK_ID")]
        task: Option<String>,
        /// With `--task`: clear the tasks downstream of it too.
        #[arg(long, requires = "task")]
        downstream: bool,
        /// DAG, when the run id exists in several.
        #[arg(long)]
        dag: Option<String>,
    },
    /// Set a task instance of a finished run to success or failed (the run's state
    /// follows the scheduler's rule: failed if a leaf task failed, success otherwise).
    Mark {
        /// Run id.
        run_id: String,
        /// The task.
        #[arg(long, value_name = "TASK_ID")]
        task: String,
        /// The state to set.
        #[arg(long, value_enum)]
        state: MarkState,
        /// DAG, when the run id exists in several.
        #[arg(long)]
        dag: Option<String>,
    },
    /// Analyses of the drug-mention graph.
    #[command(subcommand)]
    Graph(GraphCommand),
    /// Maintain the state database.
    #[command(subcommand)]
    Db(DbCommand),
    /// Manage the users of the dashboard and the REST API (any user turns logins on).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Queue runs for every complete schedule interval with a logical date in [--from, --to]
    /// (within the DAG's start and end dates), skipping dates that have a run.
    Backfill {
        /// DAG to backfill.
        dag_id: String,
        /// First logical date (2024-01-01 or RFC 3339).
        #[arg(long)]
        from: String,
        /// Last logical date.
        #[arg(long)]
        to: String,
        /// Dates that have a run: skip them (none), run failed ones again (failed), or run
        /// every finished one again (all).
        #[arg(long, value_enum, default_value_t = ReprocessArg::None)]
        reprocess: ReprocessArg,
        /// Allow more intervals than the configured `backfill_max_runs` (default 1000).
        #[arg(long)]
        max_runs: Option<usize>,
        /// List the dates that would be queued, re-run or skipped; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `dags ...`.
#[derive(Debug, Subcommand)]
pub enum DagsCommand {
    /// List loaded DAGs.
    List(OutputArg),
    /// Show one DAG and its tasks.
    Show {
        /// DAG id.
        dag_id: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Load every DAG file and report every problem; exit 1 if there is any.
    Validate,
}

/// `db ...`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Delete finished runs that ended before a date, with their task instances, tries and
    /// logs (a run and the runs it triggered go together, or stay together).
    Clean {
        /// Cut-off: 2024-01-01 (midnight UTC) or an RFC 3339 time.
        #[arg(long)]
        before: String,
        /// Count what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        output: OutputArg,
    },
}

/// `users ...`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user; the password is prompted for, or read as one line from stdin.
    Add {
        /// Login name (letters, digits, `.`, `_`, `-`, `@`).
        name: String,
        /// What the user may do.
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// List users and their roles.
    List(OutputArg),
    /// Remove a user (their tokens and sessions stop working at once).
    Remove {
        /// Login name.
        name: String,
    },
    /// Set a user's password (prompted for, or one line from stdin).
    SetPassword {
        /// Login name.
        name: String,
    },
}

/// `graph ...`.
#[derive(Debug, Subcommand)]
pub enum GraphCommand {
    /// The journal(s) that mention the most distinct drugs.
    TopJournals {
        /// Graph file (path or URL) [default: graph.json in the output store].
        #[arg(long)]
        graph: Option<String>,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Drugs mentioned by the same journals as <drug> through PubMed, not clinical trials.
    RelatedDrugs {
        /// Drug name (case-insensitive).
        drug: String,
        /// Graph file (path or URL) [default: graph.json in the output store].
        #[arg(long)]
        graph: Option<String>,
        #[command(flatten)]
        output: OutputArg,
    },
}

/// `runs ...`.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    List {
        /// Only this DAG.
        #[arg(long)]
        dag: Option<String>,
        /// Only runs in this state (queued, running, success, failed).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show a run and its task instances.
    Show {
        /// Run id.
        run_id: String,
        /// DAG, when the run id exists in several.
        #[arg(long)]
        dag: Option<String>,
        #[command(flatten)]
        output: OutputArg,
    },
}

/// How a command ended, for the exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: the command ran, the thing it ran failed (a DAG run, validation).
    Failed,
}

/// Runs a parsed command.
pub async fn execute(cli: Cli) -> anyhow::Result<Outcome> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve {
            bind,
            insecure_no_auth,
        } => crate::daemon::serve(&config, bind, insecure_no_auth)
            .await
            .map(|()| Outcome::Success),
        Command::Trigger { dag_id, conf, wait } => {
            run::trigger(&config, &dag_id, conf.as_deref(), wait).await
        }
        Command::Run { dag_id, conf } => run::run(&config, &dag_id, conf.as_deref()).await,
        Command::Dags(cmd) => dags::execute(&config, cmd).await,
        Command::Runs(cmd) => runs::execute(&config, cmd).await,
        Command::Logs {
            run_id,
            task_id,
            try_number,
            dag,
            output,
        } => {
            let format = output.format;
            runs::logs(
                &config,
                &run_id,
                &task_id,
                try_number,
                dag.as_deref(),
                format,
            )
            .await
        }
        Command::Db(cmd) => db::execute(&config, cmd).await,
        Command::Users(cmd) => users::execute(&config, cmd).await,
        Command::Pause { dag_id } => dags::pause(&config, &dag_id, true).await,
        Command::Unpause { dag_id } => dags::pause(&config, &dag_id, false).await,
        Command::Clear {
            run_id,
            failed,
            task,
            downstream,
            dag,
        } => {
            let what = match task {
                Some(task) => runs::ClearWhat::Task { task, downstream },
                None if failed => runs::ClearWhat::Failed,
                None => runs::ClearWhat::All,
            };
            runs::clear(&config, &run_id, what, dag.as_deref()).await
        }
        Command::Mark {
            run_id,
            task,
            state,
            dag,
        } => runs::mark(&config, &run_id, &task, state.into(), dag.as_deref()).await,
        Command::Graph(cmd) => graph::execute(&config, cmd).await,
        Command::Backfill {
            dag_id,
            from,
            to,
            reprocess,
            max_runs,
            dry_run,
        } => {
            let req = crate::service::BackfillRequest {
                from: &from,
                to: &to,
                reprocess: reprocess.into(),
                max_runs: max_runs.unwrap_or(config.backfill_max_runs),
                dry_run,
            };
            runs::backfill(&config, &dag_id, req).await
        }
    }
}

/// The service over the state store and the DAG folder, as a command sees them.
async fn open(config: &Config) -> anyhow::Result<crate::service::Service> {
    let bag = crate::daemon::sources(config).load();
    Ok(crate::service::Service::open(&config.database_url, bag).await?)
}

/// The service over the state store alone (commands about runs, which need no DAG files).
async fn open_runs(config: &Config) -> anyhow::Result<crate::service::Service> {
    let bag = crate::dag::DagBag::default();
    Ok(crate::service::Service::open(&config.database_url, bag).await?)
}

/// Tells a running server that the store changed; returns whether one answered. Carries
/// the store's wake secret, which the server requires once users exist. On a shared
/// (PostgreSQL) store, any `serve` instance holding a lease counts: the store's `NOTIFY`
/// has told them all.
async fn notify_server(config: &Config, service: &crate::service::Service) -> bool {
    match service.shared_servers().await {
        Ok(Some(n)) if n > 0 => return true,
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot count the serving instances"),
    }
    let secret = match service.wake_secret().await {
        Ok(secret) => Some(secret),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the wake secret; waking without it");
            None
        }
    };
    crate::client::wake(config.bind, secret.as_deref()).await
}
