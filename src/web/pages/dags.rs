//! `GET /`: the DAG list — every DAG with its description, tags (chips that filter),
//! schedule, paused toggle, recent runs, last and next run, and a trigger form; a search box,
//! a paused/active filter and pages of [`PAGE_SIZE`]; the files that failed to load at the
//! top. The whole page comes from one [`Service::list_dags`](crate::service::Service) call
//! (which fetches the runs of all its DAGs at once), so it costs the same for 3 DAGs or 300.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{RawQuery, State};
use axum::http::Uri;

use super::dag_parts::{Controls, Mark, RunAt, Schedule, TagChip, generated, next_run};
use super::flash::Flash;
use super::{PageError, links};
use crate::dag::LoadError;
use crate::service::{DagQuery, DagSummary};
use crate::web::AppState;

/// DAGs per page.
pub const PAGE_SIZE: usize = 100;
/// Run marks per DAG.
const RECENT_RUNS: u32 = 10;

/// The list's filters, as read from and written to its query string.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filters {
    search: String,
    tags: Vec<String>,
    paused: Option<bool>,
    offset: usize,
}

impl Filters {
    /// Reads `?search=&tag=&tag=&paused=true|false&offset=` (unknown keys and bad numbers
    /// are ignored).
    pub fn parse(query: Option<&str>) -> Self {
        let mut filters = Self::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "search" => filters.search = value.trim().to_string(),
                "tag" if !value.is_empty() && !filters.tags.contains(&value.to_string()) => {
                    filters.tags.push(value.into_owned());
                }
                "paused" => filters.paused = value.parse().ok(),
                "offset" => filters.offset = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        filters
    }

    /// The list URL with these filters.
    fn url(&self) -> String {
        let offset = self.offset.to_string();
        let paused = self.paused.map(|p| p.to_string());
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if !self.search.is_empty() {
            pairs.push(("search", &self.search));
        }
        pairs.extend(self.tags.iter().map(|t| ("tag", t.as_str())));
        if let Some(p) = &paused {
            pairs.push(("paused", p));
        }
        if self.offset > 0 {
            pairs.push(("offset", &offset));
        }
        links::with_query("/", &links::query(&pairs))
    }

    /// These filters with `tag` added, or removed when it is there; back to the first page.
    fn toggling(&self, tag: &str) -> Self {
        let mut next = Self {
            offset: 0,
            ..self.clone()
        };
        match next.tags.iter().position(|t| t == tag) {
            Some(i) => {
                next.tags.remove(i);
            }
            None => next.tags.push(tag.to_string()),
        }
        next
    }

    fn chip(&self, tag: &str) -> TagChip {
        TagChip {
            name: tag.to_string(),
            href: self.toggling(tag).url(),
            active: self.tags.iter().any(|t| t == tag),
        }
    }

    fn is_filtered(&self) -> bool {
        !self.search.is_empty() || !self.tags.is_empty() || self.paused.is_some()
    }
}

/// One DAG of the list.
pub struct DagRow {
    id: String,
    href: String,
    description: Option<String>,
    tags: Vec<TagChip>,
    schedule: Schedule,
    /// Oldest first, so the newest is on the right as in Airflow.
    marks: Vec<Mark>,
    last: Option<RunAt>,
    next: Option<(String, String)>,
    /// Project and template file of a generated DAG.
    generated: Option<(String, String)>,
    controls: Controls,
}

/// A load error, split for display.
pub struct ErrorLine {
    location: String,
    message: String,
}

/// A link of the paused/active filter.
pub struct StatusLink {
    label: &'static str,
    href: String,
    current: bool,
}

/// The DAG list page.
#[derive(Template, WebTemplate)]
#[template(path = "dags.html")]
pub struct DagsPage {
    rows: Vec<DagRow>,
    errors: Vec<ErrorLine>,
    total: usize,
    first: usize,
    last: usize,
    newer: Option<String>,
    older: Option<String>,
    search: String,
    tags: Vec<TagChip>,
    hidden_tags: Vec<String>,
    paused_filter: Option<bool>,
    status_links: Vec<StatusLink>,
    filtered: bool,
    flash: Option<String>,
    live: bool,
}

/// `GET /`.
pub async fn dags(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    uri: Uri,
    flash: Flash,
) -> Result<(Flash, DagsPage), PageError> {
    let filters = Filters::parse(query.as_deref());
    let listing = state
        .service
        .list_dags(&DagQuery {
            search: Some(filters.search.clone()).filter(|s| !s.is_empty()),
            tags: filters.tags.clone(),
            paused: filters.paused,
            limit: PAGE_SIZE,
            offset: filters.offset,
            recent_runs: RECENT_RUNS,
        })
        .await?;
    let here = uri.path_and_query().map_or("/", |p| p.as_str());
    let rows: Vec<DagRow> = listing
        .dags
        .iter()
        .map(|d| row(d, &filters, here))
        .collect();
    let live = listing.dags.iter().any(|d| {
        d.recent
            .iter()
            .any(|r| crate::service::is_active(r, d.paused))
    });
    let page = DagsPage {
        first: (filters.offset + 1).min(listing.total),
        last: filters.offset + rows.len(),
        newer: (filters.offset > 0).then(|| {
            Filters {
                offset: filters.offset.saturating_sub(PAGE_SIZE),
                ..filters.clone()
            }
            .url()
        }),
        older: (filters.offset + PAGE_SIZE < listing.total).then(|| {
            Filters {
                offset: filters.offset + PAGE_SIZE,
                ..filters.clone()
            }
            .url()
        }),
        rows,
        errors: listing.errors.iter().map(error_line).collect(),
        total: listing.total,
        search: filters.search.clone(),
        tags: listing.all_tags.iter().map(|t| filters.chip(t)).collect(),
        hidden_tags: filters.tags.clone(),
        paused_filter: filters.paused,
        status_links: status_links(&filters),
        filtered: filters.is_filtered(),
        flash: flash.message().map(str::to_owned),
        live,
    };
    Ok((flash, page))
}

fn row(d: &DagSummary, filters: &Filters, here: &str) -> DagRow {
    let dag = &d.dag;
    DagRow {
        id: dag.id.to_string(),
        href: links::dag(dag.id.as_str()),
        description: dag
            .description
            .as_deref()
            .map(|d| crate::redact::text(d).into_owned()),
        tags: dag.tags.iter().map(|t| filters.chip(t)).collect(),
        schedule: Schedule::of(dag),
        marks: d.recent.iter().rev().map(Mark::of).collect(),
        last: d.recent.first().map(RunAt::of),
        next: next_run(d.next.as_ref()),
        generated: generated(dag),
        controls: Controls::new(dag.id.as_str(), d.paused, here),
    }
}

fn status_links(filters: &Filters) -> Vec<StatusLink> {
    [
        ("All", None),
        ("Active", Some(false)),
        ("Paused", Some(true)),
    ]
    .into_iter()
    .map(|(label, paused)| StatusLink {
        label,
        href: Filters {
            paused,
            offset: 0,
            ..filters.clone()
        }
        .url(),
        current: filters.paused == paused,
    })
    .collect()
}

/// `file:line` and the rest, secrets masked.
fn error_line(e: &LoadError) -> ErrorLine {
    let full = e.to_string();
    let mut location = e.file.display().to_string();
    if let Some(line) = e.line {
        location.push_str(&format!(":{line}"));
    }
    let message = full
        .strip_prefix(&format!("{location}: "))
        .map_or_else(|| full.clone(), str::to_owned);
    ErrorLine {
        location: crate::redact::text(&location).into_owned(),
        message: crate::redact::text(&message).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_survive_a_round_trip_through_the_url() {
        let f = Filters::parse(Some(
            "search=a+b&tag=x&tag=y%26z&tag=x&paused=true&offset=100",
        ));
        assert_eq!(f.search, "a b");
        assert_eq!(f.tags, ["x", "y&z"]);
        assert_eq!(f.paused, Some(true));
        assert_eq!(Filters::parse(Some(f.url().trim_start_matches("/?"))), f);
        assert_eq!(
            Filters::parse(Some("offset=-3&paused=maybe")),
            Filters::default()
        );
    }

    #[test]
    fn a_tag_chip_adds_its_tag_or_removes_it_and_goes_back_to_the_first_page() {
        let f = Filters::parse(Some("tag=x&offset=100"));
        assert_eq!(f.chip("y").href, "/?tag=x&tag=y");
        let x = f.chip("x");
        assert!(x.active);
        assert_eq!(x.href, "/");
    }
}
