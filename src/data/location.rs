//! Storage locations for staged and output data: a local folder or an object-store URL
//! (`s3://bucket/prefix`; credentials and endpoint from the usual `AWS_*` variables), behind
//! one type. Readers get a local file (remote objects are downloaded to a temporary file,
//! streaming); writers produce a local temporary file and [`Location::publish`] it, which is
//! atomic on both kinds: a rename into place locally, a completed multipart upload remotely.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::io::AsyncWriteExt;

use super::DataError;
use crate::redact;

/// Where tables and outputs live.
#[derive(Clone, Debug)]
pub enum Location {
    /// A local folder (relative paths resolve against the working directory).
    Local(PathBuf),
    /// An object-store prefix.
    Remote {
        /// The store.
        store: Arc<dyn ObjectStore>,
        /// Prefix inside it.
        prefix: ObjectPath,
        /// The URL as given, for messages.
        url: String,
    },
}

/// A file to read: the real path for local data, a temporary download for remote data.
pub struct LocalCopy {
    path: PathBuf,
    _temp: Option<tempfile::TempPath>,
}

impl LocalCopy {
    /// Where to read it.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What [`Location::stat`] tells of a stored file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Size in bytes.
    pub bytes: u64,
    /// Last modification (remotely, the store's `Last-Modified`).
    pub modified: std::time::SystemTime,
}

impl Location {
    /// Parses a local path or an object-store URL.
    pub fn parse(text: &str) -> Result<Self, DataError> {
        if !text.contains("://") || text.starts_with("file://") {
            let path = text.strip_prefix("file://").unwrap_or(text);
            return Ok(Self::Local(PathBuf::from(path)));
        }
        let url = url::Url::parse(text).map_err(|e| {
            DataError::Location(redact::text(&format!("'{text}': {e}")).into_owned())
        })?;
        let (store, prefix) = remote_store(&url)?;
        Ok(Self::Remote {
            store,
            prefix,
            url: redact::text(text.trim_end_matches('/')).into_owned(),
        })
    }

    /// How to show `name` inside this location.
    pub fn display(&self, name: &str) -> String {
        match self {
            Self::Local(dir) => dir.join(name).display().to_string(),
            Self::Remote { url, .. } => format!("{url}/{name}"),
        }
    }

    fn object(prefix: &ObjectPath, name: &str) -> ObjectPath {
        name.split('/')
            .filter(|p| !p.is_empty())
            .fold(prefix.clone(), |p, part| p.join(part))
    }

    /// A readable local file holding `name`.
    pub async fn fetch(&self, name: &str) -> Result<LocalCopy, DataError> {
        match self {
            Self::Local(dir) => {
                let path = dir.join(name);
                if !path.is_file() {
                    return Err(DataError::Missing(path.display().to_string()));
                }
                Ok(LocalCopy { path, _temp: None })
            }
            Self::Remote { store, prefix, .. } => {
                let result = store
                    .get(&Self::object(prefix, name))
                    .await
                    .map_err(|e| self.read_error(name, e))?;
                let temp = tempfile::NamedTempFile::new()
                    .map_err(|e| DataError::io("a temporary file", e))?;
                let (file, path) = temp.into_parts();
                let mut out = tokio::fs::File::from_std(file);
                let mut stream = result.into_stream();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| self.error(name, e))?;
                    out.write_all(&chunk)
                        .await
                        .map_err(|e| DataError::io(&path.display().to_string(), e))?;
                }
                out.flush()
                    .await
                    .map_err(|e| DataError::io(&path.display().to_string(), e))?;
                Ok(LocalCopy {
                    path: path.to_path_buf(),
                    _temp: Some(path),
                })
            }
        }
    }

    /// Size and modification time of `name`, without reading it (one `HEAD` request
    /// remotely).
    pub async fn stat(&self, name: &str) -> Result<Stat, DataError> {
        match self {
            Self::Local(dir) => {
                let path = dir.join(name);
                let shown = path.display().to_string();
                let meta = std::fs::metadata(&path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => DataError::Missing(shown.clone()),
                    _ => DataError::io(&shown, e),
                })?;
                Ok(Stat {
                    bytes: meta.len(),
                    modified: meta.modified().map_err(|e| DataError::io(&shown, e))?,
                })
            }
            Self::Remote { store, prefix, .. } => {
                let meta = store
                    .head(&Self::object(prefix, name))
                    .await
                    .map_err(|e| self.read_error(name, e))?;
                Ok(Stat {
                    bytes: meta.size,
                    modified: meta.last_modified.into(),
                })
            }
        }
    }

    /// A temporary file to write `name` into before publishing it (next to the target when
    /// local, so the final rename stays on one file system).
    pub fn scratch(&self, name: &str) -> Result<tempfile::NamedTempFile, DataError> {
        match self {
            Self::Local(dir) => {
                let target = dir.join(name);
                let parent = target.parent().unwrap_or(dir).to_path_buf();
                std::fs::create_dir_all(&parent)
                    .map_err(|e| DataError::io(&parent.display().to_string(), e))?;
                let prefix = format!(".{}.", file_name(name));
                let file = tempfile::Builder::new()
                    .prefix(&prefix)
                    .suffix(".tmp")
                    .tempfile_in(&parent)
                    .map_err(|e| DataError::io(&parent.display().to_string(), e))?;
                // Locked while this process holds it (a file system without locks just
                // keeps stale files), so that the scratch files of a run killed outright
                // can be told apart and removed.
                let _ = file.as_file().try_lock();
                // Those of killed runs writing the same output (this one is held).
                remove_unheld(&parent, |n| n.starts_with(&prefix) && n.ends_with(".tmp"));
                Ok(file)
            }
            Self::Remote { .. } => {
                tempfile::NamedTempFile::new().map_err(|e| DataError::io("a temporary file", e))
            }
        }
    }

    /// Makes `file` visible as `name`, all at once.
    pub async fn publish(
        &self,
        name: &str,
        file: tempfile::NamedTempFile,
    ) -> Result<(), DataError> {
        match self {
            Self::Local(dir) => {
                let target = dir.join(name);
                let shown = target.display().to_string();
                // Temporary files are created private; published data is readable like any output.
                std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644))
                    .map_err(|e| DataError::io(&shown, e))?;
                file.persist(&target)
                    .map_err(|e| DataError::io(&shown, e.error))?;
                Ok(())
            }
            Self::Remote { store, prefix, .. } => {
                let object = Self::object(prefix, name);
                let upload = store
                    .put_multipart(&object)
                    .await
                    .map_err(|e| self.error(name, e))?;
                let mut writer = WriteMultipart::new(upload);
                match self.upload_parts(name, file.path(), &mut writer).await {
                    // `finish` aborts the upload itself when completing it fails.
                    Ok(()) => writer
                        .finish()
                        .await
                        .map(drop)
                        .map_err(|e| self.error(name, e)),
                    Err(e) => {
                        // Parts already uploaded would otherwise linger (and be billed)
                        // until the bucket's lifecycle rules remove them. The upload's
                        // error is the one to report.
                        let _ = writer.abort().await;
                        Err(e)
                    }
                }
            }
        }
    }

    /// Streams a local file into a multipart upload's parts.
    async fn upload_parts(
        &self,
        name: &str,
        path: &Path,
        writer: &mut WriteMultipart,
    ) -> Result<(), DataError> {
        let shown = path.display().to_string();
        let mut source = tokio::fs::File::open(path)
            .await
            .map_err(|e| DataError::io(&shown, e))?;
        let mut buf = vec![0u8; 4 << 20];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut source, &mut buf)
                .await
                .map_err(|e| DataError::io(&shown, e))?;
            if n == 0 {
                return Ok(());
            }
            writer
                .wait_for_capacity(4)
                .await
                .map_err(|e| self.error(name, e))?;
            writer.write(&buf[..n]);
        }
    }

    /// Removes `name` if it exists (a stale rejects file, say).
    pub async fn remove(&self, name: &str) -> Result<(), DataError> {
        match self {
            Self::Local(dir) => match std::fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(DataError::io(&self.display(name), e))
                }
                _ => Ok(()),
            },
            Self::Remote { store, prefix, .. } => {
                match store.delete(&Self::object(prefix, name)).await {
                    Err(e) if !matches!(e, object_store::Error::NotFound { .. }) => {
                        Err(self.error(name, e))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    fn error(&self, name: &str, e: object_store::Error) -> DataError {
        DataError::Store(redact::text(&format!("{}: {e}", self.display(name))).into_owned())
    }

    /// [`Self::error`], telling a missing object apart.
    fn read_error(&self, name: &str, e: object_store::Error) -> DataError {
        match e {
            object_store::Error::NotFound { .. } => DataError::Missing(self.display(name)),
            e => self.error(name, e),
        }
    }
}

fn file_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

#[cfg(feature = "s3")]
fn remote_store(url: &url::Url) -> Result<(Arc<dyn ObjectStore>, ObjectPath), DataError> {
    let invalid = |message: String| DataError::Location(redact::text(&message).into_owned());
    if url.scheme() != "s3" {
        return Err(invalid(format!(
            "'{url}': only local paths and s3:// URLs are supported"
        )));
    }
    let store = object_store::aws::AmazonS3Builder::from_env()
        .with_url(url.as_str())
        .build()
        .map_err(|e| invalid(format!("'{url}': {e}")))?;
    let prefix =
        ObjectPath::from_url_path(url.path()).map_err(|e| invalid(format!("'{url}': {e}")))?;
    Ok((Arc::new(store), prefix))
}

#[cfg(not(feature = "s3"))]
fn remote_store(url: &url::Url) -> Result<(Arc<dyn ObjectStore>, ObjectPath), DataError> {
    Err(DataError::Location(
        redact::text(&format!(
            "'{url}': this build has no object-store support (enable the `s3` feature)"
        ))
        .into_owned(),
    ))
}

/// How old an unlocked file or folder must be to count as left by a killed run (one is
/// locked a moment after it is made).
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes the files and folders in `dir` whose names `ours` accepts that no process holds
/// locked and that are over a minute old: what runs killed outright (`kill -9`, out of
/// memory) left of their work in progress. Returns how many went.
pub fn remove_unheld(dir: &Path, ours: impl Fn(&str) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_str().is_some_and(&ours) {
            continue;
        }
        let Some(meta) = entry.metadata().ok().filter(|m| {
            m.modified()
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_AFTER)
        }) else {
            continue;
        };
        let path = entry.path();
        // Held by a live process, the lock cannot be taken; taken, it goes with the handle.
        if !std::fs::File::open(&path).is_ok_and(|f| f.try_lock().is_ok()) {
            continue;
        }
        let gone = if meta.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed += usize::from(gone.is_ok());
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_files_left_by_killed_runs_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let out = Location::Local(dir.path().to_path_buf());
        let then = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
        let aged = |path: &Path| {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(then)
                .unwrap();
        };
        // Held by a live process (this one), however old.
        let live = out.scratch("graph.json").unwrap();
        aged(live.path());
        // Left by a killed run: unlocked and old; another of a different output; a fresh one.
        let left = dir.path().join(".graph.json.abc123.tmp");
        let other = dir.path().join(".top.json.abc123.tmp");
        let fresh = dir.path().join(".graph.json.new456.tmp");
        for p in [&left, &other, &fresh] {
            std::fs::write(p, b"x").unwrap();
        }
        aged(&left);
        aged(&other);
        let next = out.scratch("graph.json").unwrap();
        assert!(!left.exists(), "the stale scratch file stayed");
        assert!(live.path().exists() && next.path().exists());
        assert!(other.exists() && fresh.exists());
    }
}
