//! `tandem drift`: read the cluster, check every injected pod, print the report, restart
//! on request. Exit code 0: nothing stale; 1: stale pods (restarted or not); 2: an error
//! (the cluster could not be read, a restart failed).

use std::process::ExitCode;

use anyhow::Context as _;

use super::{
    cluster::{self, Restart},
    report::Report,
};
use crate::{
    config::{DriftArgs, OutputFormat},
    policy::source::files,
};

pub fn run(args: &DriftArgs) -> anyhow::Result<ExitCode> {
    let prefix = &args.policy.annotation_prefix;
    let files = match &args.policy.policies {
        Some(path) => files::check(path, prefix).map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("invalid policies:\n{}", lines.join("\n"))
        })?,
        None => Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let client = cluster::client(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
        let (store, notes) = cluster::store(&client, prefix, files).await?;
        let snapshot = store.snapshot().clone();
        let mut scan = cluster::scan(&client, &snapshot, args.namespace.as_deref()).await?;
        scan.notes.splice(0..0, notes);
        let mut report = Report::new(scan);
        let mut failed = false;
        if args.restart {
            let mut budget = args.max_restarts as usize;
            for stale in &mut report.workloads {
                let pods: Vec<_> = stale.pods.iter().collect();
                let done =
                    cluster::restart(&client, &stale.workload(), &pods, args.dry_run, &mut budget)
                        .await;
                failed |= matches!(done, Restart::Failed(_));
                stale.restart = Some(done);
            }
        }
        match args.output {
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            OutputFormat::Text => print!("{}", report.table()),
        }
        Ok(if failed {
            ExitCode::from(2)
        } else if report.summary.stale > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    })
}
