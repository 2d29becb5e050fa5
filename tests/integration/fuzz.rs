//! Property tests ("fuzzing", in process, with proptest) of the DAG loader and the CSV and
//! JSON readers (issue 9, item 10). Mutated inputs — the shipped DAGs and fixtures, the
//! sample data, with bytes flipped, cut, deleted, repeated, and hostile snippets inserted
//! (huge numbers and durations, deep nesting, alias bombs, control characters, invalid
//! UTF-8, broken templates) — must never panic or hang: each gives a result or an error
//! naming its file (and its line where there is one). Generated valid inputs must come back
//! exactly: every DAG field, every CSV and JSON value.
//!
//! `cargo test` runs a few hundred cases with a fixed seed; `bench/fuzz.sh` runs many more
//! (`PROPTEST_CASES`, and `PROPTEST_RNG_SEED` to replay a run). A failure prints the
//! smallest input found that still fails.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use orchestrator::dag::{Dag, load_dag_bag};
use orchestrator::data::csv_source::read_csv;
use orchestrator::data::json_source::read_json;
use orchestrator::data::parquet_io::{TableWriter, read_batches};
use orchestrator::data::table::text_at;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use serde_json::Value;

/// The runner: `cases` unless `PROPTEST_CASES` says otherwise, a fixed seed unless
/// `PROPTEST_RNG_SEED` gives one, and no regression files written into the source tree.
fn runner(cases: u32) -> TestRunner {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x0c4e_57a7);
    }
    config.failure_persistence = None;
    TestRunner::new(config)
}

fn check<S: Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let started = Instant::now();
    if let Err(e) = runner(cases).run(&strategy, test) {
        panic!("{e}");
    }
    eprintln!(
        "{} case(s) in {:?}",
        runner(cases).config().cases,
        started.elapsed()
    );
}

/// No case may take longer (a hang or a super-linear blow-up), even in a debug build on a
/// loaded machine.
const CASE_LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Mutations

/// One edit of a seed file; positions are taken modulo its length.
#[derive(Clone, Debug)]
enum Edit {
    Flip(usize, u8),
    Truncate(usize),
    Delete(usize, usize),
    /// Copies `len` bytes at `from` to `to`, `times` times.
    Repeat {
        from: usize,
        len: usize,
        to: usize,
        times: usize,
    },
    Insert(usize, usize),
}

/// Up to `max` edits (at least one).
fn edits(snippets: usize, max: usize) -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        3 => (any::<usize>(), 1..=255u8).prop_map(|(at, x)| Edit::Flip(at, x)),
        1 => any::<usize>().prop_map(Edit::Truncate),
        2 => (any::<usize>(), 1..40usize).prop_map(|(at, n)| Edit::Delete(at, n)),
        1 => (any::<usize>(), 1..60usize, any::<usize>(), 1..30usize)
            .prop_map(|(from, len, to, times)| Edit::Repeat { from, len, to, times }),
        5 => (any::<usize>(), 0..snippets).prop_map(|(at, s)| Edit::Insert(at, s)),
    ];
    prop::collection::vec(edit, 1..=max)
}

/// Applies `edits` to `seed`; inserted text comes from `snippets`. Inserts land at line
/// starts half of the time, so that keys and list items stay in YAML structure.
fn mutate(seed: &[u8], edits: &[Edit], snippets: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for edit in edits {
        let at = |p: usize, b: &[u8]| p % (b.len() + 1);
        match *edit {
            Edit::Flip(p, x) if !b.is_empty() => {
                let i = p % b.len();
                b[i] ^= x;
            }
            Edit::Flip(..) => {}
            Edit::Truncate(p) => b.truncate(at(p, &b)),
            Edit::Delete(p, n) => {
                let i = at(p, &b);
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Edit::Repeat {
                from,
                len,
                to,
                times,
            } => {
                let i = at(from, &b);
                let chunk: Vec<u8> = b[i..(i + len).min(b.len())].to_vec();
                let j = at(to, &b);
                let copies: Vec<u8> = chunk.repeat(times);
                b.splice(j..j, copies);
            }
            Edit::Insert(p, s) => {
                let mut j = at(p, &b);
                if p % 2 == 0 {
                    // To the start of that line.
                    j = b[..j]
                        .iter()
                        .rposition(|&c| c == b'\n')
                        .map_or(0, |n| n + 1);
                }
                b.splice(j..j, snippets[s].iter().copied());
            }
        }
    }
    b
}

/// Text meant to break a DAG file.
fn dag_snippets() -> Vec<Vec<u8>> {
    let mut s: Vec<Vec<u8>> = [
        // Numbers and durations out of every range.
        "1e30",
        "1e300",
        "1.9e19",
        "18446744073709551615",
        "-1",
        "-0",
        "300000y",
        "99999999999d",
        ".nan",
        ".inf",
        "0x7fffffffffffffff",
        "999999999999999999999999999999999999999",
        "retry_delay: 1e13\n",
        "  retries: 4294967296\n",
        "dagrun_timeout: 1e30\n",
        "default_args: {retry_delay: 1e300, execution_timeout: 300000y}\n",
        "max_active_runs: 0\n",
        "start_date: 99999-01-01\n",
        "end_date: 1970-01-01\n",
        "schedule: '* * * * * * *'\n",
        "schedule: '@hourly'\ncatchup: true\n",
        "timezone: Mars/Olympus\n",
        // Structure.
        ": ",
        "- ",
        "\n",
        "\n  ",
        "\n      ",
        "#",
        "'",
        "\"",
        "[",
        "]",
        "{",
        "}",
        ",",
        "? ",
        "|\n",
        ">-\n",
        "---\n",
        "...\n",
        "%YAML 1.2\n",
        "!!binary ",
        "!tag ",
        "!!map ",
        "~",
        "tasks:\n",
        "tasks: []\n",
        "tasks: ~\n",
        "tasks: [a, b]\n",
        "tasks: 1\n",
        "dag_id: ~\n",
        "dag_id: [x]\n",
        "dag_id: \"\\e[2J\"\n",
        "dag_id: \"a\\nb\"\n",
        "  z: {type: noop, depends_on: z}\n",
        "  y: {type: trigger_dag, trigger_dag_id: nope}\n",
        "  \"\\e[2J\": {type: noop}\n",
        "  1: {type: noop}\n",
        "  x:\n    type: shell\n",
        "    depends_on: [nope, nope]\n",
        "    trigger_rule: sometimes\n",
        "    type: sql\n",
        "    command: 'echo {{ ds'\n",
        "    command: '{{ x | nope }}'\n",
        "    command: \"{% for i in range(1000000000) %}x{% endfor %}\"\n",
        "{{ ",
        " }}",
        "{% ",
        " %}",
        "${project}",
        "${",
        "$${",
        "${vars.x}",
        // Anchors and aliases.
        "&a ",
        "*a",
        "<<: *a\n",
        "*nope",
        // Control characters and odd Unicode.
        "\u{1b}[2J",
        "\0",
        "\r",
        "\r\n",
        "\t",
        "\u{7f}",
        "\u{85}",
        "\u{2028}",
        "\u{feff}",
        "\u{fffe}",
        "\u{202e}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    // Invalid UTF-8.
    s.extend([
        b"\xff".to_vec(),
        b"\xc3".to_vec(),
        b"\xed\xa0\x80".to_vec(),
        b"\xf4\x90\x80\x80".to_vec(),
    ]);
    // Deep nesting, by brackets and by indentation.
    s.push(format!("p: {}{}\n", "[".repeat(80), "]".repeat(80)).into_bytes());
    s.push("[{".repeat(40).into_bytes());
    s.push(
        (1..70)
            .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
            .collect::<String>()
            .into_bytes(),
    );
    // An alias bomb (10^7 copies if expanded) and a long value.
    let mut bomb = format!("b0: &b0 [{}]\n", ["x"; 10].join(","));
    for level in 1..=7 {
        bomb.push_str(&format!(
            "b{level}: &b{level} [{}]\n",
            vec![format!("*b{}", level - 1); 10].join(",")
        ));
    }
    s.push(bomb.into_bytes());
    s.push(format!("description: '{}'\n", "x".repeat(20_000)).into_bytes());
    s
}

// ---------------------------------------------------------------------------------------
// The DAG loader

/// Plain DAG files: the shipped ones, then the invalid fixtures.
const PLAIN_SEEDS: [&[u8]; 15] = [
    include_bytes!("../../dags/example.yaml"),
    include_bytes!("../../dags/warehouse_report.yaml"),
    include_bytes!("../fixtures/invalid/bad_cron.yaml"),
    include_bytes!("../fixtures/invalid/bad_duration.yaml"),
    include_bytes!("../fixtures/invalid/bad_timezone.yaml"),
    include_bytes!("../fixtures/invalid/bad_trigger_rule.yaml"),
    include_bytes!("../fixtures/invalid/catchup_without_start.yaml"),
    include_bytes!("../fixtures/invalid/cycle.yaml"),
    include_bytes!("../fixtures/invalid/end_before_start.yaml"),
    include_bytes!("../fixtures/invalid/missing_upstream.yaml"),
    include_bytes!("../fixtures/invalid/never_fires.yaml"),
    include_bytes!("../fixtures/invalid/self_loop.yaml"),
    include_bytes!("../fixtures/invalid/unknown_key.yaml"),
    include_bytes!("../fixtures/invalid/unknown_task_argument.yaml"),
    include_bytes!("../fixtures/invalid/unknown_task_type.yaml"),
];

/// The shipped templates, all used by one project as `config/projects.yaml` does.
const TEMPLATES: [(&str, &[u8]); 4] = [
    ("import", include_bytes!("../../dags/templates/import.yaml")),
    ("load", include_bytes!("../../dags/templates/load.yaml")),
    (
        "process",
        include_bytes!("../../dags/templates/process.yaml"),
    ),
    (
        "orchestrator",
        include_bytes!("../../dags/templates/orchestrator.yaml"),
    ),
];

/// A DAG folder holding one plain DAG file, or the shipped templates and a projects list.
struct DagFolder {
    _dir: tempfile::TempDir,
    dags: PathBuf,
    projects: PathBuf,
    plain: PathBuf,
}

impl DagFolder {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let dags = dir.path().join("dags");
        std::fs::create_dir_all(dags.join("templates")).unwrap();
        let projects = dir.path().join("projects.yaml");
        std::fs::write(
            &projects,
            "projects:\n  - name: p\n    dags: [import, load, process, orchestrator]\n    \
             vars: {input_dir: data/sample}\n",
        )
        .unwrap();
        Self {
            plain: dags.join("f.yaml"),
            projects,
            dags,
            _dir: dir,
        }
    }

    fn template(&self, kind: &str) -> PathBuf {
        self.dags.join(format!("templates/{kind}.yaml"))
    }

    /// Loads `bytes` as the only plain DAG file.
    fn load_plain(&self, bytes: &[u8]) -> orchestrator::dag::DagBag {
        std::fs::write(&self.plain, bytes).unwrap();
        load_dag_bag(&self.dags, &self.dags.join("none.yaml"), 1 << 20)
    }

    /// Loads the shipped templates with template `which` replaced by `bytes`.
    fn load_templates(&self, which: usize, bytes: &[u8]) -> orchestrator::dag::DagBag {
        let _ = std::fs::remove_file(&self.plain);
        for (i, (kind, shipped)) in TEMPLATES.iter().enumerate() {
            std::fs::write(
                self.template(kind),
                if i == which { bytes } else { shipped },
            )
            .unwrap();
        }
        load_dag_bag(&self.dags, &self.projects, 1 << 20)
    }
}

/// Lines as YAML counts them: `\r\n`, `\r`, `\n`, and U+0085, U+2028 and U+2029 end one.
fn yaml_lines(bytes: &[u8]) -> usize {
    let text = String::from_utf8_lossy(bytes).replace("\r\n", "\n");
    1 + text
        .chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count()
}

/// What must hold for a plain file: one DAG and no error, or errors naming the file (with
/// a line inside it, escaped) and no DAG; and a DAG rebuilds from its stored version.
fn loaded_sanely(
    bag: &orchestrator::dag::DagBag,
    path: &Path,
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    if bag.errors.is_empty() {
        prop_assert_eq!(bag.dags.len(), 1);
        return dag_sane(bag.dags.values().next().unwrap(), path);
    }
    prop_assert!(
        bag.dags.is_empty(),
        "a file with errors gave a DAG: {:?}",
        bag.errors
    );
    for e in &bag.errors {
        error_sane(e, path, bytes)?;
    }
    Ok(())
}

fn dag_sane(dag: &Dag, path: &Path) -> Result<(), TestCaseError> {
    prop_assert!(!dag.tasks.is_empty());
    prop_assert_eq!(&dag.source.path, path);
    let century = Duration::from_secs(100 * 366 * 86_400);
    for task in &dag.tasks {
        prop_assert!(task.retry.delay <= century);
        prop_assert!(task.execution_timeout.is_none_or(|t| t <= century));
    }
    let again = Dag::from_version(&dag.version())
        .map_err(|e| TestCaseError::fail(format!("stored version does not rebuild: {e:?}")))?;
    prop_assert_eq!(&again.source.hash, &dag.source.hash);
    prop_assert_eq!(again.tasks.len(), dag.tasks.len());
    Ok(())
}

/// An error about `path` (whose content is `bytes`): named, with a line inside it, escaped.
fn error_sane(
    e: &orchestrator::dag::LoadError,
    path: &Path,
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    let shown = e.to_string();
    prop_assert_eq!(&e.file, path, "{}", shown);
    prop_assert!(shown.starts_with(&path.display().to_string()), "{}", shown);
    prop_assert!(
        !shown.chars().any(char::is_control),
        "unescaped: {:?}",
        shown
    );
    let line = e
        .line
        .ok_or_else(|| TestCaseError::fail(format!("no line: {shown}")))?;
    let lines = yaml_lines(bytes);
    prop_assert!(
        (1..=lines).contains(&line),
        "line {} of {}: {}",
        line,
        lines,
        shown
    );
    Ok(())
}

/// What must hold when template `which` was mutated: its errors are its own; the other
/// templates' DAGs all load, but for the orchestrator, which may lose a DAG it triggers.
fn templates_sane(
    bag: &orchestrator::dag::DagBag,
    folder: &DagFolder,
    which: usize,
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    let path = folder.template(TEMPLATES[which].0);
    let mut own = false;
    for e in &bag.errors {
        if e.file == path {
            own = true;
            error_sane(e, &path, bytes)?;
            prop_assert!(e.message.ends_with("(project 'p')"), "{}", e);
        } else {
            let orchestrator = folder.template("orchestrator");
            prop_assert_eq!(&e.file, &orchestrator, "{}", e);
            prop_assert!(
                e.message.ends_with("is not a loaded DAG (project 'p')"),
                "{}",
                e
            );
            error_sane(e, &orchestrator, TEMPLATES[3].1)?;
        }
    }
    for (i, (kind, _)) in TEMPLATES.iter().enumerate() {
        let id = format!("p_{kind}");
        match bag.dags.get(id.as_str()) {
            Some(dag) => dag_sane(dag, &folder.template(kind))?,
            None if i == which => prop_assert!(own, "{} neither loaded nor refused", id),
            None => prop_assert!(
                i == 3 && !bag.errors.is_empty(),
                "{} lost: {:?}",
                id,
                bag.errors
            ),
        }
    }
    Ok(())
}

#[test]
fn mutated_dag_files_load_or_fail_with_file_and_line() {
    let snippets = dag_snippets();
    let folder = DagFolder::new();
    // Half plain files (mostly the shipped ones), half the shipped templates.
    let seed = prop_oneof![
        2 => 0..2usize,
        1 => 2..PLAIN_SEEDS.len(),
        3 => PLAIN_SEEDS.len()..PLAIN_SEEDS.len() + TEMPLATES.len(),
    ];
    // Mostly one edit or two: a DAG file rarely survives more.
    let n = snippets.len();
    let edits = prop_oneof![3 => edits(n, 1), 1 => edits(n, 2), 1 => edits(n, 5)];
    let outcomes = [Cell::new(0u32), Cell::new(0)];
    check(300, (seed, edits), |(seed, edits)| {
        let started = Instant::now();
        let (ok, result) = match seed.checked_sub(PLAIN_SEEDS.len()) {
            None => {
                let bytes = mutate(PLAIN_SEEDS[seed], &edits, &snippets);
                let bag = folder.load_plain(&bytes);
                (
                    bag.errors.is_empty(),
                    loaded_sanely(&bag, &folder.plain, &bytes),
                )
            }
            Some(which) => {
                let bytes = mutate(TEMPLATES[which].1, &edits, &snippets);
                let bag = folder.load_templates(which, &bytes);
                (
                    bag.errors.is_empty(),
                    templates_sane(&bag, &folder, which, &bytes),
                )
            }
        };
        prop_assert!(
            started.elapsed() < CASE_LIMIT,
            "took {:?}",
            started.elapsed()
        );
        let o = &outcomes[usize::from(!ok)];
        o.set(o.get() + 1);
        result
    });
    explored(&outcomes);
}

/// Both outcomes must be common: mutations that break everything (or nothing) test little.
fn explored(outcomes: &[Cell<u32>; 2]) {
    let [ok, err] = outcomes.each_ref().map(Cell::get);
    eprintln!("{ok} loaded, {err} refused");
    assert!(
        ok * 20 > ok + err && err * 20 > ok + err,
        "ok/err: {ok}/{err}"
    );
}

/// A generated valid DAG.
#[derive(Clone, Debug)]
struct GenDag {
    id: String,
    description: String,
    tags: Vec<String>,
    params: BTreeMap<String, Value>,
    retries: u32,
    tasks: Vec<GenTask>,
}

#[derive(Clone, Debug)]
struct GenTask {
    id: String,
    doc: String,
    delay_secs: u64,
    /// Indices of earlier tasks.
    upstream: Vec<usize>,
}

/// A valid id: the id alphabet, but never only dots (those are refused, being path
/// segments in links).
fn id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,24}".prop_filter("not only dots", |id| !id.bytes().all(|b| b == b'.'))
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ]
}

fn gen_dag() -> impl Strategy<Value = GenDag> {
    let tasks = prop::collection::btree_set(id(), 1..12).prop_flat_map(|ids| {
        let n = ids.len();
        let tasks: Vec<_> = ids
            .into_iter()
            .enumerate()
            .map(|(i, id)| {
                (
                    Just(id),
                    any::<String>(),
                    0..3_000_000_000u64,
                    prop::sample::subsequence((0..i).collect::<Vec<_>>(), 0..=i.min(3)),
                )
                    .prop_map(|(id, doc, delay_secs, upstream)| GenTask {
                        id,
                        doc,
                        delay_secs,
                        upstream,
                    })
            })
            .collect();
        debug_assert_eq!(tasks.len(), n);
        tasks
    });
    (
        id(),
        any::<String>(),
        prop::collection::vec(any::<String>(), 0..4),
        prop::collection::btree_map(any::<String>(), scalar(), 0..5),
        any::<u32>(),
        tasks,
    )
        .prop_map(|(id, description, tags, params, retries, tasks)| GenDag {
            id,
            description,
            tags,
            params,
            retries,
            tasks,
        })
}

/// `s` as a YAML double-quoted scalar: printable ASCII as is, everything else escaped.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out + "\""
}

fn yaml_value(v: &Value) -> String {
    match v {
        Value::String(s) => quoted(s),
        other => other.to_string(),
    }
}

impl GenDag {
    fn yaml(&self) -> String {
        let mut y = format!(
            "dag_id: '{}'\ndescription: {}\ntags: [{}]\nparams:\n",
            self.id,
            quoted(&self.description),
            self.tags
                .iter()
                .map(|t| quoted(t))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (k, v) in &self.params {
            y.push_str(&format!("  {}: {}\n", quoted(k), yaml_value(v)));
        }
        y.push_str(&format!(
            "default_args:\n  retries: {}\ntasks:\n",
            self.retries
        ));
        for (i, t) in self.tasks.iter().enumerate() {
            let ups: Vec<String> = t
                .upstream
                .iter()
                .map(|&u| format!("'{}'", self.tasks[u].id))
                .collect();
            // Seconds as a bare number or with a unit, by turns.
            let delay = if i % 2 == 0 {
                t.delay_secs.to_string()
            } else {
                format!("{}s", t.delay_secs)
            };
            y.push_str(&format!(
                "  '{}':\n    type: noop\n    doc: {}\n    retry_delay: {delay}\n    depends_on: [{}]\n",
                t.id,
                quoted(&t.doc),
                ups.join(", ")
            ));
        }
        y
    }
}

#[test]
fn generated_valid_dags_load_with_every_value_intact() {
    let folder = DagFolder::new();
    check(100, gen_dag(), |g| {
        let yaml = g.yaml();
        let bag = folder.load_plain(yaml.as_bytes());
        prop_assert!(bag.errors.is_empty(), "{:?}\n{}", bag.errors, yaml);
        let dag = bag.dags.values().next().unwrap();
        prop_assert_eq!(dag.id.as_str(), g.id.as_str());
        prop_assert_eq!(dag.description.as_deref(), Some(g.description.as_str()));
        prop_assert_eq!(&dag.tags, &g.tags);
        let params: BTreeMap<String, Value> = dag
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        prop_assert_eq!(&params, &g.params);
        prop_assert_eq!(dag.source.text.as_str(), yaml.as_str());
        prop_assert_eq!(dag.tasks.len(), g.tasks.len());
        for (task, want) in dag.tasks.iter().zip(&g.tasks) {
            prop_assert_eq!(task.id.as_str(), want.id.as_str());
            prop_assert_eq!(task.doc.as_deref(), Some(want.doc.as_str()));
            prop_assert_eq!(task.retry.retries, g.retries);
            prop_assert_eq!(task.retry.delay, Duration::from_secs(want.delay_secs));
            let mut ups = task.upstream.clone();
            ups.sort_unstable();
            prop_assert_eq!(&ups, &want.upstream);
        }
        loaded_sanely(&bag, &folder.plain, yaml.as_bytes())
    });
}

// ---------------------------------------------------------------------------------------
// The CSV and JSON readers

/// What one import kept: columns as `name:type`, cells as text, rejects as (line, reason).
#[derive(Debug)]
struct Imported {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
    rejects: Vec<(u64, String)>,
}

/// Imports `bytes` from `dir/name` with the CSV or the JSON reader, as the `import` task does.
fn import(dir: &Path, name: &str, bytes: &[u8]) -> (PathBuf, Result<Imported, String>) {
    let input = dir.join(name);
    std::fs::write(&input, bytes).unwrap();
    let parquet = dir.join("t.parquet");
    let rejects = dir.join("t.rejects");
    let mut out = TableWriter::new(
        std::fs::File::create(&parquet).unwrap(),
        std::fs::File::create(&rejects).unwrap(),
        Vec::new(),
        "t",
    );
    let (file, shown) = (
        std::fs::File::open(&input).unwrap(),
        input.display().to_string(),
    );
    let read = if name.ends_with(".csv") {
        read_csv(file, &shown, b',', &mut out)
    } else {
        read_json(file, &shown, &mut out)
    };
    let result = read.and_then(|()| out.finish()).map_err(|e| e.to_string());
    let imported = result.map(|_| {
        let batches = read_batches(&parquet).unwrap();
        let columns = arrow_array::RecordBatchReader::schema(&batches)
            .fields()
            .iter()
            .map(|f| format!("{}:{}", f.name(), f.data_type()))
            .collect();
        let mut rows = Vec::new();
        for batch in batches {
            let batch = batch.unwrap();
            for i in 0..batch.num_rows() {
                rows.push(
                    batch
                        .columns()
                        .iter()
                        .map(|c| text_at(c.as_ref(), i).unwrap().map(|t| t.into_owned()))
                        .collect(),
                );
            }
        }
        let rejects = std::fs::read_to_string(&rejects)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (
                    v["line"].as_u64().unwrap(),
                    v["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        Imported {
            columns,
            rows,
            rejects,
        }
    });
    (input, imported)
}

/// What must hold for any input: a table whose rejects lie within the file, or an error
/// naming the file (or the table, for errors about the table as a whole).
fn imported_sanely(
    input: &Path,
    bytes: &[u8],
    result: &Result<Imported, String>,
) -> Result<(), TestCaseError> {
    match result {
        Ok(t) => {
            let lines = bytes.split(|&b| b == b'\n').count() as u64;
            for (line, reason) in &t.rejects {
                prop_assert!(
                    (1..=lines).contains(line),
                    "reject at line {} of {}: {}",
                    line,
                    lines,
                    reason
                );
            }
            for row in &t.rows {
                prop_assert_eq!(row.len(), t.columns.len());
            }
        }
        Err(e) => prop_assert!(
            e.contains(&input.display().to_string()) || e.starts_with("t: "),
            "error names neither file nor table: {}",
            e
        ),
    }
    Ok(())
}

fn data_snippets() -> Vec<Vec<u8>> {
    let mut s: Vec<Vec<u8>> = [
        "\"",
        ",",
        "\n",
        "\r\n",
        "\r",
        "\"\"",
        ";",
        "\t",
        " ",
        "\0",
        "\u{feff}",
        "\u{1b}[2J",
        "99999999999999999999",
        "18446744073709551615",
        "-9223372036854775809",
        "007",
        "-0",
        "+7",
        "1e400",
        "1.00000000000000000001",
        "nan",
        "inf",
        "true",
        "null",
        "{",
        "}",
        "[",
        "]",
        ":",
        "{\"id\": 1}",
        "[1, 2]",
        "{\"title\": [\"x\"]}",
        ",]",
        "\\",
        "\\u0000",
        "\\ud800",
        "\"\"\"",
        ",,,,\n",
        "a,b\n1,2,3\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    s.extend([b"\xff".to_vec(), b"\xc3".to_vec()]);
    s.push("x".repeat(5000).into_bytes());
    s.push(
        format!(
            "{}\n",
            (0..50)
                .map(|i| format!("c{i}"))
                .collect::<Vec<_>>()
                .join(",")
        )
        .into_bytes(),
    );
    s
}

const CSV_SEEDS: [&[u8]; 4] = [
    include_bytes!("../../data/sample/drugs.csv"),
    include_bytes!("../../data/sample/pubmed.csv"),
    include_bytes!("../../data/sample/clinical_trials.csv"),
    b"id,name,n,x\n\"007\",\"a, \"\"quoted\"\"\nname\",1,0.5\n2,b,,1e3\n\n3,c,3,\r\n",
];

const JSON_SEEDS: [&[u8]; 3] = [
    include_bytes!("../../data/sample/pubmed.json"),
    b"{\"id\": 1, \"t\": \"a\", \"n\": 0.5}\n{\"id\": 18446744073709551615, \"t\": [1], \"n\": null}\n",
    b"[{\"id\": \"007\", \"t\": {\"k\": \"v\"}},\n {\"id\": 2, \"t\": \"\\u00e9\\n\"},]\n",
];

#[test]
fn mutated_csv_and_json_import_or_fail_naming_the_file() {
    let snippets = data_snippets();
    let dir = tempfile::tempdir().unwrap();
    let strategy = (
        0..CSV_SEEDS.len() + JSON_SEEDS.len(),
        edits(snippets.len(), 5),
    );
    let outcomes = [Cell::new(0u32), Cell::new(0)];
    check(300, strategy, |(seed, edits)| {
        let (name, base) = match seed.checked_sub(CSV_SEEDS.len()) {
            None => ("in.csv", CSV_SEEDS[seed]),
            Some(j) => ("in.json", JSON_SEEDS[j]),
        };
        let bytes = mutate(base, &edits, &snippets);
        let started = Instant::now();
        let (input, result) = import(dir.path(), name, &bytes);
        prop_assert!(
            started.elapsed() < CASE_LIMIT,
            "took {:?}",
            started.elapsed()
        );
        let o = &outcomes[usize::from(result.is_err())];
        o.set(o.get() + 1);
        imported_sanely(&input, &bytes, &result)
    });
    explored(&outcomes);
}

/// A generated table: column names and, per row, each column's cell (`None`: absent).
#[derive(Clone, Debug)]
struct GenTable {
    names: Vec<String>,
    rows: Vec<Vec<Option<Value>>>,
}

/// Cells of one column, all of one kind, so that the table imports without a reject.
fn column_cells(kind: u8, rows: usize) -> BoxedStrategy<Vec<Option<Value>>> {
    let cell: BoxedStrategy<Value> = match kind {
        0 => any::<i64>().prop_map(Value::from).boxed(),
        1 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from)
            .boxed(),
        2 => "(0[0-9]{0,20})|[1-9][0-9]{18,30}"
            .prop_map(Value::from)
            .boxed(),
        3 => any::<bool>().prop_map(Value::from).boxed(),
        4 => prop::collection::vec(scalar(), 0..3)
            .prop_map(Value::from)
            .boxed(),
        _ => any::<String>().prop_map(Value::from).boxed(),
    };
    prop::collection::vec(prop::option::weighted(0.85, cell), rows).boxed()
}

fn gen_table() -> impl Strategy<Value = GenTable> {
    (prop::collection::btree_set("[a-z]{1,6}", 1..6), 1..25usize)
        .prop_flat_map(|(names, rows)| {
            let names: Vec<String> = names.into_iter().collect();
            let columns: Vec<_> = names
                .iter()
                .map(|_| (0..6u8).prop_flat_map(move |k| column_cells(k, rows)))
                .collect();
            (Just(names), columns)
        })
        .prop_map(|(names, columns)| {
            let rows = (0..columns[0].len())
                .map(|r| columns.iter().map(|c| c[r].clone()).collect())
                .collect();
            GenTable { names, rows }
        })
}

/// A CSV field for `v`: its text, quoted when it holds a delimiter, quote or line break.
fn csv_field(v: &Option<Value>) -> String {
    let text = match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) || text.starts_with('\u{feff}') {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// Whether the value stored for a cell is the cell, in a column of type `ty`: text as
/// written (blank is null), integers with the same text, floats with the same value.
fn same(source: Option<&str>, stored: Option<&str>, ty: &str) -> bool {
    let source = source.filter(|s| !s.trim().is_empty());
    match (source, stored) {
        (None, None) => true,
        (Some(s), Some(t)) => match ty {
            "Utf8" => s == t,
            "Int64" | "Boolean" => s.trim() == t,
            "Float64" => s.trim().parse::<f64>().ok() == t.parse::<f64>().ok(),
            _ => false,
        },
        _ => false,
    }
}

#[test]
fn generated_csv_tables_come_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    check(100, gen_table(), |g| {
        let mut csv = g.names.join(",") + "\n";
        for row in &g.rows {
            csv.push_str(&row.iter().map(csv_field).collect::<Vec<_>>().join(","));
            csv.push_str(if row.len() % 2 == 0 { "\r\n" } else { "\n" });
        }
        let (_, result) = import(dir.path(), "in.csv", csv.as_bytes());
        let t = result.map_err(TestCaseError::fail)?;
        prop_assert!(t.rejects.is_empty(), "{:?}\n{}", t.rejects, csv);
        let names: Vec<&str> = t
            .columns
            .iter()
            .map(|c| c.rsplit_once(':').unwrap().0)
            .collect();
        prop_assert_eq!(&names, &g.names);
        // Rows whose fields are all blank are skipped as blank lines.
        let kept: Vec<&Vec<Option<Value>>> = g
            .rows
            .iter()
            .filter(|r| {
                !r.iter()
                    .all(|v| csv_text(v).bytes().all(|b| b.is_ascii_whitespace()))
            })
            .collect();
        prop_assert_eq!(t.rows.len(), kept.len(), "{}", csv);
        for (got, want) in t.rows.iter().zip(kept) {
            for ((stored, source), column) in got.iter().zip(want).zip(&t.columns) {
                let ty = column.rsplit_once(':').unwrap().1;
                let text = csv_text(source);
                prop_assert!(
                    same(Some(&text), stored.as_deref(), ty),
                    "column {}: {:?} came back as {:?}\n{}",
                    column,
                    text,
                    stored,
                    csv
                );
            }
        }
        Ok(())
    });
}

fn csv_text(v: &Option<Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

#[test]
fn generated_json_tables_come_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    check(100, (gen_table(), any::<bool>()), |(g, lines)| {
        let objects: Vec<Value> = g
            .rows
            .iter()
            .map(|row| {
                let map: serde_json::Map<String, Value> = g
                    .names
                    .iter()
                    .zip(row)
                    .filter_map(|(n, v)| Some((n.clone(), v.clone()?)))
                    .collect();
                Value::Object(map)
            })
            .collect();
        let text = if lines {
            objects.iter().map(|o| o.to_string() + "\n").collect()
        } else {
            serde_json::to_string_pretty(&objects).unwrap()
        };
        let (input, result) = import(dir.path(), "in.json", text.as_bytes());
        // Columns come from the keys present: a table with none is an error naming the file.
        if objects
            .iter()
            .all(|o| o.as_object().is_some_and(serde_json::Map::is_empty))
        {
            let e = result.err().unwrap_or_default();
            prop_assert!(e.contains(&input.display().to_string()), "{}", e);
            return Ok(());
        }
        let t = result.map_err(TestCaseError::fail)?;
        prop_assert!(t.rejects.is_empty(), "{:?}\n{}", t.rejects, text);
        prop_assert_eq!(t.rows.len(), g.rows.len());
        for (got, want) in t.rows.iter().zip(&objects) {
            for (stored, column) in got.iter().zip(&t.columns) {
                let (name, ty) = column.rsplit_once(':').unwrap();
                let source = want.get(name).filter(|v| !v.is_null());
                let ok = match (source, stored.as_deref()) {
                    (None, None) => true,
                    (Some(Value::String(s)), stored) if ty == "Utf8" => Some(s.as_str()) == stored,
                    (Some(Value::String(s)), stored) => same(Some(s), stored, ty),
                    (Some(v), Some(t)) => match ty {
                        "Utf8" => serde_json::to_string(v).is_ok_and(|j| j == t),
                        "Int64" => v.as_i64().map(|i| i.to_string()).as_deref() == Some(t),
                        "Float64" => v.as_f64() == t.parse::<f64>().ok(),
                        "Boolean" => v.as_bool().map(|b| b.to_string()).as_deref() == Some(t),
                        _ => false,
                    },
                    _ => false,
                };
                prop_assert!(
                    ok,
                    "column {}: {:?} came back as {:?}\n{}",
                    column,
                    source,
                    stored,
                    text
                );
            }
        }
        Ok(())
    });
}
