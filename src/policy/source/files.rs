//! Policies from a directory of YAML files: finding the files, loading them, checking them
//! together with the built-in policies, and watching the directory. A reload that fails
//! keeps the last good set.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use super::{
    builtin,
    document::{FileError, Location, documents, parse},
    field::line_of,
    store::Store,
};
use crate::{
    policy::{
        model::types::InjectionPolicy,
        snapshot::{PolicyError, Snapshot},
    },
    telemetry::Metrics,
    watch::{Changes, WatchError, directory_of},
};

/// The YAML files of `path` (a directory, not descending, or a single file): `.yaml`,
/// `.yml` and `.json`, hidden files and Kubernetes' `..data` entries skipped.
pub fn files(path: &Path) -> Result<Vec<PathBuf>, FileError> {
    let unreadable = |e: std::io::Error| FileError {
        location: Location {
            file: path.to_path_buf(),
            line: 0,
        },
        message: format!("cannot read: {e}"),
    };
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    for entry in fs::read_dir(path).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let yaml = [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext));
        // `entry.path().is_file()` follows the symlinks a ConfigMap volume is made of.
        if yaml && !name.starts_with('.') && entry.path().is_file() {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// Loads every policy under `path`.
pub fn load(path: &Path) -> Result<Vec<(Location, InjectionPolicy)>, Vec<FileError>> {
    let mut policies = Vec::new();
    let mut errors = Vec::new();
    for file in files(path).map_err(|e| vec![e])? {
        match fs::read_to_string(&file) {
            Ok(text) => match parse(&file, &text) {
                Ok(mut parsed) => policies.append(&mut parsed),
                Err(mut e) => errors.append(&mut e),
            },
            Err(e) => errors.push(FileError {
                location: Location { file, line: 0 },
                message: format!("cannot read: {e}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(policies)
    } else {
        Err(errors)
    }
}

/// Loads and validates everything under `path` together with the built-in policies: what
/// `tandem policy check` and a reload both run.
pub fn check(path: &Path, prefix: &str) -> Result<Vec<InjectionPolicy>, Vec<FileError>> {
    let loaded = load(path)?;
    let mut errors = Vec::new();
    let mut seen: HashMap<&str, &Location> = HashMap::new();
    for (document, policy) in &loaded {
        let name = policy.metadata.name.as_deref().unwrap_or_default();
        if let Some(first) = seen.insert(name, document) {
            // Only a duplicate needs its line: finding it reads the file again.
            let first = location_of_field(first, "metadata.name");
            errors.push(FileError {
                location: location_of_field(document, "metadata.name"),
                message: format!(
                    "policy {name:?} is already defined at {first}; accepted: unique names"
                ),
            });
        }
    }
    let policies: Vec<InjectionPolicy> = loaded.iter().map(|(_, p)| p.clone()).collect();
    let (_, problems) = Snapshot::build(
        prefix,
        builtin::policies().into_iter().chain(policies.clone()),
        None,
    );
    for PolicyError {
        policy,
        field,
        message,
    } in problems
    {
        let location = loaded
            .iter()
            .find(|(_, p)| p.metadata.name.as_deref() == Some(policy.as_str()))
            .map(|(location, _)| location_of_field(location, &field))
            .unwrap_or(Location {
                file: path.to_path_buf(),
                line: 0,
            });
        errors.push(FileError {
            location,
            message: format!("policy {policy:?}: {field}: {message}"),
        });
    }
    if errors.is_empty() {
        Ok(policies)
    } else {
        Err(errors)
    }
}

/// The line of `field` (`spec.profiles.log-shipper.loki.args[3]`) in the document at
/// `document`, found by reading the file again; the document's first line if not found.
fn location_of_field(document: &Location, field: &str) -> Location {
    let line = fs::read_to_string(&document.file)
        .ok()
        .and_then(|text| {
            let doc = documents(&text)
                .into_iter()
                .find(|d| d.first_line >= document.line)?;
            line_of(doc.text, field).map(|line| doc.first_line + line - 1)
        })
        .unwrap_or(document.line);
    Location {
        file: document.file.clone(),
        line,
    }
}

/// Reloads the policies under `path` into `store` whenever something in it changes (edits,
/// new files, a ConfigMap's `..data` symlink swap). Keeps running until the guard drops.
pub fn watch(
    path: PathBuf,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
) -> Result<FilesWatch, WatchError> {
    let dir = if path.is_file() {
        directory_of(&path).to_path_buf()
    } else {
        path.clone()
    };
    let mut changes = Changes::watch([dir.as_path()])?;
    let prefix = store.prefix().to_string();
    let task = tokio::spawn(async move {
        while changes.next(Duration::from_millis(200)).await.is_some() {
            let path = path.clone();
            let prefix = prefix.clone();
            let checked = tokio::task::spawn_blocking(move || check(&path, &prefix))
                .await
                .unwrap_or_else(|e| {
                    Err(vec![FileError {
                        location: Location {
                            file: PathBuf::new(),
                            line: 0,
                        },
                        message: format!("the reload task failed: {e}"),
                    }])
                });
            match checked {
                Ok(policies) => {
                    let count = policies.len();
                    store.set_files(policies);
                    metrics.policy_reload("files", true);
                    tracing::info!(policies = count, "reloaded policy files");
                }
                Err(errors) => {
                    metrics.policy_reload("files", false);
                    for error in &errors {
                        tracing::error!(%error, "policy reload failed; keeping the last good policies");
                    }
                }
            }
        }
    });
    Ok(FilesWatch { task })
}

/// Keeps a policy directory watched; dropping it stops the watch.
pub struct FilesWatch {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FilesWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
