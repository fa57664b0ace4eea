//! Policies from YAML files: parsing with `file:line` in every error, loading a directory,
//! and watching it. A reload that fails keeps the last good set.

use std::{
    collections::HashMap,
    fmt, fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use crate::{
    policy::{
        model::types::InjectionPolicy,
        snapshot::{PolicyError, Snapshot},
        source::builtin,
        source::store::Store,
    },
    telemetry::Metrics,
    watch::{Changes, WatchError, directory_of},
};

/// Where a policy document (or a problem in one) is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A problem in a policy file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct FileError {
    pub location: Location,
    pub message: String,
}

const API_VERSION: &str = "tandem.dev/v1alpha1";
const KIND: &str = "InjectionPolicy";

/// One YAML document of a file, with the line it starts on.
struct Document<'a> {
    text: &'a str,
    first_line: usize,
}

/// Splits multi-document YAML at `---` lines, keeping line numbers.
fn documents(text: &str) -> Vec<Document<'_>> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") || trimmed == "..." {
            documents.push(Document {
                text: &text[start..offset],
                first_line: start_line,
            });
            start = offset + line.len();
            start_line = index + 2;
        }
        offset += line.len();
    }
    documents.push(Document {
        text: &text[start..],
        first_line: start_line,
    });
    documents
        .into_iter()
        .filter(|doc| {
            doc.text
                .lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// Parses the InjectionPolicy documents of one file.
pub fn parse(file: &Path, text: &str) -> Result<Vec<(Location, InjectionPolicy)>, Vec<FileError>> {
    let mut policies = Vec::new();
    let mut errors = Vec::new();
    for doc in documents(text) {
        let location = |line: usize| Location {
            file: file.to_path_buf(),
            line: doc.first_line + line.saturating_sub(1),
        };
        // Read the header first, so that a ConfigMap or a typo in `kind` is named as such
        // rather than as a missing field.
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Header {
            api_version: Option<String>,
            kind: Option<String>,
        }
        let header: Header = match serde_saphyr::from_str(doc.text) {
            Ok(header) => header,
            Err(error) => {
                errors.push(yaml_error(&error, &location));
                continue;
            }
        };
        if header.kind.as_deref() != Some(KIND)
            || header.api_version.as_deref() != Some(API_VERSION)
        {
            errors.push(FileError {
                location: location(line_of(doc.text, "kind").unwrap_or(1)),
                message: format!(
                    "apiVersion {:?} kind {:?} is not a policy; accepted: apiVersion {API_VERSION}, kind {KIND}",
                    header.api_version.unwrap_or_default(),
                    header.kind.unwrap_or_default()
                ),
            });
            continue;
        }
        match serde_saphyr::from_str::<InjectionPolicy>(doc.text) {
            Ok(policy) => {
                let name = policy.metadata.name.clone().unwrap_or_default();
                if let Err(problem) = crate::pattern::check_dns_subdomain(&name) {
                    errors.push(FileError {
                        location: location(line_of(doc.text, "metadata.name").unwrap_or(1)),
                        message: format!(
                            "metadata.name {name:?} {problem}; accepted: a name such as payments-logging"
                        ),
                    });
                    continue;
                }
                policies.push((location(1), policy));
            }
            Err(error) => errors.push(yaml_error(&error, &location)),
        }
    }
    if errors.is_empty() {
        Ok(policies)
    } else {
        Err(errors)
    }
}

fn yaml_error(error: &serde_saphyr::Error, location: &dyn Fn(usize) -> Location) -> FileError {
    let line = error.location().map_or(1, |l| l.line() as usize);
    // The library's message carries its own position and a snippet: keep the first line,
    // and of the position only the column (the line is in the location already).
    let message = error.to_string();
    let message = message.lines().next().unwrap_or_default();
    let message = message.strip_prefix("error: ").unwrap_or(message);
    let message = match message
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(' '))
    {
        Some((_, rest)) if rest.starts_with("column ") => rest.to_string(),
        _ => message.to_string(),
    };
    FileError {
        location: location(line),
        message,
    }
}

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

/// One step of a field path: a key or a sequence index.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `spec.profiles.log-shipper.loki.args[3]`, `env[0].value`, `annotations["a.b/c"]` as steps.
fn steps(field: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut key = String::new();
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => steps.extend((!key.is_empty()).then(|| Step::Key(std::mem::take(&mut key)))),
            '[' => {
                steps.extend((!key.is_empty()).then(|| Step::Key(std::mem::take(&mut key))));
                let mut inside = String::new();
                for c in chars.by_ref() {
                    if c == ']'
                        && !(inside.starts_with('"')
                            && (inside.len() < 2 || !inside.ends_with('"')))
                    {
                        break;
                    }
                    inside.push(c);
                }
                match inside.parse() {
                    Ok(index) => steps.push(Step::Index(index)),
                    Err(_) => steps.push(Step::Key(inside.trim_matches('"').to_string())),
                }
            }
            c => key.push(c),
        }
    }
    steps.extend((!key.is_empty()).then_some(Step::Key(key)));
    steps
}

/// Where `key:` starts in `line` as a mapping key (plain or quoted, block or flow style).
fn key_position(line: &str, key: &str) -> Option<usize> {
    [
        format!("{key}:"),
        format!("\"{key}\":"),
        format!("'{key}':"),
    ]
    .iter()
    .filter_map(|pattern| {
        line.match_indices(pattern.as_str())
            .find(|(at, found)| {
                let before = line[..*at].chars().next_back();
                let after = line[at + found.len()..].chars().next();
                before.is_none_or(|c| matches!(c, ' ' | '\t' | '{' | ',' | '-'))
                    && after.is_none_or(char::is_whitespace)
            })
            .map(|(at, found)| at + found.len())
    })
    .min()
}

/// The line of item `index` of the flow sequence opening at `lines[line][column]`.
fn flow_item(lines: &[&str], line: usize, column: usize, index: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut item = 0;
    let mut quote: Option<char> = None;
    for (i, text) in lines.iter().enumerate().skip(line) {
        let text = if i == line { &text[column..] } else { text };
        let mut chars = text.chars();
        let mut previous: Option<char> = None;
        while let Some(c) = chars.next() {
            let after_blank = previous.is_none_or(char::is_whitespace);
            previous = Some(c);
            if let Some(q) = quote {
                if c == '\\' && q == '"' {
                    chars.next();
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            if depth == 1 && item == index && !c.is_whitespace() && c != ',' && c != ']' {
                return Some(i);
            }
            match c {
                '"' | '\'' => quote = Some(c),
                '[' | '{' => depth += 1,
                ']' | '}' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return None;
                    }
                }
                ',' if depth == 1 => item += 1,
                '#' if after_blank => break,
                _ => {}
            }
        }
    }
    None
}

/// The line of item `index` of the block sequence below `lines[line]`.
fn block_item(lines: &[&str], line: usize, index: usize) -> Option<usize> {
    let mut indent = None;
    let mut item = 0;
    for (i, text) in lines.iter().enumerate().skip(line + 1) {
        let trimmed = text.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = text.len() - trimmed.len();
        let is_item = trimmed == "-" || trimmed.starts_with("- ");
        match indent {
            None if is_item => indent = Some(at),
            None => return None,
            Some(level) if at < level || (at == level && !is_item) => return None,
            Some(_) => {}
        }
        if is_item && indent == Some(at) {
            if item == index {
                return Some(i);
            }
            item += 1;
        }
    }
    None
}

/// 1-based line of `field` (a path such as `spec.selector.pods.matchExpressions[1].operator`)
/// in `text`, following the keys and sequence items in order: a reader's search, not a YAML
/// parse, but good enough to point at the line. When part of the path is not found, the
/// line of the deepest part that is; `None` when not even the first is.
fn line_of(text: &str, field: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    // The line found so far, and where on it the value of the last key starts.
    let mut at: Option<(usize, usize)> = None;
    for step in steps(field) {
        let next = match step {
            Step::Key(key) => (at.map_or(0, |(line, _)| line)..lines.len())
                .find_map(|i| Some((i, key_position(lines[i], &key)?))),
            Step::Index(index) => at.and_then(|(line, value)| {
                // A flow sequence on the key's line, or a block sequence below it.
                let rest = &lines[line][value..];
                let item = match rest.trim_start().starts_with('[') {
                    true => flow_item(&lines, line, value + rest.find('[')?, index),
                    false => block_item(&lines, line, index),
                };
                item.map(|line| (line, 0))
            }),
        };
        match next {
            Some(found) => at = Some(found),
            None => break,
        }
    }
    at.map(|(line, _)| line + 1)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_line_numbers() {
        let text = "# comment\n---\na: 1\n---\n\nb: 2\n---\n# only a comment\n";
        let docs = documents(text);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].first_line, 3);
        assert_eq!(docs[1].first_line, 5);
    }

    #[test]
    fn line_of_follows_nested_keys() {
        let text = "spec:\n  profiles:\n    log-shipper:\n      loki:\n        image: x\n        args: [a]\n";
        assert_eq!(
            line_of(text, "spec.profiles.log-shipper.loki.args[0]"),
            Some(6)
        );
        assert_eq!(
            line_of(text, "spec.defaults"),
            Some(1),
            "the deepest part found"
        );
        assert_eq!(line_of(text, "metadata.name"), None);
    }

    #[test]
    fn line_of_finds_sequence_items() {
        let text = r#"spec:
  selector:
    pods:
      matchExpressions:
        - key: app
          operator: Exists
        - {key: tier, operator: Equals, values: [web]}
  profiles:
    log-shipper:
      loki:
        args: ["-i", "tail",
               "-p", "a, b", '[c]',
               "{{nope}}"]
        command:
        - one
        # a comment
        - two
        env:
          - name: A
            value: x
          - name: B
            value: "{{nope}}"
        annotations:
          prometheus.io/port: "{{nope}}"
"#;
        for (field, line) in [
            ("spec.selector.pods.matchExpressions[0].operator", 6),
            ("spec.selector.pods.matchExpressions[1].operator", 7),
            ("spec.profiles.log-shipper.loki.args[1]", 11),
            ("spec.profiles.log-shipper.loki.args[4]", 12),
            ("spec.profiles.log-shipper.loki.args[5]", 13),
            ("spec.profiles.log-shipper.loki.command[1]", 17),
            ("spec.profiles.log-shipper.loki.env[1].value", 22),
            (
                "spec.profiles.log-shipper.loki.annotations[\"prometheus.io/port\"]",
                24,
            ),
        ] {
            assert_eq!(line_of(text, field), Some(line), "{field}");
        }
    }

    #[test]
    fn steps_split_keys_indices_and_quoted_keys() {
        assert_eq!(
            steps(r#"a.b[2].c["x.y/z"]"#),
            [
                Step::Key("a".into()),
                Step::Key("b".into()),
                Step::Index(2),
                Step::Key("c".into()),
                Step::Key("x.y/z".into())
            ]
        );
    }

    #[test]
    fn errors_carry_file_and_line() {
        let text = "apiVersion: tandem.dev/v1alpha1\nkind: InjectionPolicy\nmetadata: {name: a}\nspec: {priority: 1}\n---\napiVersion: tandem.dev/v1alpha1\nkind: InjectionPolicy\nmetadata: {name: b}\nspec:\n  prority: 2\n";
        let errors = parse(Path::new("p.yaml"), text).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].location.line, 10, "{}", errors[0]);
        assert!(errors[0].message.contains("prority"), "{}", errors[0]);
    }

    #[test]
    fn other_kinds_are_named() {
        let errors = parse(Path::new("c.yaml"), "apiVersion: v1\nkind: ConfigMap\n").unwrap_err();
        assert!(
            errors[0]
                .to_string()
                .starts_with("c.yaml:2: apiVersion \"v1\" kind \"ConfigMap\""),
            "{}",
            errors[0]
        );
    }
}
