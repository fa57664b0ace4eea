//! The drift report: stale pods grouped by the workload that owns them, as a table for
//! people and as JSON for machines (`-o json`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{
    Verdict, Workload,
    cluster::{Checked, Restart, Scan},
    compare::Difference,
};

/// Everything `tandem drift` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Workloads with at least one stale pod, by kind, namespace and name.
    pub workloads: Vec<Stale>,
    pub summary: Summary,
    pub notes: Vec<String>,
}

/// A workload with stale pods.
#[derive(Debug, Serialize)]
pub struct Stale {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Injected pods of the workload that were checked.
    pub checked: usize,
    /// The stale ones, each with what differs.
    pub pods: Vec<Checked>,
    /// What differs in any of them, each once.
    pub differences: Vec<Difference>,
    /// Why today's policies would deny its pods, if they would.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<String>,
    /// With `--restart`: what was done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
}

impl Stale {
    pub fn workload(&self) -> Workload {
        Workload {
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Pods carrying the `injected` annotation that were checked.
    pub checked: usize,
    pub current: usize,
    pub stale: usize,
    /// Stale pods by workload kind.
    pub stale_by_kind: BTreeMap<String, usize>,
    pub workloads: usize,
    /// Not checked: being deleted.
    pub terminating: usize,
    /// Not checked: finished.
    pub finished: usize,
}

impl Report {
    pub fn new(scan: Scan) -> Report {
        let mut summary = Summary {
            checked: scan.pods.len(),
            terminating: scan.terminating,
            finished: scan.finished,
            ..Default::default()
        };
        let mut by_workload: BTreeMap<Workload, (usize, Vec<Checked>)> = BTreeMap::new();
        for pod in scan.pods {
            let entry = by_workload.entry(pod.workload.clone()).or_default();
            entry.0 += 1;
            if pod.verdict.is_current() {
                summary.current += 1;
            } else {
                summary.stale += 1;
                *summary
                    .stale_by_kind
                    .entry(pod.workload.kind.clone())
                    .or_default() += 1;
                entry.1.push(pod);
            }
        }
        let workloads: Vec<Stale> = by_workload
            .into_iter()
            .filter(|(_, (_, stale))| !stale.is_empty())
            .map(|(workload, (checked, mut pods))| {
                pods.sort_by(|a, b| a.name.cmp(&b.name));
                let mut differences = BTreeSet::new();
                let mut denied = BTreeSet::new();
                for pod in &pods {
                    match &pod.verdict {
                        Verdict::Stale(found) => differences.extend(found.iter().cloned()),
                        Verdict::Denied(message) => {
                            denied.insert(message.clone());
                        }
                        Verdict::Current => {}
                    }
                }
                Stale {
                    kind: workload.kind,
                    namespace: workload.namespace,
                    name: workload.name,
                    checked,
                    pods,
                    differences: differences.into_iter().collect(),
                    denied: denied.into_iter().collect(),
                    restart: None,
                }
            })
            .collect();
        summary.workloads = workloads.len();
        Report {
            workloads,
            summary,
            notes: scan.notes,
        }
    }

    /// The table: one row per workload, what differs below it.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let s = &self.summary;
        if self.workloads.is_empty() {
            let _ = writeln!(
                out,
                "no stale pods: all {} injected pods carry what today's policies inject",
                s.checked
            );
        } else {
            let rows: Vec<[String; 4]> = self
                .workloads
                .iter()
                .map(|w| {
                    [
                        w.kind.clone(),
                        w.namespace.clone(),
                        w.name.clone(),
                        format!("{}/{}", w.pods.len(), w.checked),
                    ]
                })
                .collect();
            let header = ["KIND", "NAMESPACE", "NAME", "STALE"];
            let mut widths = header.map(str::len);
            for row in &rows {
                for (width, cell) in widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.chars().count());
                }
            }
            let line = |cells: [&str; 4], last: &str| {
                let mut line = String::new();
                for (cell, width) in cells.iter().zip(widths) {
                    let _ = write!(line, "{cell:<width$}  ");
                }
                line.push_str(last);
                line.trim_end().to_string()
            };
            let indent = widths.iter().sum::<usize>() + 2 * widths.len();
            let _ = writeln!(
                out,
                "{}",
                line(header, "WHAT DIFFERS (carried → today's policies)")
            );
            for (workload, row) in self.workloads.iter().zip(&rows) {
                let mut details: Vec<String> = workload
                    .denied
                    .iter()
                    .map(|d| format!("DENIED by today's policies: {d}"))
                    .chain(workload.differences.iter().map(ToString::to_string))
                    .collect();
                let names: Vec<&str> = workload.pods.iter().map(|p| p.name.as_str()).collect();
                details.push(format!("pods: {}", names.join(", ")));
                let notes: BTreeSet<&str> = workload
                    .pods
                    .iter()
                    .filter_map(|p| p.note.as_deref())
                    .collect();
                details.extend(notes.into_iter().map(|n| format!("note: {n}")));
                if workload.pods.iter().any(|p| p.injected_in_template) {
                    details.push(
                        "note: its pod template itself holds tandem's containers (tandem inject)"
                            .into(),
                    );
                }
                if let Some(restart) = &workload.restart {
                    details.push(restart.to_string());
                }
                let mut details = details.into_iter();
                let first = details.next().unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{}",
                    line([&row[0], &row[1], &row[2], &row[3]], &first)
                );
                for detail in details {
                    let _ = writeln!(out, "{:indent$}{detail}", "");
                }
            }
            let _ = writeln!(
                out,
                "\n{} of {} injected pods stale, in {} workloads",
                s.stale, s.checked, s.workloads
            );
        }
        if s.terminating > 0 || s.finished > 0 {
            let _ = writeln!(
                out,
                "not checked: {} being deleted, {} finished",
                pods(s.terminating),
                pods(s.finished)
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

/// `1 pod`, `2 pods`.
fn pods(n: usize) -> String {
    format!("{n} pod{}", if n == 1 { "" } else { "s" })
}
