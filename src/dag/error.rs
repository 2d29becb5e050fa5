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
        // Everything here may come from a file: control characters are shown escaped, so
        // a DAG id like `\x1b[2J` cannot clear the reader's terminal or fake a line.
        write!(f, "{}", Escaped(&self.file.display().to_string()))?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(dag) = &self.dag_id {
            write!(f, "DAG '{}': ", Escaped(dag))?;
        }
        if let Some(task) = &self.task_id {
            write!(f, "task '{}': ", Escaped(task))?;
        }
        write!(f, "{}", Escaped(&self.message))
    }
}

impl std::error::Error for LoadError {}

/// Text shown with its control characters escaped (`\n`, `\u{1b}`).
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_files_are_shown_escaped() {
        let e = LoadError {
            line: Some(3),
            dag_id: Some("a\u{1b}[2J".into()),
            task_id: Some("t\nx".into()),
            ..LoadError::file("d.yaml", "bad\rvalue")
        };
        assert_eq!(
            e.to_string(),
            "d.yaml:3: DAG 'a\\u{1b}[2J': task 't\\nx': bad\\rvalue"
        );
    }
}
