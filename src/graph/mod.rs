//! The drug-mention graph: which publications (PubMed articles, clinical trials) and which
//! journals mention each drug, with dates. Built by the `drug_graph` task from cleaned rows
//! ([`clean`]) with a multi-pattern whole-word matcher ([`matcher`]), with a compact journal
//! index beside it ([`index`]); read back by the `graph` analyses ([`analysis`], streamed
//! over the file by [`stream`], or answered from the index).

pub mod analysis;
pub mod build;
pub mod clean;
pub mod index;
pub mod matcher;
pub mod stream;

use serde::{Deserialize, Serialize};

pub use build::{
    BuiltGraph, GraphBuilder, PreparedChunk, Preparer, RawDrug, RawPublication, Rejected, Report,
    Source, SpillPlan, sweep_stale,
};

/// The graph as written to `graph.json`.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    /// Every drug, sorted by name then ATC code.
    pub drugs: Vec<DrugNode>,
}

/// One drug and what mentions it.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct DrugNode {
    /// ATC code (`null` when the source had none).
    pub atccode: Option<String>,
    /// Drug name as in the drugs source (cleaned).
    pub drug: String,
    /// PubMed articles whose title mentions it, by date, id, title.
    pub pubmed: Vec<Mention>,
    /// Clinical trials whose title mentions it, same order.
    pub clinical_trials: Vec<Mention>,
    /// Each distinct (journal, date) through which it is mentioned, by journal then date.
    pub journals: Vec<JournalLink>,
}

/// A publication mentioning a drug.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mention {
    /// The source's id, as text (`null` when it had none).
    pub id: Option<String>,
    /// Cleaned title.
    pub title: String,
    /// Publication date (ISO `YYYY-MM-DD`).
    pub date: String,
    /// Journal (`null` when the source had none).
    pub journal: Option<String>,
}

impl Mention {
    /// The graph's order: by date, then id, title and journal.
    pub fn sort_key(&self) -> (&str, &Option<String>, &str, &Option<String>) {
        (&self.date, &self.id, &self.title, &self.journal)
    }
}

/// A journal mentioning a drug on a date.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JournalLink {
    /// Journal name.
    pub journal: String,
    /// Date of the mentioning publication.
    pub date: String,
}

/// `top_journals.json`: the journal(s) mentioning the most distinct drugs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TopJournals {
    /// The highest number of distinct drugs one journal mentions.
    pub max_distinct_drugs: usize,
    /// Every journal at that number, sorted.
    pub journals: Vec<String>,
}
