//! Turns one DAG file's text into a validated [`Dag`], collecting every problem with its
//! file, line, DAG and task: unknown keys and task types, bad ids, missing upstreams, cycles
//! (printed `a -> b -> a`), bad cron, bad durations, bad dates and time zones.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use petgraph::graph::{DiGraph, NodeIndex};
use serde_norway::{Mapping, Value};

use super::duration::DurationValue;
use super::raw::{COMMON_TASK_KEYS, DagFile, OVERRIDE_TASK_KEYS, TaskCommon, TaskDefaults};
use super::timetable::{Schedule, Timetable};
use super::{Dag, DagSource, LoadError, RetryPolicy, Task, TriggerRule};
use crate::ids::{DagId, TaskId, is_dot_segment, is_valid_id};

/// Why an id made only of dots is refused.
const DOTS: &str = "an id cannot be made only of dots (browsers resolve '.' and '..' in \
    links as the current and parent path)";
use crate::tasks::TaskKind;

/// One DAG's YAML text and where it came from.
pub struct DagText<'a> {
    /// File to name in errors.
    pub path: &'a Path,
    /// Generating project, for template DAGs.
    pub project: Option<&'a str>,
    /// Id to use when the file sets none (`<project>_<type>` for templates).
    pub default_dag_id: Option<String>,
    /// The YAML.
    pub text: String,
}

/// Collects problems for one file.
struct Problems<'a> {
    src: &'a DagText<'a>,
    dag_id: Option<String>,
    errors: Vec<LoadError>,
    /// Line of each task's key, found in one pass on first use: looking each task up in the
    /// text made building a DAG quadratic in its number of tasks.
    task_lines: std::cell::OnceCell<HashMap<String, usize>>,
}

impl Problems<'_> {
    fn add(&mut self, line: Option<usize>, task: Option<&str>, message: impl Into<String>) {
        self.errors.push(LoadError {
            file: self.src.path.to_path_buf(),
            // A key not found line by line (a document in flow style, `{dag_id: x, ...}`):
            // the document, which starts at line 1.
            line: line.or(Some(1)),
            dag_id: self.dag_id.clone(),
            task_id: task.map(str::to_string),
            message: message.into(),
        });
    }

    fn key_line(&self, key: &str) -> Option<usize> {
        top_level_line(&self.src.text, key)
    }

    /// The line of task `task`'s key, or of `tasks:` when it cannot be found (tasks written
    /// in flow style, `tasks: {a: {...}}`).
    fn task_line(&self, task: &str) -> Option<usize> {
        self.task_lines
            .get_or_init(|| task_lines(&self.src.text))
            .get(task)
            .copied()
            .or_else(|| self.key_line("tasks"))
    }
}

/// Validates one DAG file.
pub fn build_dag(src: &DagText<'_>) -> Result<Dag, Vec<LoadError>> {
    let mut p = Problems {
        src,
        dag_id: None,
        errors: Vec::new(),
        task_lines: std::cell::OnceCell::new(),
    };
    // Before any value is built: a few aliases can expand a small file to gigabytes.
    if let Err(e) = super::aliases::check_expansion(&src.text) {
        p.dag_id = src.default_dag_id.clone();
        p.add(e.line, None, e.message);
        return Err(p.errors);
    }
    let raw: DagFile = match serde_norway::from_str(&src.text) {
        Ok(raw) => raw,
        Err(e) => {
            // Name the DAG in the error when the file is at least YAML with a dag_id.
            p.dag_id = serde_norway::from_str::<Value>(&src.text)
                .ok()
                .and_then(|v| v.get("dag_id").and_then(Value::as_str).map(str::to_string))
                .or_else(|| src.default_dag_id.clone());
            // A missing field has no location: the document's start is where it is missing.
            let line = e.location().map_or(1, |l| yaml_line(&src.text, l.line()));
            p.add(Some(line), None, strip_location(&e.to_string()));
            return Err(p.errors);
        }
    };
    let dag_id = raw.dag_id.clone().or_else(|| src.default_dag_id.clone());
    let Some(dag_id) = dag_id else {
        p.add(Some(1), None, "missing field `dag_id`");
        return Err(p.errors);
    };
    p.dag_id = Some(dag_id.clone());
    if is_dot_segment(&dag_id) {
        p.add(
            p.key_line("dag_id"),
            None,
            format!("bad dag_id '{dag_id}': {DOTS}"),
        );
    } else if !is_valid_id(&dag_id) {
        p.add(
            p.key_line("dag_id"),
            None,
            format!("bad dag_id '{dag_id}': use letters, digits, '_', '-' and '.'"),
        );
    }
    let dag = build_fields(raw, DagId::new(dag_id), &mut p);
    match dag {
        Some(dag) if p.errors.is_empty() => Ok(dag),
        _ => Err(p.errors),
    }
}

fn build_fields(raw: DagFile, id: DagId, p: &mut Problems<'_>) -> Option<Dag> {
    let timezone = match raw.timezone.as_deref() {
        None => Tz::UTC,
        Some(name) => name.parse::<Tz>().unwrap_or_else(|_| {
            p.add(
                p.key_line("timezone"),
                None,
                format!("unknown timezone '{name}'"),
            );
            Tz::UTC
        }),
    };
    let mut date = |key: &str, text: Option<&String>| {
        let text = text?;
        parse_date(text, timezone)
            .map_err(|m| p.add(p.key_line(key), None, m))
            .ok()
    };
    let start_date = date("start_date", raw.start_date.as_ref());
    let end_date = date("end_date", raw.end_date.as_ref());
    let schedule = raw.schedule.as_deref().and_then(|s| {
        Schedule::parse(s)
            .map_err(|m| p.add(p.key_line("schedule"), None, m))
            .ok()
    });
    let dagrun_timeout = duration(p, "dagrun_timeout", None, raw.dagrun_timeout.as_ref());
    let defaults = TaskSettings::from_defaults(&raw.default_args, p);
    let tasks = build_tasks(&raw.tasks, &defaults, p);
    for (key, value) in [
        ("max_active_runs", raw.max_active_runs),
        ("max_active_tasks", raw.max_active_tasks),
    ] {
        if value == Some(0) {
            p.add(p.key_line(key), None, format!("{key} must be at least 1"));
        }
    }
    if let (Some(start), Some(end)) = (start_date, end_date)
        && end < start
    {
        p.add(
            p.key_line("end_date"),
            None,
            "end_date is before start_date: the DAG could never run",
        );
    }
    let catchup = raw.catchup.unwrap_or(false);
    // Without a start date there is nothing to catch up from (Airflow refuses it too).
    if catchup && schedule.is_some() && raw.start_date.is_none() {
        p.add(
            p.key_line("catchup"),
            None,
            "catchup: true needs a start_date to catch up from",
        );
    }
    let timetable = schedule.map(|schedule| Timetable {
        schedule,
        timezone,
        start_date,
        end_date,
        catchup,
    });
    let index = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.clone(), i))
        .collect();
    let hash = super::definition_hash(id.as_str(), &p.src.text);
    Some(Dag {
        id,
        description: raw.description,
        tags: raw.tags,
        schedule_text: raw.schedule,
        timetable,
        timezone,
        max_active_runs: raw.max_active_runs.unwrap_or(16),
        max_active_tasks: raw.max_active_tasks.unwrap_or(16),
        dagrun_timeout,
        params: raw.params,
        tasks,
        index,
        source: DagSource {
            path: p.src.path.to_path_buf(),
            project: p.src.project.map(str::to_string),
            text: p.src.text.clone(),
            hash,
        },
    })
}

/// Retry and timeout settings: the DAG's `default_args`, overridden per task.
#[derive(Clone)]
struct TaskSettings {
    retry: RetryPolicy,
    execution_timeout: Option<Duration>,
}

impl TaskSettings {
    fn from_defaults(d: &TaskDefaults, p: &mut Problems<'_>) -> Self {
        let base = TaskSettings {
            retry: RetryPolicy::default(),
            execution_timeout: None,
        };
        base.overridden(d, p, None)
    }

    fn overridden(&self, d: &TaskDefaults, p: &mut Problems<'_>, task: Option<&str>) -> Self {
        let mut s = self.clone();
        if let Some(r) = d.retries {
            s.retry.retries = r;
        }
        if let Some(b) = d.retry_exponential_backoff {
            s.retry.exponential_backoff = b;
        }
        if let Some(v) = duration(p, "retry_delay", task, d.retry_delay.as_ref()) {
            s.retry.delay = v;
        }
        if let Some(v) = duration(p, "max_retry_delay", task, d.max_retry_delay.as_ref()) {
            s.retry.max_delay = Some(v);
        }
        if let Some(v) = duration(p, "execution_timeout", task, d.execution_timeout.as_ref()) {
            s.execution_timeout = Some(v);
        }
        s
    }
}

fn duration(
    p: &mut Problems<'_>,
    key: &str,
    task: Option<&str>,
    value: Option<&DurationValue>,
) -> Option<Duration> {
    value?
        .parse()
        .map_err(|m| {
            let line = match task {
                Some(t) => p.task_line(t),
                // Top level, or inside `default_args:` (its own line there, or that of
                // `default_args:` in flow style).
                None => p.key_line(key).or_else(|| {
                    nested_line(&p.src.text, "default_args", key)
                        .or_else(|| p.key_line("default_args"))
                }),
            };
            p.add(line, task, format!("{key}: {m}"))
        })
        .ok()
}

fn build_tasks(raw: &Value, defaults: &TaskSettings, p: &mut Problems<'_>) -> Vec<Task> {
    let empty = Mapping::new();
    let raw = match raw {
        Value::Mapping(m) => m,
        // `tasks:` and `tasks: []` are empty; a missing `tasks` too.
        Value::Null => &empty,
        Value::Sequence(s) if s.is_empty() => &empty,
        other => {
            let what = match other {
                Value::Sequence(_) => "a list",
                Value::Tagged(_) => "a tagged value",
                _ => "a single value",
            };
            p.add(
                p.key_line("tasks"),
                None,
                format!(
                    "`tasks` must map each task id to its task (`extract: {{type: shell, command: ...}}`), not be {what}"
                ),
            );
            return Vec::new();
        }
    };
    if raw.is_empty() {
        // No `tasks:` at all: then line 1, where the document misses it.
        p.add(
            p.key_line("tasks"),
            None,
            "a DAG needs at least one task under `tasks:`",
        );
        return Vec::new();
    }
    let mut tasks = Vec::new();
    let mut upstream_names = Vec::new();
    for (key, value) in raw {
        let Some(id) = key.as_str() else {
            p.add(
                p.key_line("tasks"),
                None,
                format!("task ids must be text, found {key:?}"),
            );
            continue;
        };
        if let Some((task, ups)) = build_task(id, value, defaults, p) {
            tasks.push(task);
            upstream_names.push(ups);
        }
    }
    link_upstreams(&mut tasks, &upstream_names, p);
    if p.errors.is_empty() {
        check_cycles(&tasks, p);
    }
    tasks
}

fn build_task(
    id: &str,
    value: &Value,
    defaults: &TaskSettings,
    p: &mut Problems<'_>,
) -> Option<(Task, Vec<String>)> {
    let line = p.task_line(id);
    if is_dot_segment(id) {
        p.add(line, Some(id), format!("bad task id: {DOTS}"));
    } else if !is_valid_id(id) {
        p.add(
            line,
            Some(id),
            "bad task id: use letters, digits, '_', '-' and '.'",
        );
    }
    let Some(map) = value.as_mapping() else {
        p.add(
            line,
            Some(id),
            "a task must be a mapping with at least a `type`",
        );
        return None;
    };
    let [common, overrides, kind] = split_task_keys(map);
    let common: TaskCommon = serde_norway::from_value(Value::Mapping(common))
        .map_err(|e| p.add(line, Some(id), strip_location(&e.to_string())))
        .ok()?;
    let overrides: TaskDefaults = serde_norway::from_value(Value::Mapping(overrides))
        .map_err(|e| p.add(line, Some(id), strip_location(&e.to_string())))
        .ok()?;
    let kind = parse_kind(kind)
        .map_err(|m| p.add(line, Some(id), m))
        .ok()?;
    let trigger_rule = match common.trigger_rule.as_deref() {
        None => TriggerRule::default(),
        Some(r) => serde_norway::from_value(Value::String(r.to_string()))
            .map_err(|_| p.add(line, Some(id), format!("unknown trigger_rule '{r}' (use all_success, all_done, one_success, one_failed, none_failed, all_failed, none_failed_min_one_success, none_skipped or always)")))
            .ok()?,
    };
    let settings = defaults.overridden(&overrides, p, Some(id));
    let ups = common
        .depends_on
        .ids()
        .into_iter()
        .map(str::to_string)
        .collect();
    let task = Task {
        id: TaskId::new(id),
        kind,
        upstream: Vec::new(),
        downstream: Vec::new(),
        trigger_rule,
        retry: settings.retry,
        execution_timeout: settings.execution_timeout,
        doc: common.doc,
    };
    Some((task, ups))
}

/// Splits a task mapping into (common keys, retry/timeout overrides, type + type arguments).
fn split_task_keys(map: &Mapping) -> [Mapping; 3] {
    let mut parts = [Mapping::new(), Mapping::new(), Mapping::new()];
    for (k, v) in map {
        let slot = match k.as_str() {
            Some(k) if COMMON_TASK_KEYS.contains(&k) => 0,
            Some(k) if OVERRIDE_TASK_KEYS.contains(&k) => 1,
            _ => 2,
        };
        parts[slot].insert(k.clone(), v.clone());
    }
    parts
}

fn parse_kind(map: Mapping) -> Result<TaskKind, String> {
    if !map.contains_key("type") {
        return Err("missing field `type` (a task type: noop, shell, trigger_dag, import, load, sql or drug_graph)".into());
    }
    let kind: TaskKind = serde_norway::from_value(Value::Mapping(map)).map_err(|e| {
        let msg = strip_location(&e.to_string());
        if msg.starts_with("unknown variant") {
            msg.replacen("unknown variant", "unknown task type", 1)
        } else {
            msg
        }
    })?;
    kind.validate()?;
    crate::tasks::template::check_kind(&kind)?;
    Ok(kind)
}

fn link_upstreams(tasks: &mut [Task], names: &[Vec<String>], p: &mut Problems<'_>) {
    let index: HashMap<String, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.to_string(), i))
        .collect();
    for (i, ups) in names.iter().enumerate() {
        for up in ups {
            match index.get(up.as_str()) {
                Some(&u) if !tasks[i].upstream.contains(&u) => {
                    tasks[i].upstream.push(u);
                    tasks[u].downstream.push(i);
                }
                Some(_) => {}
                None => {
                    let id = tasks[i].id.to_string();
                    p.add(
                        p.task_line(&id),
                        Some(&id),
                        format!("depends_on '{up}', which is not a task of this DAG"),
                    );
                }
            }
        }
    }
}

fn check_cycles(tasks: &[Task], p: &mut Problems<'_>) {
    let mut graph = DiGraph::<usize, ()>::new();
    let nodes: Vec<NodeIndex> = (0..tasks.len()).map(|i| graph.add_node(i)).collect();
    for (i, t) in tasks.iter().enumerate() {
        for &u in &t.upstream {
            graph.add_edge(nodes[u], nodes[i], ());
        }
    }
    for scc in petgraph::algo::tarjan_scc(&graph) {
        let self_loop = scc.len() == 1 && graph.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let cycle = cycle_through(&graph, &scc);
        let names: Vec<&str> = cycle.iter().map(|n| tasks[graph[*n]].id.as_str()).collect();
        let first = names.first().copied().unwrap_or_default();
        p.add(
            p.task_line(first),
            None,
            format!("cycle: {}", names.join(" -> ")),
        );
    }
}

/// A cycle inside one strongly connected component, from its smallest task back to it.
fn cycle_through(graph: &DiGraph<usize, ()>, scc: &[NodeIndex]) -> Vec<NodeIndex> {
    let Some(&start) = scc.iter().min_by_key(|n| graph[**n]) else {
        return Vec::new();
    };
    let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        let mut next: Vec<NodeIndex> = graph.neighbors(n).filter(|m| scc.contains(m)).collect();
        next.sort_by_key(|m| graph[*m]);
        for m in next {
            if m == start {
                let mut back = Vec::new();
                let mut cur = Some(n);
                while let Some(c) = cur.filter(|c| *c != start) {
                    back.push(c);
                    cur = parent.get(&c).copied();
                }
                back.reverse();
                return [vec![start], back, vec![start]].concat();
            }
            if let std::collections::hash_map::Entry::Vacant(e) = parent.entry(m) {
                e.insert(n);
                queue.push_back(m);
            }
        }
    }
    vec![start, start]
}

/// Parses `2024-01-01`, `2024-01-01 06:00[:00]`, `2024-01-01T06:00:00` (in the DAG's zone)
/// or RFC 3339 with an offset.
pub fn parse_date(text: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    let naive = NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .or_else(|| {
            [
                "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%d %H:%M",
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%dT%H:%M",
            ]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        })
        .ok_or_else(|| format!("bad date '{t}' (use 2024-01-01, 2024-01-01 06:00 or RFC 3339)"))?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|d| d.with_timezone(&Utc))
        .ok_or_else(|| format!("date '{t}' does not exist in {tz}"))
}

fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// A line the YAML parser reported, within `text`: at the end of a file without a final
/// line break it names the line after the last.
pub(crate) fn yaml_line(text: &str, line: usize) -> usize {
    let mut breaks = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => breaks += 1,
            _ => {}
        }
    }
    line.clamp(1, breaks + 1)
}

/// The key of the block mapping entry on `line` (indentation trimmed), if it is one: a
/// plain, 'single-' or "double-quoted" key followed by `:`, after any tag (`!t`), anchor
/// (`&a`) or `? `. Escapes inside quotes are not decoded.
fn entry_key(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("? ") {
            rest = r.trim_start();
        } else if rest.starts_with(['!', '&']) {
            let end = rest.find(char::is_whitespace)?;
            rest = rest[end..].trim_start();
        } else {
            break;
        }
    }
    let (key, after) = match rest.chars().next()? {
        q @ ('"' | '\'') => {
            let body = &rest[1..];
            let end = body.find(q)?;
            (&body[..end], &body[end + 1..])
        }
        _ => {
            let end = rest.find(':')?;
            (rest[..end].trim_end(), &rest[end..])
        }
    };
    after.trim_start().starts_with(':').then_some(key)
}

/// The 1-based line of a top-level `key:` in `text`.
pub(crate) fn top_level_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| !l.starts_with(char::is_whitespace) && entry_key(l) == Some(key))
        .map(|i| i + 1)
}

/// The 1-based line of `key:` indented under the top-level `parent:` in `text` (block
/// style), if there is one.
fn nested_line(text: &str, parent: &str, key: &str) -> Option<usize> {
    let start = top_level_line(text, parent)?;
    for (i, l) in text.lines().enumerate().skip(start) {
        let trimmed = l.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if trimmed.len() == l.len() {
            return None;
        }
        if entry_key(trimmed) == Some(key) {
            return Some(i + 1);
        }
    }
    None
}

/// The key and 1-based line of each task under `tasks:` (block style): the entries
/// indented like the first one, up to the next top-level line.
fn task_entries(text: &str) -> impl Iterator<Item = (&str, usize)> {
    let start = top_level_line(text, "tasks").unwrap_or(usize::MAX);
    let mut indent = None;
    text.lines()
        .enumerate()
        .skip(start)
        .filter(|(_, l)| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#')
        })
        .take_while(|(_, l)| l.starts_with(char::is_whitespace))
        .filter_map(move |(i, l)| {
            let width = l.len() - l.trim_start().len();
            (*indent.get_or_insert(width) == width)
                .then(|| entry_key(l))
                .flatten()
                .map(|key| (key, i + 1))
        })
}

/// The 1-based line of each task's key (the first, if a key repeats), in one pass.
fn task_lines(text: &str) -> HashMap<String, usize> {
    let mut lines = HashMap::new();
    for (key, line) in task_entries(text) {
        lines.entry(key.to_string()).or_insert(line);
    }
    lines
}

/// The 1-based line of task `task:` under `tasks:` in `text`.
pub(crate) fn task_line(text: &str, task: &str) -> Option<usize> {
    task_entries(text)
        .find(|(key, _)| *key == task)
        .map(|(_, line)| line)
}

#[cfg(test)]
mod tests;
