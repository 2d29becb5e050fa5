//! The task log page (`/dags/{dag_id}/runs/{run_id}/tasks/{task_id}`, `?try=N`, default the
//! latest): the try's state and times, links to every try, and its log — the last
//! [`TAIL_LINES`] lines by default (`?all=1` for the whole of it), each with its time and
//! level, messages masked. While the try runs, `assets/app.js` follows it through
//! [`stream`]: server-sent events that carry each new batch of lines, the last seq as the
//! event id (so a reconnecting browser's `Last-Event-ID` resumes where it stopped), and a
//! final `end` event once the try has ended.

use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;

use super::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::Utc;
use futures_util::Stream;

use super::{PageError, duration, links, time};
use crate::ids::TaskId;
use crate::service::{RunRow, Service, TaskLogs, is_active};
use crate::state::TaskState;
use crate::tasks::LogLine;
use crate::web::{AppState, STREAM_KEEP_ALIVE};

/// Lines shown before "load all".
pub const TAIL_LINES: u32 = 1000;
/// How often a stream looks for new lines while its try runs.
const POLL: Duration = Duration::from_millis(250);
/// Lines sent in one event at most.
const BATCH: u32 = 500;

/// One log line as the page and the stream show it (the script builds the same markup).
#[derive(serde::Serialize)]
pub struct LineView {
    /// `12:00:01.234`.
    pub ts: String,
    /// The whole line's class (`lvl-error` colours it), or empty.
    pub line: &'static str,
    /// The level label's class.
    pub lvl: &'static str,
    /// The level, padded to one width.
    pub label: &'static str,
    /// The text, masked.
    pub msg: String,
}

impl LineView {
    fn new(line: &LogLine) -> Self {
        let (lvl, label) = match line.level {
            "ERROR" => ("lvl-error", "ERROR"),
            "WARN" => ("lvl-warn", "WARN "),
            "INFO" => ("lvl-info", "INFO "),
            "STDERR" => ("lvl-warn", "err  "),
            "DROP" => ("lvl-warn", "DROP "),
            _ => ("lvl-debug", "out  "),
        };
        Self {
            ts: line.ts.format("%H:%M:%S%.3f").to_string(),
            line: match line.level {
                "ERROR" => "lvl-error",
                "DROP" => "lvl-warn",
                _ => "",
            },
            lvl,
            label,
            msg: crate::redact::text(&line.message).into_owned(),
        }
    }
}

/// A link to one try.
pub struct TryLink {
    /// Its number.
    pub number: u32,
    /// The log page at that try.
    pub url: String,
    /// How it ended (`running` while it runs).
    pub state: &'static str,
    /// It is the try shown.
    pub current: bool,
}

/// The log page.
#[derive(Template, WebTemplate)]
#[template(path = "log.html")]
pub struct LogPage {
    dag_id: String,
    run_id: String,
    task_id: String,
    dag_url: String,
    run_url: String,
    task_url: String,
    /// The page follows the run: it is active and this view can still change.
    live: bool,
    /// The task instance's state (`none`: no status).
    state: &'static str,
    state_text: &'static str,
    tries: Vec<TryLink>,
    try_number: u32,
    start: String,
    end: String,
    duration: String,
    error: Option<String>,
    lines: Vec<LineView>,
    /// Lines before the tail were left out.
    earlier: bool,
    /// "load all" link.
    all_url: String,
    /// Where the script follows the try (only while it runs).
    stream_url: Option<String>,
    /// Why a task without a try will not run (and so never has a log), if it will not.
    not_run: Option<&'static str>,
}

/// Why a task with no try will not run, if it will not: its state says so, or its run
/// finished without it.
fn not_run(state: Option<TaskState>, run_finished: bool) -> Option<&'static str> {
    match state {
        Some(TaskState::UpstreamFailed) => Some("an upstream task failed"),
        Some(TaskState::Skipped) => Some("it was skipped"),
        None if run_finished => Some("its run finished without starting it"),
        _ => None,
    }
}

/// The log page's query.
#[derive(serde::Deserialize)]
pub struct LogQuery {
    /// The try (default: the latest).
    #[serde(rename = "try")]
    try_number: Option<String>,
    /// `1`: the whole log, not its tail.
    all: Option<String>,
}

/// `GET /dags/{dag_id}/runs/{run_id}/tasks/{task_id}`.
pub async fn page(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Result<LogPage, PageError> {
    let service = &state.service;
    let run = service.run(&dag_id, &run_id).await?;
    let wanted = parse_try(query.try_number.as_deref())?;
    let logs = service.task_logs(&run, &task_id, wanted).await?;
    let task = logs.instance.task_id.clone();
    let n = logs.try_number;
    let all = query
        .all
        .as_deref()
        .is_some_and(|v| v == "1" || v == "true");
    let Shown {
        lines,
        earlier,
        last_seq,
        running,
    } = shown_lines(service, &run, &task, n, all).await?;
    let (d, r, t) = (dag_id.as_str(), run_id.as_str(), task.as_str());
    let current = logs.tries.iter().find(|x| x.try_number == n);
    let end = current.and_then(|x| x.end_date);
    let start = current.map(|x| x.start_date);
    Ok(LogPage {
        // A try that ended keeps its log; only the latest-try view (a retry may start)
        // and a try not yet ended are worth following, and never the whole of a long log.
        live: is_active(&run, service.paused(&run.dag_id).await?)
            && (running || (wanted.is_none() && !all)),
        state: logs.instance.state.map_or("none", TaskState::as_str),
        state_text: logs.instance.state.map_or("no status", TaskState::as_str),
        tries: try_links(&logs, d, r, t),
        try_number: n,
        start: time(start),
        end: time(end),
        duration: duration(start, end.or(start.map(|_| Utc::now()))),
        error: current
            .and_then(|x| x.error.as_deref())
            .map(|e| crate::redact::text(e).into_owned()),
        lines: lines.iter().map(LineView::new).collect(),
        earlier,
        all_url: format!("{}&all=1", links::task_try(d, r, t, n)),
        stream_url: (n > 0 && running).then(|| links::log_stream(d, r, t, n, last_seq)),
        not_run: not_run(logs.instance.state, run.state.is_finished()),
        dag_url: links::dag(d),
        run_url: links::run(d, r),
        task_url: links::task(d, r, t),
        dag_id,
        run_id,
        task_id: task.to_string(),
    })
}

/// The lines a log page shows.
struct Shown {
    lines: Vec<LogLine>,
    /// Lines before these were left out.
    earlier: bool,
    /// Seq of the last line: where the stream starts.
    last_seq: u64,
    /// The try has not ended.
    running: bool,
}

/// Try `n`'s tail, or all of it; nothing before the first try.
async fn shown_lines(
    service: &Service,
    run: &RunRow,
    task: &TaskId,
    n: u32,
    all: bool,
) -> Result<Shown, PageError> {
    if n == 0 {
        return Ok(Shown {
            lines: Vec::new(),
            earlier: false,
            last_seq: 0,
            running: true,
        });
    }
    if all {
        let chunk = service.log_chunk(run, task, n, 0, u32::MAX).await?;
        return Ok(Shown {
            lines: chunk.lines,
            earlier: false,
            last_seq: chunk.last_seq,
            running: chunk.running,
        });
    }
    let tail = service.log_tail(run, task, n, TAIL_LINES).await?;
    Ok(Shown {
        lines: tail.lines,
        earlier: tail.earlier,
        last_seq: tail.last_seq,
        running: tail.running,
    })
}

fn try_links(logs: &TaskLogs, dag: &str, run: &str, task: &str) -> Vec<TryLink> {
    logs.tries
        .iter()
        .map(|x| TryLink {
            number: x.try_number,
            url: links::task_try(dag, run, task, x.try_number),
            state: x.state.as_str(),
            current: x.try_number == logs.try_number,
        })
        .collect()
}

/// `?try=N`: a number, or absent for the latest.
fn parse_try(value: Option<&str>) -> Result<Option<u32>, PageError> {
    match value {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                format!("try must be a number, not '{v}'"),
            )
        }),
    }
}

/// The stream's query.
#[derive(serde::Deserialize)]
pub struct StreamQuery {
    /// The try (default: the latest).
    #[serde(rename = "try")]
    try_number: Option<String>,
    /// The last seq the page has (`Last-Event-ID` wins when a browser reconnects).
    after: Option<String>,
}

/// `GET /dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs/stream?try=N&after=SEQ`.
pub async fn stream(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PageError> {
    let service = state.service;
    let run = service.run(&dag_id, &run_id).await?;
    let wanted = parse_try(query.try_number.as_deref())?;
    let logs = service.task_logs(&run, &task_id, wanted).await?;
    if logs.try_number == 0 {
        return Err(PageError::not_found(format!(
            "task '{task_id}' of run '{run_id}' has not started yet"
        )));
    }
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let after = resume
        .or_else(|| query.after.as_deref().and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    let follow = Follow {
        service,
        run,
        task: logs.instance.task_id,
        try_number: logs.try_number,
        after,
        ended: false,
        done: false,
    };
    let events = futures_util::stream::unfold(follow, |mut f| async move {
        let event = f.next_event().await?;
        Some((Ok(event), f))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(STREAM_KEEP_ALIVE)))
}

/// Where a stream stands.
struct Follow {
    service: Service,
    run: RunRow,
    task: TaskId,
    try_number: u32,
    /// The last seq sent.
    after: u64,
    /// The try was seen ended: one more empty read and the stream ends.
    ended: bool,
    /// `end` was sent.
    done: bool,
}

impl Follow {
    /// The next batch of lines, waiting for it while the try runs, or `end` once it has
    /// ended and every line was sent; `None` after that.
    async fn next_event(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        loop {
            let chunk = match self
                .service
                .log_chunk(&self.run, &self.task, self.try_number, self.after, BATCH)
                .await
            {
                Ok(chunk) => chunk,
                Err(e) => {
                    tracing::warn!(error = %e, "log stream: cannot read the log");
                    return Some(self.end());
                }
            };
            if !chunk.lines.is_empty() {
                // Lines read before the try was seen ended may not be the last ones, so the
                // end is only trusted after a read that started once it had ended.
                self.ended = self.ended || !chunk.running;
                self.after = chunk.last_seq;
                let views: Vec<LineView> = chunk.lines.iter().map(LineView::new).collect();
                let data = serde_json::to_string(&views).unwrap_or_else(|_| "[]".into());
                return Some(Event::default().id(self.after.to_string()).data(data));
            }
            if self.ended || self.engine_stopped() {
                return Some(self.end());
            }
            if chunk.running {
                tokio::time::sleep(POLL).await;
            } else {
                self.ended = true;
            }
        }
    }

    fn end(&mut self) -> Event {
        self.done = true;
        Event::default().event("end").data(self.after.to_string())
    }

    /// `serve` is shutting down: streams end so connections can close.
    fn engine_stopped(&self) -> bool {
        self.service.engine().is_some_and(|e| !e.is_running())
    }
}

#[cfg(test)]
mod tests;
