//! `db clean`: deletes old runs, tries and logs through the service layer and prints the
//! rows per table.

use super::output::{json, table};
use super::{Config, DbCommand, Format, Outcome};

pub(super) async fn execute(config: &Config, cmd: DbCommand) -> anyhow::Result<Outcome> {
    match cmd {
        DbCommand::Clean {
            before,
            dry_run,
            output,
        } => clean(config, &before, dry_run, output.format).await,
    }
}

async fn clean(
    config: &Config,
    before: &str,
    dry_run: bool,
    format: Format,
) -> anyhow::Result<Outcome> {
    let report = super::open_runs(config)
        .await?
        .clean_db(before, dry_run)
        .await?;
    if format == Format::Json {
        json(&report)?;
        return Ok(Outcome::Success);
    }
    let r = &report.rows;
    let rows: Vec<Vec<String>> = [
        ("dag_run", r.dag_run),
        ("task_instance", r.task_instance),
        ("task_try", r.task_try),
        ("task_log", r.task_log),
        ("dag_version", r.dag_version),
        ("instance", r.instance),
    ]
    .iter()
    .map(|(t, n)| vec![t.to_string(), n.to_string()])
    .collect();
    let verb = if dry_run { "would delete" } else { "deleted" };
    println!(
        "{verb} finished runs that ended before {} (with their triggered runs):",
        report.before.to_rfc3339()
    );
    table(&["TABLE", "ROWS"], &rows);
    if dry_run {
        println!("dry run: nothing was deleted");
    }
    Ok(Outcome::Success)
}
