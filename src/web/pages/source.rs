//! `GET /dags/{dag_id}/source`: a DAG's YAML and, for generated DAGs, the template it came
//! from; `?version=<hash>` shows the stored definition a run executed (the run page links
//! here with the run's `dag_version`). The text comes from the DAG bag or the store, never
//! from a path the request names.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{RawQuery, State};

use super::extract::Path;

use super::{PageError, links};
use crate::web::AppState;

/// The source page.
#[derive(Template, WebTemplate)]
#[template(path = "dag_source.html")]
pub struct SourcePage {
    dag_id: String,
    dag_href: String,
    path: String,
    project: Option<String>,
    yaml: String,
    template: Option<String>,
    version: String,
    current: bool,
    current_href: String,
}

/// `GET /dags/{dag_id}/source`.
pub async fn source(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<SourcePage, PageError> {
    let version = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "version")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty());
    let view = state
        .service
        .dag_source(&dag_id, version.as_deref())
        .await
        .map_err(|e| match &version {
            Some(v) if e.is_not_found() => {
                PageError::not_found(format!("DAG '{dag_id}' has no stored version '{v}'"))
            }
            _ => e.into(),
        })?;
    let mask = |text: &str| crate::redact::text(text).into_owned();
    Ok(SourcePage {
        dag_href: links::dag(&dag_id),
        current_href: links::dag_action(&dag_id, "source"),
        dag_id,
        path: mask(&view.path),
        project: view.project,
        yaml: mask(&view.yaml),
        template: view.template.as_deref().map(mask),
        version: view.version,
        current: view.current,
    })
}
