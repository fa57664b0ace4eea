//! The `tandem` binary: crypto provider, command line, run. The wiring is in [`tandem::app`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .expect("no other crypto provider is installed before main");
    tandem::app::run(tandem::config::Cli::parse())
}
