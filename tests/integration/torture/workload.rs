//! The torture workload: DAG files, the shell script whose tries write the ledger, the CSV
//! the load DAG imports, and the seeded pseudo-random source of every "random" choice.

use crate::support::Env;

/// The shell ledger every shell try appends to (in the project folder).
pub const LEDGER: &str = "ledger.txt";

/// Rows of `in.csv`; each run of `wh` appends them once to the warehouse table `things`.
pub const CSV_ROWS: i64 = 7;

/// DAGs the test triggers (the child is triggered by `parent` only).
pub const SHELL_DAGS: [&str; 3] = ["chain", "fan", "parent"];
/// The warehouse DAG: import, then an append load, then an append-style SQL write.
pub const WAREHOUSE_DAG: &str = "wh";
/// The DAG `parent` triggers.
pub const CHILD_DAG: &str = "child";

/// Every (DAG, task) that is a shell task writing the ledger.
pub const SHELL_TASKS: [(&str, &str); 12] = [
    ("chain", "a"),
    ("chain", "b"),
    ("chain", "c"),
    ("fan", "start"),
    ("fan", "p1"),
    ("fan", "p2"),
    ("fan", "p3"),
    ("fan", "join"),
    ("parent", "before"),
    ("parent", "after"),
    ("child", "work"),
    ("child", "tail"),
];

/// `work.sh DAG RUN TASK TRY TICKS`: a `start` line, a `tick` line every 0.1 s, an `end`
/// line. Each line is one `>>` write of a short line, so lines never interleave; a try
/// still alive when a later try of its task starts shows as a line after that `start`.
const SCRIPT: &str = r#"line() { echo "$1 $D $R $T $N $(date +%s%N)" >> ledger.txt; }
D=$1 R=$2 T=$3 N=$4
line start
i=0
while [ "$i" -lt "$5" ]; do sleep 0.1; line tick; i=$((i + 1)); done
line end
"#;

/// Retries high enough that no run may fail however often its tries are interrupted.
const DEFAULTS: &str = "default_args:\n  retries: 40\n  retry_delay: 0\n";

fn shell(ticks: u32) -> String {
    format!(
        "{{type: shell, command: 'sh work.sh {{{{ dag_id }}}} {{{{ run_id }}}} \
         {{{{ task_id }}}} {{{{ try_number }}}} {ticks}'"
    )
}

fn task(id: &str, ticks: u32, upstream: &str) -> String {
    let deps = if upstream.is_empty() {
        String::new()
    } else {
        format!(", depends_on: [{upstream}]")
    };
    format!("  {id}: {}{deps}}}\n", shell(ticks))
}

/// A slow append-style write: it records this run's view of `things` in `totals`, after a
/// recursive count long enough that stops land inside the statement.
const TOTAL_SQL: &str = "CREATE TABLE IF NOT EXISTS totals (run_id TEXT, n INTEGER);
      INSERT INTO totals SELECT '{{ run_id }}', (SELECT COUNT(*) FROM things)
        FROM (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 300000)
              SELECT MAX(n) FROM c);";

/// Writes the DAGs, the script and the CSV into the project.
pub fn install(env: &Env) {
    std::fs::write(env.path("work.sh"), SCRIPT).unwrap();
    let mut csv = String::from("id,name\n");
    for i in 0..CSV_ROWS {
        csv.push_str(&format!("{i},name {i}\n"));
    }
    std::fs::write(env.path("in.csv"), csv).unwrap();
    std::fs::create_dir(env.path("imported_data")).unwrap();
    std::fs::create_dir(env.path("config")).unwrap();
    // A SIGTERM drains for a second, then interrupts what still runs.
    std::fs::write(
        env.path("config/orchestrator.yaml"),
        "shutdown_grace_secs: 1\n",
    )
    .unwrap();
    env.dag(
        "chain",
        &format!(
            "dag_id: chain\n{DEFAULTS}tasks:\n{}{}{}",
            task("a", 4, ""),
            task("b", 9, "a"),
            task("c", 3, "b")
        ),
    );
    env.dag(
        "fan",
        &format!(
            "dag_id: fan\n{DEFAULTS}tasks:\n{}{}{}{}{}",
            task("start", 2, ""),
            task("p1", 15, "start"),
            task("p2", 7, "start"),
            task("p3", 11, "start"),
            task("join", 2, "p1, p2, p3")
        ),
    );
    env.dag(
        "parent",
        &format!(
            "dag_id: parent\n{DEFAULTS}tasks:\n{}  kick:\n    type: trigger_dag\n    \
             trigger_dag_id: child\n    conf: {{parent: '{{{{ run_id }}}}'}}\n    \
             depends_on: [before]\n{}",
            task("before", 3, ""),
            task("after", 2, "kick")
        ),
    );
    env.dag(
        "child",
        &format!(
            "dag_id: child\n{DEFAULTS}tasks:\n{}{}",
            task("work", 14, ""),
            task("tail", 2, "work")
        ),
    );
    env.dag(
        "wh",
        &format!(
            "dag_id: wh\nmax_active_runs: 1\n{DEFAULTS}tasks:\n  \
             import: {{type: import, source: in.csv, table: things}}\n  \
             load: {{type: load, tables: [things], mode: append, depends_on: [import]}}\n  \
             total:\n    type: sql\n    depends_on: [load]\n    sql: |\n      {TOTAL_SQL}\n"
        ),
    );
}

/// splitmix64: small, seedable, good enough to pick moments and DAGs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}
