//! The `tandem` binary: crypto provider, command line, run. The wiring is in [`tandem::app`].

use std::process::ExitCode;

use clap::Parser;

// A review allocates many small, short-lived objects (parsed strings, the plan, the
// response); mimalloc's thread-local free lists serve them several times faster than
// glibc's malloc under the server's load (see the README's performance section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .expect("no other crypto provider is installed before main");
    tandem::app::run(tandem::config::Cli::parse())
}
