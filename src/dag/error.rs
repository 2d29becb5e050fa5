//! Load errors: each names the file, and where known the line, DAG and task.

use std::fmt;
use std::path::PathBuf;

/// One problem found while loading DAG files; loading collects all of them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LoadError {
    /// The file the problem is in (as given, relative to the working directory).
    pub file: PathBuf,
    /// 1-based line, when it could be located.
    pub line: Option<usize>,
    /// The DAG concerned, when known.
    pub dag_id: Option<String>,
    /// The task concerned, when known.
    pub task_id: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl LoadError {
    /// An error about a whole file.
    pub fn file(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: None,
            dag_id: None,
            task_id: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(dag) = &self.dag_id {
            write!(f, "DAG '{dag}': ")?;
        }
        if let Some(task) = &self.task_id {
            write!(f, "task '{task}': ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for LoadError {}
