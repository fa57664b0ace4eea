//! A policy file's text: split into YAML documents that keep their line numbers, and parsed
//! into InjectionPolicy objects with `file:line` in every error.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use super::field::line_of;
use crate::policy::model::types::InjectionPolicy;

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
pub(super) struct Document<'a> {
    pub(super) text: &'a str,
    pub(super) first_line: usize,
}

/// Splits multi-document YAML at `---` lines, keeping line numbers.
pub(super) fn documents(text: &str) -> Vec<Document<'_>> {
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
