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
