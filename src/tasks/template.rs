//! Run-time `{{ }}` templates (Jinja syntax, via minijinja) in task arguments.
//!
//! The executor renders every string in a task's config just before a try, with Airflow's
//! names: `ds`, `ds_nodash`, `ts`, `logical_date`, `data_interval_start`/`_end`, `run_id`,
//! `dag_id`, `task_id`, `try_number`, `params` (DAG params overlaid with the run's conf, as
//! Airflow does by default) and `conf`. Undefined names are errors, not empty strings.

use std::sync::OnceLock;

use chrono::{DateTime, SecondsFormat, Utc};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::{Map, Value};

use super::TaskKind;

/// The values a template can use.
#[derive(Debug, Serialize)]
pub struct TemplateValues {
    ds: String,
    ds_nodash: String,
    ts: String,
    logical_date: String,
    data_interval_start: String,
    data_interval_end: String,
    run_id: String,
    dag_id: String,
    task_id: String,
    try_number: u32,
    params: Map<String, Value>,
    conf: Value,
}

/// Identity and dates of the run a task belongs to.
pub struct RunInfo<'a> {
    /// DAG id.
    pub dag_id: &'a str,
    /// Run id.
    pub run_id: &'a str,
    /// Logical date (= data interval start).
    pub logical_date: DateTime<Utc>,
    /// Data interval end.
    pub data_interval_end: DateTime<Utc>,
    /// DAG-level params.
    pub params: &'a Map<String, Value>,
    /// The run's conf.
    pub conf: &'a Value,
}

impl TemplateValues {
    /// Builds the values for one try of `task_id` in `run`.
    pub fn new(run: &RunInfo<'_>, task_id: &str, try_number: u32) -> Self {
        let iso = |d: DateTime<Utc>| d.to_rfc3339_opts(SecondsFormat::Secs, false);
        let mut params = run.params.clone();
        if let Value::Object(conf) = run.conf {
            params.extend(conf.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Self {
            ds: run.logical_date.format("%Y-%m-%d").to_string(),
            ds_nodash: run.logical_date.format("%Y%m%d").to_string(),
            ts: iso(run.logical_date),
            logical_date: iso(run.logical_date),
            data_interval_start: iso(run.logical_date),
            data_interval_end: iso(run.data_interval_end),
            run_id: run.run_id.to_string(),
            dag_id: run.dag_id.to_string(),
            task_id: task_id.to_string(),
            try_number,
            params,
            conf: run.conf.clone(),
        }
    }
}

/// Steps one rendering may take (a loop iteration costs a few): plenty for any real
/// argument, and bounds a runaway `{% for %}` to well under a second.
pub const TEMPLATE_FUEL: u64 = 2_000_000;
/// Largest rendered value accepted.
pub const MAX_RENDERED_BYTES: usize = 1024 * 1024;

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env
    })
}

/// Renders one string; text without `{{`/`{%` is returned as is.
pub fn render_str(text: &str, values: &TemplateValues) -> Result<String, String> {
    if !text.contains("{{") && !text.contains("{%") {
        return Ok(text.to_string());
    }
    let rendered = environment()
        .render_str(text, values)
        .map_err(|e| format!("template '{text}': {e}"))?;
    if rendered.len() > MAX_RENDERED_BYTES {
        return Err(format!(
            "template '{text}': renders {} bytes, more than the {MAX_RENDERED_BYTES} allowed",
            rendered.len()
        ));
    }
    Ok(rendered)
}

/// Checks a task's templates at load time: syntax errors, unknown filters, tests and
/// functions, and templates that run out of fuel are reported by `dags validate` rather
/// than at run time. Undefined names are not errors here (`conf` is only known per run).
pub fn check_kind(kind: &TaskKind) -> Result<(), String> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    let env = ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env
    });
    let sample = TemplateValues::new(
        &RunInfo {
            dag_id: "dag",
            run_id: "manual__2024-01-01T00:00:00+00:00",
            logical_date: DateTime::<Utc>::UNIX_EPOCH,
            data_interval_end: DateTime::<Utc>::UNIX_EPOCH,
            params: &Map::new(),
            conf: &Value::Object(Map::new()),
        },
        "task",
        1,
    );
    let value = serde_json::to_value(kind).map_err(|e| e.to_string())?;
    let mut texts = Vec::new();
    collect_templates(&value, &mut texts);
    for text in texts {
        let template = env
            .template_from_str(text)
            .map_err(|e| format!("template '{text}': {e}"))?;
        if let Err(e) = template.render(&sample) {
            use minijinja::ErrorKind::*;
            if matches!(
                e.kind(),
                SyntaxError | UnknownFilter | UnknownTest | UnknownFunction | OutOfFuel
            ) {
                return Err(format!("template '{text}': {e}"));
            }
        }
    }
    Ok(())
}

fn collect_templates<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) if s.contains("{{") || s.contains("{%") => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| collect_templates(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_templates(v, out)),
        _ => {}
    }
}

/// Renders every string inside a task's config and rebuilds the typed config.
pub fn render_kind(kind: &TaskKind, values: &TemplateValues) -> Result<TaskKind, String> {
    let value = serde_json::to_value(kind).map_err(|e| e.to_string())?;
    let rendered = render_value(value, values)?;
    serde_json::from_value(rendered).map_err(|e| format!("after rendering templates: {e}"))
}

fn render_value(value: Value, values: &TemplateValues) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => Value::String(render_str(&s, values)?),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| render_value(v, values))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| Ok((k, render_value(v, values)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> TemplateValues {
        let params: Map<String, Value> =
            serde_json::from_str(r#"{"region": "eu", "n": 1}"#).unwrap();
        let conf = serde_json::json!({"n": 2});
        let date = DateTime::parse_from_rfc3339("2024-03-05T00:00:00Z")
            .unwrap()
            .to_utc();
        let run = RunInfo {
            dag_id: "d",
            run_id: "manual__x",
            logical_date: date,
            data_interval_end: date,
            params: &params,
            conf: &conf,
        };
        TemplateValues::new(&run, "t", 1)
    }

    #[test]
    fn airflow_names_render() {
        let v = values();
        assert_eq!(
            render_str("{{ ds }} {{ ds_nodash }}", &v).unwrap(),
            "2024-03-05 20240305"
        );
        assert_eq!(
            render_str("{{ params.region }}/{{ dag_id }}", &v).unwrap(),
            "eu/d"
        );
        assert_eq!(
            render_str("{{ ts }}", &v).unwrap(),
            "2024-03-05T00:00:00+00:00"
        );
    }

    #[test]
    fn conf_overrides_params_like_airflow() {
        assert_eq!(
            render_str("{{ params.n }} {{ conf.n }}", &values()).unwrap(),
            "2 2"
        );
    }

    #[test]
    fn runaway_templates_run_out_of_fuel_or_size() {
        let loop_ =
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
        let err = render_str(loop_, &values()).unwrap_err();
        assert!(err.contains("engine ran out of fuel"), "{err}");
        let big = "{% for i in range(100000) %}{{ '0123456789' * 2 }}{% endfor %}";
        let err = render_str(big, &values()).unwrap_err();
        assert!(err.contains("more than the 1048576 allowed"), "{err}");
    }

    #[test]
    fn template_mistakes_are_found_at_load_time() {
        let shell = |command: &str| {
            serde_json::from_value::<TaskKind>(
                serde_json::json!({"type": "shell", "command": command}),
            )
            .unwrap()
        };
        let err = check_kind(&shell("echo {{ x")).unwrap_err();
        assert!(
            err.starts_with("template 'echo {{ x': syntax error"),
            "{err}"
        );
        let err = check_kind(&shell("echo {{ ds | nope }}")).unwrap_err();
        assert!(err.contains("unknown filter"), "{err}");
        let err = check_kind(&shell(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        ))
        .unwrap_err();
        assert!(err.contains("out of fuel"), "{err}");
        // Names only known per run are fine here.
        check_kind(&shell("echo {{ conf.table }} {{ params.region | upper }}")).unwrap();
    }

    #[test]
    fn an_undefined_name_is_an_error() {
        let err = render_str("{{ params.nope }}", &values()).unwrap_err();
        assert!(err.starts_with("template '{{ params.nope }}':"), "{err}");
    }
}
