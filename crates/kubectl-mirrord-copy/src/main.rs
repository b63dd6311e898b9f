//! `kubectl-mirrord_copy`: the kubectl plugin binary. Parsing, output and wiring only; the
//! logic lives in `mirrord_copy_core` (targets, copies, sessions, scale-down) and
//! `mirrord_copy_lock` (the cluster-side mutex).

mod cli;
mod commands;
mod http_stack;
mod kube_client;
mod mirrord_config;
mod output;
mod progress;
mod signals;
mod state;
mod status_table;
mod tls;

use std::io::IsTerminal;

use clap::Parser;
use mirrord_copy_core::Error;

use cli::{Cli, Command};
use output::{paint, use_colour};

/// Our crates' own log lines (a corrupt record skipped, a retry) at default verbosity, and
/// no library's: what went wrong reaches the user once, as the command's error.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "off,kubectl_mirrord_copy=warn,mirrord_copy_core=warn,mirrord_copy_lock=warn",
        // Targets match by prefix: `kube` alone would silence kubectl_mirrord_copy too.
        1 => "info,kube=warn,kubectl_mirrord_copy=info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MIRRORD_COPY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(use_colour(std::io::stderr().is_terminal()))
        .with_target(verbose > 1);
    if verbose == 0 {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

async fn dispatch(cli: &Cli) -> Result<i32, Error> {
    let g = &cli.global;
    match &cli.command {
        Command::Create(args) => commands::create::create(g, args).await,
        Command::Run(args) => commands::run::run(g, args).await,
        Command::Status(args) => commands::status::status(g, args).await,
        Command::Delete(args) => commands::delete::delete(g, args).await,
        Command::Gc(args) => commands::gc::gc(g, args).await,
        Command::Version(args) => commands::version::version(g, args).await,
        Command::Completion { shell } => Ok(commands::completion::completion(*shell)),
    }
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(dispatch(&cli)) {
        Ok(code) => code,
        Err(err) => {
            let colour = use_colour(std::io::stderr().is_terminal());
            eprintln!("{} {err}", paint("error:", "31", colour));
            if let Some(h) = err.hint() {
                eprintln!("{} {h}", paint("hint:", "36", colour));
            }
            err.exit_code()
        }
    };
    // Don't wait for the runtime's idle connections; the work is done.
    runtime.shutdown_background();
    std::process::exit(code);
}
