//! The `tandem` binary: crypto provider, command line, run. The wiring is in [`tandem::app`].

use std::process::ExitCode;

use clap::Parser;

// A review allocates many small, short-lived objects (parsed strings, the plan, the
// response); mimalloc's thread-local free lists serve them several times faster than
// glibc's malloc under the server's load (see the README's performance section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A connection thread that goes quiet after a burst of connections (a flood the
    // connection cap turned away) keeps the pages their buffers used: mimalloc gives a
    // thread's free pages back to the system only when that thread allocates again.
    // Collecting its heap once connections closed on it returns them.
    tandem::server::on_connections_closed(|| {
        // SAFETY: mi_collect takes no pointers; it frees the calling thread's empty pages
        // and the segments abandoned by threads that ended, all mimalloc's own.
        unsafe { libmimalloc_sys::mi_collect(true) }
    });
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .expect("no other crypto provider is installed before main");
    tandem::app::run(tandem::config::Cli::parse())
}
