//! Directories watched for changes to what they hold: what the certificate and the policy
//! files are reloaded on.
//!
//! The directory is watched, not the file: a Kubernetes Secret or ConfigMap volume replaces
//! its files by swapping a `..data` symlink, which a watch on the file never sees. Opening
//! and reading are events too (inotify's IN_OPEN); they are ignored, or every reload, which
//! opens the files, would set off the next.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Changes in some directories, one notification per burst.
pub struct Changes {
    _watcher: RecommendedWatcher,
    rx: mpsc::Receiver<()>,
}

impl Changes {
    /// Watches `dirs` (not descending into subdirectories).
    pub fn watch<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> Result<Changes, WatchError> {
        let (tx, rx) = mpsc::channel(1);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|event| changes_content(&event.kind)) {
                    // A full channel already holds a pending change: nothing is lost.
                    let _ = tx.try_send(());
                }
            })
            .map_err(|e| WatchError {
                path: PathBuf::new(),
                message: e.to_string(),
            })?;
        for dir in dirs {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| WatchError {
                    path: dir.to_path_buf(),
                    message: e.to_string(),
                })?;
        }
        Ok(Changes {
            _watcher: watcher,
            rx,
        })
    }

    /// Waits for the next change, then `settle` more, so that a burst of events (a Secret
    /// or ConfigMap update is several) comes out as one.
    pub async fn next(&mut self, settle: Duration) -> Option<()> {
        self.rx.recv().await?;
        tokio::time::sleep(settle).await;
        while self.rx.try_recv().is_ok() {}
        Some(())
    }
}

/// The directory a file lives in (`.` for a bare file name).
pub fn directory_of(file: &Path) -> &Path {
    file.parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Watching a directory failed.
#[derive(Debug, thiserror::Error)]
#[error("watching {}: {message}", path.display())]
pub struct WatchError {
    pub path: PathBuf,
    pub message: String,
}

/// Whether an event can change what a reload reads.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_is_a_change_and_reading_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tls.crt");
        std::fs::write(&file, "one").unwrap();
        let mut changes = Changes::watch([dir.path()]).unwrap();

        std::fs::write(&file, "two").unwrap();
        let settle = Duration::from_millis(50);
        let noticed = tokio::time::timeout(Duration::from_secs(5), changes.next(settle)).await;
        assert_eq!(noticed, Ok(Some(())), "a write must be noticed");

        // What a reload does: open and read. Noticing that would reload forever.
        for _ in 0..3 {
            assert_eq!(std::fs::read_to_string(&file).unwrap(), "two");
        }
        let quiet = tokio::time::timeout(Duration::from_millis(500), changes.next(settle)).await;
        assert!(quiet.is_err(), "reading the file was taken for a change");
    }

    #[tokio::test]
    async fn a_symlink_swap_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let data = |name: &str| {
            let generation = dir.path().join(name);
            std::fs::create_dir(&generation).unwrap();
            std::fs::write(generation.join("tls.crt"), name).unwrap();
            generation
        };
        std::os::unix::fs::symlink(data("..2026_11_23_a"), dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/tls.crt", dir.path().join("tls.crt")).unwrap();
        let mut changes = Changes::watch([dir.path()]).unwrap();

        // As the kubelet's AtomicWriter does: a new generation, then an atomic rename.
        std::os::unix::fs::symlink(data("..2026_11_23_b"), dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
        let noticed = tokio::time::timeout(
            Duration::from_secs(5),
            changes.next(Duration::from_millis(50)),
        )
        .await;
        assert_eq!(noticed, Ok(Some(())));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("tls.crt")).unwrap(),
            "..2026_11_23_b"
        );
    }
}
