//! Notices added, changed and removed DAG files (and the projects list) and reloads the
//! whole bag after a short quiet period, so the server never needs a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{DagBag, load_dag_bag};

/// Editors write files in several steps; wait for this much quiet before reloading.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Where DAG definitions come from.
#[derive(Clone, Debug)]
pub struct DagSources {
    /// The DAG folder.
    pub dags_folder: PathBuf,
    /// The projects list.
    pub projects_file: PathBuf,
    /// Largest file read (`max_dag_file_bytes`).
    pub max_file_bytes: u64,
}

impl DagSources {
    /// Loads the bag (blocking file I/O; call from a blocking context or at start-up).
    pub fn load(&self) -> DagBag {
        load_dag_bag(&self.dags_folder, &self.projects_file, self.max_file_bytes)
    }
}

/// Starts watching; each reload's result is passed to `on_reload`. The returned watcher
/// must be kept alive for as long as watching should go on.
pub fn watch<F, Fut>(
    sources: DagSources,
    cancel: CancellationToken,
    on_reload: F,
) -> notify::Result<(RecommendedWatcher, tokio::task::JoinHandle<()>)>
where
    F: Fn(Arc<DagBag>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let (tx, mut rx) = mpsc::channel::<()>(64);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            // A full channel already holds a pending reload; dropping this signal is fine.
            let _ = tx.try_send(());
        }
    })?;
    watcher.watch(&sources.dags_folder, RecursiveMode::Recursive)?;
    if let Some(dir) = existing_parent(&sources.projects_file) {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    }
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                signal = rx.recv() => if signal.is_none() { break },
            }
            // Let the burst of events settle, then reload once.
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            let sources = sources.clone();
            match tokio::task::spawn_blocking(move || sources.load()).await {
                Ok(bag) => on_reload(Arc::new(bag)).await,
                Err(e) => tracing::error!(error = %e, "DAG reload failed"),
            }
        }
    });
    Ok((watcher, task))
}

fn existing_parent(file: &Path) -> Option<PathBuf> {
    let parent = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parent.is_dir().then(|| parent.to_path_buf())
}
