//! The policy directory watcher (`--policies DIR`) with a real store: edits, new files and
//! ConfigMap-style `..data` swaps apply; a bad reload keeps the last good set and counts an
//! error; reading the files does not itself trigger reloads.

mod common;

use std::{fs, os::unix::fs::symlink, path::Path, sync::Arc, time::Duration};

use serde_json::json;
use tandem::{
    pattern::Pattern,
    policy::{
        source::files::{self, FilesWatch},
        source::store::Store,
    },
    telemetry::Metrics,
};

const DEADLINE: Duration = Duration::from_secs(15);
const LOG: &[Pattern] = &[Pattern::LogShipper];
const NONE: &[Pattern] = &[];

/// A policy switching log shipping on in namespace `namespace` (by its name label).
fn logging_in(name: &str, namespace: &str) -> String {
    format!(
        "apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata:
  name: {name}
spec:
  priority: 10
  selector:
    namespaces: {{matchLabels: {{kubernetes.io/metadata.name: {namespace}}}}}
  defaults:
    log-shipper: {{path: /var/log/app}}
"
    )
}

struct Watched {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    _watch: FilesWatch,
}

impl Watched {
    /// Loads `path` as `serve` does at start, then watches it.
    fn start(path: &Path) -> Watched {
        let metrics = Metrics::new();
        let store = Store::new("tandem.dev", Some(metrics.clone()));
        let policies = files::check(path, "tandem.dev").expect("the initial policies are valid");
        store.set_files(policies);
        let watch =
            files::watch(path.to_path_buf(), store.clone(), metrics.clone()).expect("watching");
        Watched {
            store,
            metrics,
            _watch: watch,
        }
    }

    /// The patterns a pod without annotations gets in `namespace`.
    fn plain(&self, namespace: &str) -> Vec<Pattern> {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]},
        });
        let (evaluation, result) = common::mutate(&self.store.snapshot(), namespace, &pod);
        assert_eq!(evaluation.denial(), None, "pod in {namespace} denied");
        // Every pod the cluster would get is one the API server accepts.
        common::assert_valid_pod(&result.expect("admitted"));
        evaluation.patterns().to_vec()
    }

    /// `tandem_policy_reloads_total{source="files",result=...}`.
    fn reloads(&self, result: &str) -> u64 {
        let wanted = format!(r#"tandem_policy_reloads_total{{source="files",result="{result}"}} "#);
        self.metrics
            .encode()
            .lines()
            .find_map(|line| line.strip_prefix(&wanted))
            .map_or(0, |n| n.trim().parse().expect("a counter value"))
    }

    async fn until(&self, what: &str, check: impl Fn(&Watched) -> bool) {
        let start = tokio::time::Instant::now();
        while !check(self) {
            assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn an_edited_file_and_a_new_file_apply() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("logging.yaml"),
        logging_in("logging", "payments"),
    )
    .unwrap();
    let watched = Watched::start(dir.path());
    assert_eq!(watched.plain("payments"), LOG);
    assert_eq!(watched.plain("shop"), NONE);

    fs::write(
        dir.path().join("logging.yaml"),
        logging_in("logging", "shop"),
    )
    .unwrap();
    watched
        .until("the edit applies", |w| w.plain("shop") == LOG)
        .await;
    assert_eq!(watched.plain("payments"), NONE);

    fs::write(dir.path().join("more.yml"), logging_in("more", "orders")).unwrap();
    watched
        .until("the new file applies", |w| w.plain("orders") == LOG)
        .await;
    assert_eq!(watched.plain("shop"), LOG);
    assert_eq!(watched.reloads("error"), 0);
}

#[tokio::test]
async fn reading_the_files_does_not_trigger_another_reload() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("logging.yaml"),
        logging_in("logging", "payments"),
    )
    .unwrap();
    let watched = Watched::start(dir.path());
    fs::write(
        dir.path().join("logging.yaml"),
        logging_in("logging", "shop"),
    )
    .unwrap();
    watched
        .until("the edit applies", |w| w.plain("shop") == LOG)
        .await;
    let reloads = watched.reloads("ok");
    // Long enough for several reload rounds if a reload's own reads set off the next one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(watched.reloads("ok"), reloads, "reloads without any change");
}

/// A ConfigMap volume as the kubelet writes it: the files live in a timestamped directory,
/// `..data` points at it, and each key is a symlink through `..data`.
struct ConfigMapVolume<'a> {
    dir: &'a Path,
    generation: u32,
}

impl<'a> ConfigMapVolume<'a> {
    fn create(dir: &'a Path, files: &[(&str, &str)]) -> ConfigMapVolume<'a> {
        let mut volume = ConfigMapVolume { dir, generation: 0 };
        let data = volume.write_generation(files);
        symlink(&data, dir.join("..data")).unwrap();
        for (name, _) in files {
            symlink(Path::new("..data").join(name), dir.join(name)).unwrap();
        }
        volume
    }

    fn write_generation(&mut self, files: &[(&str, &str)]) -> String {
        self.generation += 1;
        let data = format!("..2026_01_01_00_00_00.{:09}", self.generation);
        fs::create_dir(self.dir.join(&data)).unwrap();
        for (name, text) in files {
            fs::write(self.dir.join(&data).join(name), text).unwrap();
        }
        data
    }

    /// The kubelet's atomic update: a new directory, a `..data_tmp` symlink to it renamed
    /// over `..data`, the old directory removed.
    fn update(&mut self, files: &[(&str, &str)]) {
        let old = fs::read_link(self.dir.join("..data")).unwrap();
        let data = self.write_generation(files);
        symlink(&data, self.dir.join("..data_tmp")).unwrap();
        fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
        fs::remove_dir_all(self.dir.join(old)).unwrap();
    }
}

#[tokio::test]
async fn a_configmap_update_applies() {
    let dir = tempfile::tempdir().unwrap();
    let mut volume = ConfigMapVolume::create(
        dir.path(),
        &[("policies.yaml", &logging_in("logging", "payments"))],
    );
    let watched = Watched::start(dir.path());
    assert_eq!(watched.plain("payments"), LOG);

    volume.update(&[("policies.yaml", &logging_in("logging", "shop"))]);
    watched
        .until("the new ConfigMap content applies", |w| {
            w.plain("shop") == LOG
        })
        .await;
    assert_eq!(watched.plain("payments"), NONE);

    volume.update(&[("policies.yaml", &logging_in("logging", "orders"))]);
    watched
        .until("a second update applies", |w| w.plain("orders") == LOG)
        .await;
    assert_eq!(watched.reloads("error"), 0);
}

#[tokio::test]
async fn a_bad_reload_keeps_the_last_good_set_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("logging.yaml");
    fs::write(&file, logging_in("logging", "payments")).unwrap();
    let watched = Watched::start(dir.path());
    assert_eq!(watched.plain("payments"), LOG);

    // A YAML syntax error.
    let broken = logging_in("logging", "shop").replace("priority: 10", "priority: [10");
    fs::write(&file, broken).unwrap();
    watched
        .until("the syntax error is counted", |w| w.reloads("error") == 1)
        .await;
    assert_eq!(watched.plain("payments"), LOG, "the last good set stays");
    assert_eq!(watched.plain("shop"), NONE);

    // Valid YAML, but an option log-shipper does not have.
    let unknown_option =
        logging_in("logging", "shop").replace("{path: /var/log/app}", "{pth: /var/log/app}");
    fs::write(&file, unknown_option).unwrap();
    watched
        .until("the unknown option is counted", |w| w.reloads("error") == 2)
        .await;
    assert_eq!(watched.plain("payments"), LOG, "the last good set stays");
    assert_eq!(watched.plain("shop"), NONE);

    fs::write(&file, logging_in("logging", "shop")).unwrap();
    watched
        .until("the fixed file applies", |w| w.plain("shop") == LOG)
        .await;
    assert_eq!(watched.plain("payments"), NONE);
    assert_eq!(watched.reloads("error"), 2);
}
