//! Analyses of a built graph: the journals mentioning the most distinct drugs, and the
//! drugs related to a drug through the journals that mention it in PubMed.

use std::collections::{BTreeMap, BTreeSet};

use super::{Graph, TopJournals};

/// Journal(s) that mention the most distinct drugs (through PubMed or clinical trials).
pub fn top_journals(graph: &Graph) -> TopJournals {
    let mut drugs_per_journal: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for node in &graph.drugs {
        for link in &node.journals {
            drugs_per_journal
                .entry(&link.journal)
                .or_default()
                .insert(&node.drug);
        }
    }
    let max = drugs_per_journal
        .values()
        .map(BTreeSet::len)
        .max()
        .unwrap_or(0);
    let journals = drugs_per_journal
        .iter()
        .filter(|(_, d)| max > 0 && d.len() == max)
        .map(|(j, _)| j.to_string())
        .collect();
    TopJournals {
        max_distinct_drugs: max,
        journals,
    }
}

/// Drugs mentioned in PubMed by the journals that mention `drug` in PubMed, except `drug`
/// itself and drugs that those journals mention through clinical trials. Sorted.
pub fn related_drugs(graph: &Graph, drug: &str) -> Result<Vec<String>, String> {
    let wanted = drug.trim();
    let node = graph
        .drugs
        .iter()
        .find(|n| n.drug.eq_ignore_ascii_case(wanted))
        .ok_or_else(|| format!("drug '{wanted}' is not in the graph"))?;
    let journals: BTreeSet<&str> = node
        .pubmed
        .iter()
        .filter_map(|m| m.journal.as_deref())
        .collect();
    let in_journals = |ms: &[super::Mention]| {
        ms.iter()
            .any(|m| m.journal.as_deref().is_some_and(|j| journals.contains(j)))
    };
    let related: BTreeSet<String> = graph
        .drugs
        .iter()
        .filter(|n| {
            n.drug != node.drug && in_journals(&n.pubmed) && !in_journals(&n.clinical_trials)
        })
        .map(|n| n.drug.clone())
        .collect();
    Ok(related.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{DrugNode, JournalLink, Mention};

    fn node(drug: &str, pubmed: &[&str], trials: &[&str]) -> DrugNode {
        let m = |j: &&str| Mention {
            id: None,
            title: "t".into(),
            date: "2020-01-01".into(),
            journal: Some(j.to_string()),
        };
        let mut journals: Vec<JournalLink> = pubmed
            .iter()
            .chain(trials)
            .map(|j| JournalLink {
                journal: j.to_string(),
                date: "2020-01-01".into(),
            })
            .collect();
        journals.sort();
        journals.dedup();
        DrugNode {
            atccode: None,
            drug: drug.into(),
            pubmed: pubmed.iter().map(m).collect(),
            clinical_trials: trials.iter().map(m).collect(),
            journals,
        }
    }

    fn graph() -> Graph {
        Graph {
            drugs: vec![
                node("A", &["J1", "J2"], &[]),
                node("B", &["J1"], &[]),
                node("C", &["J2"], &["J2"]),
                node("D", &["J3"], &[]),
                node("E", &[], &["J1"]),
            ],
        }
    }

    #[test]
    fn top_journals_lists_every_journal_tied_at_the_maximum() {
        let top = top_journals(&graph());
        assert_eq!(top.max_distinct_drugs, 3);
        assert_eq!(top.journals, vec!["J1"]);
        assert_eq!(
            top_journals(&Graph::default()).journals,
            Vec::<String>::new()
        );
    }

    #[test]
    fn related_drugs_share_a_pubmed_journal_and_are_not_in_its_trials() {
        // A's PubMed journals: J1, J2. B (J1) is related; C is in J2's trials; E only in trials.
        assert_eq!(related_drugs(&graph(), "a").unwrap(), vec!["B"]);
        assert_eq!(related_drugs(&graph(), "D").unwrap(), Vec::<String>::new());
        assert_eq!(
            related_drugs(&graph(), "Z").unwrap_err(),
            "drug 'Z' is not in the graph"
        );
    }
}
