//! The one typed configuration: defaults in code, then `config/orchestrator.yaml` (or the
//! file named by `--config` / `ORCHESTRATOR_CONFIG`), then `ORCHESTRATOR_*` environment
//! variables, then command-line flags. Validated once here; nothing else reads the env.
//!
//! Relative paths are resolved against the working directory (the project root), whether
//! they come from the file, the environment or a flag.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::Deserialize;

use crate::dag::duration::DurationValue;
use crate::data::warehouse::WarehouseLocation;

/// Shortest heartbeat allowed (the lease is renewed in the store at this pace).
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
/// Longest lease allowed.
const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);
use crate::tasks::MIN_MAX_LOG_BYTES;

/// Default cap on the intervals one backfill may cover.
pub const DEFAULT_BACKFILL_MAX_RUNS: usize = 1000;

/// Default location of the configuration file, relative to the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "config/orchestrator.yaml";

/// Errors reading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid YAML for the configuration.
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_norway::Error,
    },
    /// A value (from the file or the environment) is out of range or malformed.
    #[error("{origin}: {field}: {message}")]
    Invalid {
        origin: String,
        field: &'static str,
        message: String,
    },
}

/// The configuration file's shape; every field optional so defaults fill the gaps.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    bind: Option<String>,
    database_url: Option<String>,
    dags_folder: Option<PathBuf>,
    projects_file: Option<PathBuf>,
    staging: Option<String>,
    output: Option<String>,
    warehouse: Option<String>,
    parallelism: Option<usize>,
    shutdown_grace_secs: Option<u64>,
    heartbeat: Option<DurationValue>,
    lease: Option<DurationValue>,
    max_log_bytes: Option<u64>,
    max_dag_file_bytes: Option<u64>,
    backfill_max_runs: Option<usize>,
    max_connections: Option<usize>,
}

/// Validated runtime configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// HTTP listen address of `serve`.
    pub bind: SocketAddr,
    /// SQLite state database (a path, or a `sqlite:` URL).
    pub database_url: String,
    /// Folder scanned for DAG files; `templates/` below it holds dynamic-DAG templates.
    pub dags_folder: PathBuf,
    /// The projects list that generates DAGs from templates.
    pub projects_file: PathBuf,
    /// Staging store for imported tables (path or object-store URL).
    pub staging: String,
    /// Output store for processed data (path or object-store URL).
    pub output: String,
    /// The warehouse: a SQLite file, or a `postgres://` URL.
    pub warehouse: WarehouseLocation,
    /// Maximum task instances running at once in this process.
    pub parallelism: usize,
    /// How long a graceful shutdown lets running tasks finish before interrupting them.
    pub shutdown_grace_secs: u64,
    /// How often an executing process renews its lease.
    pub heartbeat: Duration,
    /// How long a lease lasts without renewal: another process adopts the runs of one whose
    /// lease lapsed (crashed, frozen, cut off from the store), never sooner.
    pub lease: Duration,
    /// Cap on one try's stored log; past it the middle is dropped (head and tail kept).
    pub max_log_bytes: u64,
    /// Largest DAG file (or projects list) loaded; a larger one is a load error.
    pub max_dag_file_bytes: u64,
    /// A backfill whose range holds more intervals than this is refused unless
    /// `--max-runs` allows it (a typo in a date must not queue a million runs).
    pub backfill_max_runs: usize,
    /// Most HTTP connections `serve` keeps open at once; further clients wait in the
    /// listen backlog. Lowered at start if the open-file limit cannot hold that many.
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8888)),
            database_url: "orchestrator.db".into(),
            dags_folder: "dags".into(),
            projects_file: "config/projects.yaml".into(),
            staging: "imported_data".into(),
            output: "processed_data".into(),
            warehouse: WarehouseLocation::default(),
            parallelism: 32,
            shutdown_grace_secs: 10,
            heartbeat: Duration::from_secs(2),
            lease: Duration::from_secs(10),
            max_log_bytes: crate::tasks::DEFAULT_MAX_LOG_BYTES,
            max_dag_file_bytes: crate::dag::loader::DEFAULT_MAX_DAG_FILE_BYTES,
            backfill_max_runs: DEFAULT_BACKFILL_MAX_RUNS,
            max_connections: crate::web::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl Config {
    /// Loads the layered configuration. `explicit` is `--config`; a missing default file is
    /// fine (defaults apply) but a missing explicit one is an error.
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let env = |key: &str| std::env::var(format!("ORCHESTRATOR_{key}")).ok();
        let env_path = env("CONFIG").map(PathBuf::from);
        let path = explicit.map(Path::to_path_buf).or(env_path);
        let file = match &path {
            Some(p) => Some((p.clone(), read_file(p)?)),
            None => {
                let p = PathBuf::from(DEFAULT_CONFIG_FILE);
                if p.exists() {
                    Some((p.clone(), read_file(&p)?))
                } else {
                    None
                }
            }
        };
        let mut config = Config::default();
        if let Some((p, f)) = file {
            config.apply(f, &p.display().to_string())?;
        }
        config.apply(ConfigFile::from_env(env)?, "environment")?;
        Ok(config)
    }

    fn apply(&mut self, f: ConfigFile, origin: &str) -> Result<(), ConfigError> {
        if let Some(bind) = f.bind {
            self.bind = parse_bind(&bind).map_err(|message| ConfigError::Invalid {
                origin: origin.into(),
                field: "bind",
                message,
            })?;
        }
        if let Some(p) = f.parallelism {
            if p == 0 {
                return Err(ConfigError::Invalid {
                    origin: origin.into(),
                    field: "parallelism",
                    message: "must be at least 1".into(),
                });
            }
            self.parallelism = p;
        }
        if let Some(n) = f.backfill_max_runs {
            if n == 0 {
                return Err(ConfigError::Invalid {
                    origin: origin.into(),
                    field: "backfill_max_runs",
                    message: "must be at least 1".into(),
                });
            }
            self.backfill_max_runs = n;
        }
        set(&mut self.max_dag_file_bytes, f.max_dag_file_bytes);
        if let Some(n) = f.max_log_bytes {
            if n < MIN_MAX_LOG_BYTES {
                return Err(ConfigError::Invalid {
                    origin: origin.into(),
                    field: "max_log_bytes",
                    message: format!("must be at least {MIN_MAX_LOG_BYTES}"),
                });
            }
            self.max_log_bytes = n;
        }
        if let Some(n) = f.max_connections {
            if n == 0 {
                return Err(ConfigError::Invalid {
                    origin: origin.into(),
                    field: "max_connections",
                    message: "must be at least 1".into(),
                });
            }
            self.max_connections = n;
        }
        set(&mut self.database_url, f.database_url);
        set(&mut self.dags_folder, f.dags_folder);
        set(&mut self.projects_file, f.projects_file);
        set(&mut self.staging, f.staging);
        set(&mut self.output, f.output);
        if let Some(w) = f.warehouse {
            self.warehouse =
                WarehouseLocation::parse(&w).map_err(|message| ConfigError::Invalid {
                    origin: origin.into(),
                    field: "warehouse",
                    message,
                })?;
        }
        set(&mut self.shutdown_grace_secs, f.shutdown_grace_secs);
        let invalid = |field: &'static str, message: String| ConfigError::Invalid {
            origin: origin.into(),
            field,
            message,
        };
        let duration = |field: &'static str, v: &DurationValue, range: (Duration, Duration)| {
            let d = v.parse().map_err(|m| invalid(field, m))?;
            if d < range.0 || d > range.1 {
                return Err(invalid(
                    field,
                    format!(
                        "{} is out of range: allowed {} to {}",
                        humantime::format_duration(d),
                        humantime::format_duration(range.0),
                        humantime::format_duration(range.1)
                    ),
                ));
            }
            Ok(d)
        };
        if let Some(v) = &f.heartbeat {
            self.heartbeat = duration("heartbeat", v, (MIN_HEARTBEAT, MAX_LEASE / 2))?;
        }
        if let Some(v) = &f.lease {
            self.lease = duration("lease", v, (MIN_HEARTBEAT * 2, MAX_LEASE))?;
        }
        if self.lease < self.heartbeat * 2 {
            return Err(invalid(
                "lease",
                format!(
                    "the lease ({}) must last at least two heartbeats ({} each)",
                    humantime::format_duration(self.lease),
                    humantime::format_duration(self.heartbeat)
                ),
            ));
        }
        Ok(())
    }
}

impl ConfigFile {
    fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let number = |key: &'static str| -> Result<Option<u64>, ConfigError> {
            env(key)
                .map(|v| {
                    v.trim().parse::<u64>().map_err(|_| ConfigError::Invalid {
                        origin: "environment".into(),
                        field: key,
                        message: format!("ORCHESTRATOR_{key}='{v}' is not a whole number"),
                    })
                })
                .transpose()
        };
        Ok(Self {
            bind: env("BIND"),
            database_url: env("DATABASE_URL"),
            dags_folder: env("DAGS_FOLDER").map(PathBuf::from),
            projects_file: env("PROJECTS_FILE").map(PathBuf::from),
            staging: env("STAGING"),
            output: env("OUTPUT"),
            warehouse: env("WAREHOUSE"),
            parallelism: number("PARALLELISM")?.map(|n| n as usize),
            shutdown_grace_secs: number("SHUTDOWN_GRACE_SECS")?,
            heartbeat: env("HEARTBEAT").map(DurationValue::Text),
            lease: env("LEASE").map(DurationValue::Text),
            max_log_bytes: number("MAX_LOG_BYTES")?,
            max_dag_file_bytes: number("MAX_DAG_FILE_BYTES")?,
            backfill_max_runs: number("BACKFILL_MAX_RUNS")?
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            max_connections: number("MAX_CONNECTIONS")?.map(|n| n as usize),
        })
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(ConfigFile::default());
    }
    serde_norway::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.into(),
        source,
    })
}

/// Parses `host:port`, accepting `localhost` for the loopback address.
pub fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let normalized = text
        .strip_prefix("localhost:")
        .map(|p| format!("127.0.0.1:{p}"));
    normalized
        .as_deref()
        .unwrap_or(text)
        .parse()
        .map_err(|_| format!("'{text}' is not an address like 127.0.0.1:8888"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        let c = Config::default();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8888");
        assert_eq!(c.database_url, "orchestrator.db");
    }

    #[test]
    fn file_values_override_defaults_and_unknown_keys_are_rejected() {
        let mut c = Config::default();
        let f: ConfigFile =
            serde_norway::from_str("bind: localhost:9000\nparallelism: 4\n").unwrap();
        c.apply(f, "test").unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:9000");
        assert_eq!(c.parallelism, 4);
        let err = serde_norway::from_str::<ConfigFile>("bindd: x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `bindd`"), "{err}");
    }

    #[test]
    fn leases_must_outlast_two_heartbeats() {
        let mut c = Config::default();
        let f: ConfigFile = serde_norway::from_str("heartbeat: 500ms\nlease: 2s\n").unwrap();
        c.apply(f, "test").unwrap();
        assert_eq!(
            (c.heartbeat, c.lease),
            (Duration::from_millis(500), Duration::from_secs(2))
        );
        let f: ConfigFile = serde_norway::from_str("heartbeat: 5s\nlease: 6s\n").unwrap();
        let err = Config::default().apply(f, "test").unwrap_err().to_string();
        assert_eq!(
            err,
            "test: lease: the lease (6s) must last at least two heartbeats (5s each)"
        );
        let f: ConfigFile = serde_norway::from_str("lease: 300000y\n").unwrap();
        let err = Config::default().apply(f, "test").unwrap_err().to_string();
        assert!(err.starts_with("test: lease: "), "{err}");
    }

    #[test]
    fn max_log_bytes_defaults_to_10_mib_and_rejects_tiny_caps() {
        assert_eq!(Config::default().max_log_bytes, 10 * 1024 * 1024);
        let mut c = Config::default();
        let env = |k: &str| (k == "MAX_LOG_BYTES").then(|| "20000".to_string());
        c.apply(ConfigFile::from_env(env).unwrap(), "environment")
            .unwrap();
        assert_eq!(c.max_log_bytes, 20000);
        let f: ConfigFile = serde_norway::from_str("max_log_bytes: 10\n").unwrap();
        let err = c.apply(f, "orchestrator.yaml").unwrap_err().to_string();
        assert_eq!(
            err,
            "orchestrator.yaml: max_log_bytes: must be at least 1024"
        );
    }

    #[test]
    fn max_connections_defaults_to_4096_and_must_be_positive() {
        assert_eq!(Config::default().max_connections, 4096);
        let mut c = Config::default();
        let env = |k: &str| (k == "MAX_CONNECTIONS").then(|| "100".to_string());
        c.apply(ConfigFile::from_env(env).unwrap(), "environment")
            .unwrap();
        assert_eq!(c.max_connections, 100);
        let f: ConfigFile = serde_norway::from_str("max_connections: 0\n").unwrap();
        let err = c.apply(f, "orchestrator.yaml").unwrap_err().to_string();
        assert_eq!(
            err,
            "orchestrator.yaml: max_connections: must be at least 1"
        );
    }

    #[test]
    fn the_warehouse_is_a_sqlite_path_or_a_postgres_url() {
        assert_eq!(
            Config::default().warehouse,
            WarehouseLocation::Sqlite("warehouse.db".into())
        );
        let mut c = Config::default();
        let f: ConfigFile =
            serde_norway::from_str("warehouse: postgresql://etl:pw@db:5433/wh\n").unwrap();
        c.apply(f, "test").unwrap();
        assert_eq!(
            c.warehouse,
            WarehouseLocation::Postgres("postgresql://etl:pw@db:5433/wh".into())
        );
        let env = |k: &str| (k == "WAREHOUSE").then(|| "data/wh.db".to_string());
        c.apply(ConfigFile::from_env(env).unwrap(), "environment")
            .unwrap();
        assert_eq!(c.warehouse, WarehouseLocation::Sqlite("data/wh.db".into()));
        let f: ConfigFile =
            serde_norway::from_str("warehouse: postgres://etl:pw@db:notaport/wh\n").unwrap();
        let err = c.apply(f, "test").unwrap_err().to_string();
        assert!(
            err.starts_with("test: warehouse: bad location postgres://etl:***@"),
            "{err}"
        );
        assert!(!err.contains(":pw@"), "{err}");
    }

    #[test]
    fn bad_environment_numbers_name_the_variable() {
        let err = ConfigFile::from_env(|k| (k == "PARALLELISM").then(|| "lots".to_string()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "environment: PARALLELISM: ORCHESTRATOR_PARALLELISM='lots' is not a whole number"
        );
    }
}
