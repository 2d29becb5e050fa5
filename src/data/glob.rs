//! Local globs (`data/*.csv`, `logs/**/*.json`), walked in sorted order and handed to the
//! caller one file at a time, so a glob of millions of files never holds their paths: only
//! the listing of the folders on the current branch of the walk, packed into one buffer
//! each. `*` does not cross `/`; symbolic links to folders are not followed (no loops).
//! Nothing is skipped silently: a folder that cannot be listed fails the walk, and folders
//! the pattern matches (they are not files) are reported to the caller.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

use super::DataError;

/// How many matched folders [`Walked`] names.
const FOLDERS_NAMED: usize = 3;

/// What a walk found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Walked {
    /// Files handed to the caller.
    pub files: u64,
    /// Folders the pattern matches (they are walked, not read): the first few, shown.
    pub folders: Vec<String>,
    /// Matched folders beyond those named.
    pub more_folders: u64,
}

/// Calls `visit` with the path of every file (or symbolic link to one, or to nothing)
/// matching `pattern`, in sorted order, as relative as the pattern is. A missing base folder
/// matches nothing; any other error listing a folder fails with the folder named.
pub fn walk(
    pattern: &str,
    mut visit: impl FnMut(&Path) -> Result<(), DataError>,
) -> Result<Walked, DataError> {
    let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
    let matcher =
        matcher(pattern).map_err(|e| DataError::Format(format!("bad glob '{pattern}': {e}")))?;
    let prune = Prune::new(pattern);
    // Walk from the longest prefix without glob characters.
    let base: PathBuf = Path::new(pattern)
        .components()
        .take_while(|c| !c.as_os_str().as_bytes().iter().any(|b| b"*?[{".contains(b)))
        .collect();
    let mut walked = Walked::default();
    let Some(listing) = Listing::read(&base, true)? else {
        return Ok(walked);
    };
    let mut stack = vec![(base, listing, 0)];
    while let Some((dir, listing, next)) = stack.last_mut() {
        let Some((name, kind)) = listing.get(*next) else {
            stack.pop();
            continue;
        };
        *next += 1;
        let path = dir.join(name);
        let folder = match kind {
            Kind::Folder => true,
            // Only a link the pattern matches needs a look at its target.
            Kind::Link => matcher.is_match(&path) && path.is_dir(),
            Kind::Other => false,
        };
        if kind == Kind::Folder && prune.descend(&path) {
            let listing = Listing::read(&path, false)?.unwrap_or_default();
            stack.push((path.clone(), listing, 0));
        }
        if !matcher.is_match(&path) {
            continue;
        }
        if folder {
            if !prune.folders_expected {
                walked.note_folder(&path);
            }
        } else {
            visit(&path)?;
            walked.files += 1;
        }
    }
    Ok(walked)
}

impl Walked {
    fn note_folder(&mut self, path: &Path) {
        if self.folders.len() < FOLDERS_NAMED {
            self.folders.push(path.display().to_string());
        } else {
            self.more_folders += 1;
        }
    }
}

fn matcher(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    Ok(GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()?
        .compile_matcher())
}

/// Which folders can hold matches: a folder is entered only if the pattern's leading parts
/// match it, so `data/*.csv` lists `data/` alone, not every folder below it.
struct Prune {
    /// The pattern cut after its 1st, 2nd, ... part; `None` when it cannot be cut safely
    /// (a `{a,b/c}` alternation may span parts): then every folder is entered.
    prefixes: Option<Vec<GlobMatcher>>,
    /// The index of the first part with `**`: folders at or below it are always entered.
    deep: Option<usize>,
    /// Whether the pattern ends in `**`, which matches folders as a matter of course.
    folders_expected: bool,
}

impl Prune {
    fn new(pattern: &str) -> Self {
        let parts: Vec<Component> = Path::new(pattern).components().collect();
        let deep = parts
            .iter()
            .position(|c| c.as_os_str().as_bytes().windows(2).any(|w| w == b"**"));
        let cut = deep.unwrap_or(parts.len().saturating_sub(1));
        let prefixes = (!pattern.contains('{'))
            .then(|| {
                (1..=cut)
                    .map(|k| {
                        let prefix: PathBuf = parts[..k].iter().collect();
                        matcher(prefix.to_str()?).ok()
                    })
                    .collect::<Option<Vec<_>>>()
            })
            .flatten();
        Self {
            prefixes,
            deep,
            folders_expected: deep.is_some_and(|d| d + 1 == parts.len()),
        }
    }

    /// Whether the folder `dir` (a path as the walk builds it) can hold matches.
    fn descend(&self, dir: &Path) -> bool {
        let Some(prefixes) = &self.prefixes else {
            return true;
        };
        let depth = dir.components().count();
        if self.deep.is_some_and(|d| depth > d) {
            return true;
        }
        depth
            .checked_sub(1)
            .and_then(|i| prefixes.get(i))
            .is_some_and(|m| m.is_match(dir))
    }
}

/// What an entry of a folder is, as its listing says (a link is not followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Folder,
    Link,
    Other,
}

/// The entries of one folder, sorted by name, their names packed into one buffer: a folder
/// of a million files costs its names' bytes plus 12 bytes each, not a `PathBuf` each.
#[derive(Default)]
struct Listing {
    names: Vec<u8>,
    /// (start in `names`, length, kind), sorted by name.
    entries: Vec<(u32, u32, Kind)>,
}

impl Listing {
    /// Lists `dir` (`""` is the working folder). `None` if it is the base of the walk and
    /// does not exist (the glob then matches nothing).
    fn read(dir: &Path, base: bool) -> Result<Option<Self>, DataError> {
        let shown = || {
            if dir.as_os_str().is_empty() {
                ".".to_string()
            } else {
                dir.display().to_string()
            }
        };
        let fail = |e| DataError::io(&shown(), e);
        let entries = match std::fs::read_dir(if base && dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        }) {
            Ok(entries) => entries,
            Err(e) if base && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fail(e)),
        };
        let mut listing = Self::default();
        for entry in entries {
            let entry = entry.map_err(fail)?;
            let kind = match entry.file_type().map_err(fail)? {
                t if t.is_dir() => Kind::Folder,
                t if t.is_symlink() => Kind::Link,
                _ => Kind::Other,
            };
            let name = entry.file_name();
            let too_many = || DataError::Format(format!("{}: too many entries", shown()));
            let start = u32::try_from(listing.names.len()).map_err(|_| too_many())?;
            let len = u32::try_from(name.len()).map_err(|_| too_many())?;
            listing.names.extend_from_slice(name.as_bytes());
            listing.entries.push((start, len, kind));
        }
        let names = &listing.names;
        let text = |&(start, len, _): &(u32, u32, Kind)| {
            &names[start as usize..start as usize + len as usize]
        };
        listing
            .entries
            .sort_unstable_by(|a, b| text(a).cmp(text(b)));
        Ok(Some(listing))
    }

    fn get(&self, i: usize) -> Option<(&OsStr, Kind)> {
        let &(start, len, kind) = self.entries.get(i)?;
        let name = self
            .names
            .get(start as usize..start as usize + len as usize)?;
        Some((OsStr::from_bytes(name), kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks `pattern` from inside `root`; returns the files and the walk's report.
    fn files(root: &Path, pattern: &str) -> (Vec<String>, Walked) {
        let mut seen = Vec::new();
        let pattern = format!("{}/{pattern}", root.display());
        let walked = walk(&pattern, |p| {
            let rel = p.strip_prefix(root).unwrap();
            seen.push(rel.to_string_lossy().into_owned());
            Ok(())
        })
        .unwrap();
        (seen, walked)
    }

    fn tree(paths: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for p in paths {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            if p.ends_with('/') {
                std::fs::create_dir_all(&path).unwrap();
            } else {
                std::fs::write(&path, "x").unwrap();
            }
        }
        dir
    }

    #[test]
    fn matches_come_in_the_order_of_their_sorted_paths() {
        let dir = tree(&["b.csv", "a/x.csv", "a.csv", "a/b/y.csv", "c/z.csv", "A.csv"]);
        let (found, walked) = files(dir.path(), "**/*.csv");
        let mut sorted = found.clone();
        sorted.sort_by(|a, b| Path::new(a).cmp(Path::new(b)));
        assert_eq!(found, sorted);
        assert_eq!(found.len(), 6);
        assert_eq!(walked.files, 6);
        let (found, _) = files(dir.path(), "*.csv");
        assert_eq!(found, ["A.csv", "a.csv", "b.csv"]);
        let (found, _) = files(dir.path(), "a/*/*.csv");
        assert_eq!(found, ["a/b/y.csv"]);
        let (found, _) = files(dir.path(), "{a,c}/*.csv");
        assert_eq!(found, ["a/x.csv", "c/z.csv"]);
    }

    #[test]
    fn only_folders_that_can_hold_matches_are_listed() {
        let dir = tree(&["in/a.csv", "in/sub/b.csv", "other/c.csv"]);
        let (found, _) = files(dir.path(), "in/*.csv");
        assert_eq!(found, ["in/a.csv"]);
        let prune = Prune::new("in/*/x/*.csv");
        assert!(prune.descend(Path::new("in/sub")));
        assert!(prune.descend(Path::new("in/sub/x")));
        assert!(!prune.descend(Path::new("in/sub/y")));
        assert!(!prune.descend(Path::new("in/sub/x/deeper")));
        assert!(!prune.descend(Path::new("out")));
        let prune = Prune::new("in/**/*.csv");
        assert!(prune.descend(Path::new("in/a/b/c")));
        assert!(!prune.descend(Path::new("out")));
    }

    #[test]
    fn folders_the_pattern_matches_are_reported_not_read() {
        let dir = tree(&["in/a.csv", "in/old.csv/part-1.csv", "in/new.csv/"]);
        let (found, walked) = files(dir.path(), "in/*.csv");
        assert_eq!(found, ["in/a.csv"]);
        let folders: Vec<&str> = walked
            .folders
            .iter()
            .map(|f| f.rsplit_once("/in/").unwrap().1)
            .collect();
        assert_eq!(folders, ["new.csv", "old.csv"]);
        // Ending in `**` asks for folders too: they are walked, not reported.
        let (found, walked) = files(dir.path(), "in/**");
        assert_eq!(found, ["in/a.csv", "in/old.csv/part-1.csv"]);
        assert!(walked.folders.is_empty());
    }

    #[test]
    fn a_missing_base_matches_nothing_and_relative_patterns_stay_relative() {
        let dir = tree(&["a.csv"]);
        let (found, walked) = files(dir.path(), "nope/*.csv");
        assert!(found.is_empty());
        assert_eq!(walked, Walked::default());
        let mut seen = Vec::new();
        // The tests' working folder is the crate: its Cargo.toml is a match.
        walk("./Cargo.t?ml", |p| {
            seen.push(p.to_path_buf());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [PathBuf::from("Cargo.toml")]);
    }

    #[test]
    fn names_that_are_not_utf8_are_walked_and_matched() {
        let dir = tree(&["a.csv"]);
        let odd = OsStr::from_bytes(b"caf\xe9.csv");
        std::fs::write(dir.path().join(odd), "x").unwrap();
        let mut seen = Vec::new();
        walk(&format!("{}/*.csv", dir.path().display()), |p| {
            seen.push(p.file_name().unwrap().to_os_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [OsStr::new("a.csv"), odd]);
    }

    #[test]
    fn an_error_from_the_caller_stops_the_walk() {
        let dir = tree(&["a.csv", "b.csv"]);
        let mut calls = 0;
        let err = walk(&format!("{}/*.csv", dir.path().display()), |p| {
            calls += 1;
            Err(DataError::Missing(p.display().to_string()))
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(err.to_string().ends_with("/a.csv: no such file"), "{err}");
    }
}
