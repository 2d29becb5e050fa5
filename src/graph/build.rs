//! Builds the graph from raw rows: cleans each row, matches its title against every drug,
//! merges split records (two rows of one source kind with the same title and date whose
//! non-empty fields do not conflict are one publication), and assembles sorted nodes.
//! Rows that cannot take part are reported with their reason, never silently dropped.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use chrono::NaiveDate;

use super::clean::{clean_text, parse_date};
use super::matcher::DrugMatcher;
use super::{DrugNode, Graph, JournalLink, Mention};

/// Which kind of publication a row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A PubMed article.
    Pubmed,
    /// A clinical trial.
    ClinicalTrial,
}

/// A row of the drugs source.
#[derive(Clone, Debug, Default)]
pub struct RawDrug {
    /// 1-based row in its source.
    pub row: usize,
    /// ATC code.
    pub atccode: Option<String>,
    /// Name.
    pub drug: Option<String>,
}

/// A row of a publication source.
#[derive(Clone, Debug)]
pub struct RawPublication {
    /// Source table, for reports.
    pub source: String,
    /// 1-based row in its source.
    pub row: usize,
    /// PubMed or clinical trial.
    pub kind: Source,
    /// Id as text.
    pub id: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Date in one of the accepted formats.
    pub date: Option<String>,
    /// Journal.
    pub journal: Option<String>,
}

/// A row left out, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    /// Source table.
    pub source: String,
    /// 1-based row.
    pub row: usize,
    /// Why it cannot take part.
    pub reason: String,
}

/// What happened to the input.
#[derive(Debug, Default)]
pub struct Report {
    /// Drugs in the graph.
    pub drugs: usize,
    /// Publication rows read.
    pub rows: usize,
    /// Rows merged into another row of the same publication.
    pub merged: usize,
    /// Publications mentioning at least one drug.
    pub mentioning: usize,
    /// (drug, publication) mentions.
    pub mentions: usize,
    /// Rows left out.
    pub rejected: Vec<Rejected>,
}

struct Record {
    kind: Source,
    id: Option<String>,
    title: String,
    date: NaiveDate,
    journal: Option<String>,
    drugs: Vec<u32>,
}

/// Accumulates rows, then produces the graph.
pub struct GraphBuilder {
    drugs: Vec<(Option<String>, String)>,
    matcher: DrugMatcher,
    records: Vec<Record>,
    groups: HashMap<u64, Vec<usize>>,
    report: Report,
    scratch: Vec<u32>,
}

impl GraphBuilder {
    /// Cleans the drugs and builds the matcher.
    pub fn new(raw: impl IntoIterator<Item = RawDrug>) -> Result<Self, String> {
        let mut report = Report::default();
        let mut drugs: Vec<(Option<String>, String)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for d in raw {
            let Some(name) = d.drug.as_deref().and_then(clean_text) else {
                report.rejected.push(Rejected {
                    source: "drugs".into(),
                    row: d.row,
                    reason: "no drug name".into(),
                });
                continue;
            };
            let code = d.atccode.as_deref().and_then(clean_text);
            if !seen.insert((code.clone(), name.to_uppercase())) {
                report.rejected.push(Rejected {
                    source: "drugs".into(),
                    row: d.row,
                    reason: format!("duplicate of drug '{name}'"),
                });
                continue;
            }
            drugs.push((code, name));
        }
        let names: Vec<String> = drugs.iter().map(|(_, n)| n.clone()).collect();
        let matcher = DrugMatcher::new(&names)?;
        report.drugs = drugs.len();
        Ok(Self {
            drugs,
            matcher,
            records: Vec::new(),
            groups: HashMap::new(),
            report,
            scratch: Vec::new(),
        })
    }

    /// Adds one publication row.
    pub fn add(&mut self, raw: RawPublication) {
        self.report.rows += 1;
        let reject = |reason: String| Rejected {
            source: raw.source.clone(),
            row: raw.row,
            reason,
        };
        let Some(title) = raw.title.as_deref().and_then(clean_text) else {
            self.report.rejected.push(reject("no title".into()));
            return;
        };
        let date = match raw.date.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            None => return self.report.rejected.push(reject("no date".into())),
            Some(text) => match parse_date(text) {
                Some(d) => d,
                None => {
                    return self
                        .report
                        .rejected
                        .push(reject(format!("unreadable date '{text}'")));
                }
            },
        };
        self.scratch.clear();
        self.matcher.mentions(&title, &mut self.scratch);
        if self.scratch.is_empty() {
            return;
        }
        let record = Record {
            kind: raw.kind,
            id: raw.id.as_deref().and_then(clean_text),
            title,
            date,
            journal: raw.journal.as_deref().and_then(clean_text),
            drugs: self.scratch.clone(),
        };
        self.insert(record);
    }

    fn insert(&mut self, record: Record) {
        let mut h = DefaultHasher::new();
        (record.kind, &record.title, record.date).hash(&mut h);
        let group = self.groups.entry(h.finish()).or_default();
        for &i in group.iter() {
            let existing = &mut self.records[i];
            let same = existing.kind == record.kind
                && existing.title == record.title
                && existing.date == record.date;
            if same
                && compatible(&existing.id, &record.id)
                && compatible(&existing.journal, &record.journal)
            {
                fill(&mut existing.id, record.id);
                fill(&mut existing.journal, record.journal);
                self.report.merged += 1;
                return;
            }
        }
        group.push(self.records.len());
        self.records.push(record);
    }

    /// Assembles the sorted graph and the final report.
    pub fn finish(mut self) -> (Graph, Report) {
        let mut nodes: Vec<DrugNode> = self
            .drugs
            .iter()
            .map(|(code, name)| DrugNode {
                atccode: code.clone(),
                drug: name.clone(),
                pubmed: Vec::new(),
                clinical_trials: Vec::new(),
                journals: Vec::new(),
            })
            .collect();
        let mut journals: Vec<BTreeSet<JournalLink>> = vec![BTreeSet::new(); nodes.len()];
        self.report.mentioning = self.records.len();
        for r in &self.records {
            let date = r.date.format("%Y-%m-%d").to_string();
            let mention = Mention {
                id: r.id.clone(),
                title: r.title.clone(),
                date: date.clone(),
                journal: r.journal.clone(),
            };
            for &d in &r.drugs {
                let node = &mut nodes[d as usize];
                match r.kind {
                    Source::Pubmed => node.pubmed.push(mention.clone()),
                    Source::ClinicalTrial => node.clinical_trials.push(mention.clone()),
                }
                if let Some(j) = &r.journal {
                    journals[d as usize].insert(JournalLink {
                        journal: j.clone(),
                        date: date.clone(),
                    });
                }
                self.report.mentions += 1;
            }
        }
        for (node, links) in nodes.iter_mut().zip(journals) {
            node.pubmed.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
            node.clinical_trials
                .sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
            node.journals = links.into_iter().collect();
        }
        nodes.sort_by(|a, b| (&a.drug, &a.atccode).cmp(&(&b.drug, &b.atccode)));
        (Graph { drugs: nodes }, self.report)
    }
}

fn compatible(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    }
}

fn fill(slot: &mut Option<String>, value: Option<String>) {
    if slot.is_none() {
        *slot = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drugs(names: &[&str]) -> Vec<RawDrug> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| RawDrug {
                row: i + 1,
                atccode: Some(format!("C{i}")),
                drug: Some(n.to_string()),
            })
            .collect()
    }

    fn row(kind: Source, id: &str, title: &str, date: &str, journal: &str) -> RawPublication {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        RawPublication {
            source: "t".into(),
            row: 1,
            kind,
            id: opt(id),
            title: opt(title),
            date: opt(date),
            journal: opt(journal),
        }
    }

    #[test]
    fn split_records_with_compatible_fields_merge_into_one_publication() {
        let mut b = GraphBuilder::new(drugs(&["GLUCAGON"])).unwrap();
        b.add(row(
            Source::ClinicalTrial,
            "NCT1",
            "Glucagon infusion",
            "25/05/2020",
            "",
        ));
        b.add(row(
            Source::ClinicalTrial,
            "",
            "Glucagon  infusion ",
            "25/05/2020",
            "J of X",
        ));
        let (g, report) = b.finish();
        assert_eq!(report.merged, 1);
        let trials = &g.drugs[0].clinical_trials;
        assert_eq!(trials.len(), 1);
        assert_eq!(trials[0].id.as_deref(), Some("NCT1"));
        assert_eq!(trials[0].journal.as_deref(), Some("J of X"));
        assert_eq!(trials[0].date, "2020-05-25");
    }

    #[test]
    fn conflicting_or_differently_dated_rows_stay_apart() {
        let mut b = GraphBuilder::new(drugs(&["GLUCAGON"])).unwrap();
        b.add(row(
            Source::ClinicalTrial,
            "NCT1",
            "Glucagon",
            "2020-01-01",
            "A",
        ));
        b.add(row(
            Source::ClinicalTrial,
            "NCT2",
            "Glucagon",
            "2020-01-01",
            "A",
        ));
        b.add(row(
            Source::ClinicalTrial,
            "NCT1",
            "Glucagon",
            "2020-01-02",
            "A",
        ));
        b.add(row(Source::Pubmed, "NCT1", "Glucagon", "2020-01-01", "A"));
        let (g, report) = b.finish();
        assert_eq!(report.merged, 0);
        assert_eq!(g.drugs[0].clinical_trials.len(), 3);
        assert_eq!(g.drugs[0].pubmed.len(), 1);
        // Journals hold distinct (journal, date) pairs.
        assert_eq!(g.drugs[0].journals.len(), 2);
    }

    #[test]
    fn rows_without_title_or_readable_date_are_reported() {
        let mut b = GraphBuilder::new(drugs(&["X"])).unwrap();
        b.add(row(Source::Pubmed, "1", "  ", "2020-01-01", "J"));
        b.add(row(Source::Pubmed, "2", "X", "someday", "J"));
        b.add(row(Source::Pubmed, "3", "X", "", "J"));
        let (_, report) = b.finish();
        let reasons: Vec<&str> = report.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(
            reasons,
            vec!["no title", "unreadable date 'someday'", "no date"]
        );
    }

    #[test]
    fn drugs_are_cleaned_deduplicated_and_sorted() {
        let raw = vec![
            RawDrug {
                row: 1,
                atccode: Some("B".into()),
                drug: Some(" ZINC ".into()),
            },
            RawDrug {
                row: 2,
                atccode: Some("A".into()),
                drug: Some("ASPIRIN".into()),
            },
            RawDrug {
                row: 3,
                atccode: Some("B".into()),
                drug: Some("zinc".into()),
            },
            RawDrug {
                row: 4,
                atccode: None,
                drug: None,
            },
        ];
        let b = GraphBuilder::new(raw).unwrap();
        let (g, report) = b.finish();
        let names: Vec<&str> = g.drugs.iter().map(|d| d.drug.as_str()).collect();
        assert_eq!(names, vec!["ASPIRIN", "ZINC"]);
        assert_eq!(report.rejected.len(), 2);
        assert_eq!(report.rejected[0].reason, "duplicate of drug 'zinc'");
        assert_eq!(report.rejected[1].reason, "no drug name");
    }

    #[test]
    fn mentions_are_sorted_by_date_then_id() {
        let mut b = GraphBuilder::new(drugs(&["X"])).unwrap();
        b.add(row(Source::Pubmed, "2", "X b", "2020-01-02", "J"));
        b.add(row(Source::Pubmed, "9", "X a", "2020-01-01", "J"));
        b.add(row(Source::Pubmed, "1", "X c", "2020-01-02", "J"));
        let (g, _) = b.finish();
        let ids: Vec<&str> = g.drugs[0]
            .pubmed
            .iter()
            .filter_map(|m| m.id.as_deref())
            .collect();
        assert_eq!(ids, vec!["9", "1", "2"]);
    }
}
