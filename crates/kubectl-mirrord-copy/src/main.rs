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
mod state;
mod status_table;
mod tls;

use std::io::IsTerminal;

use clap::Parser;
use mirrord_copy_core::Error;

use cli::{Cli, Command};
use output::{paint, use_colour};

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info,kube=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MIRRORD_COPY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(use_colour(std::io::stderr().is_terminal()))
        .with_target(verbose > 1)
        .init();
}

/// A next step for the errors people hit most.
fn hint(err: &Error) -> Option<&'static str> {
    match err {
        Error::Forbidden { .. } => Some(
            "the permissions the plugin needs are in plugin-manifest/role.yaml and clusterrole.yaml",
        ),
        Error::Unreachable(_) => {
            Some("check the cluster with `kubectl cluster-info` using the same --kubeconfig/--context")
        }
        Error::Conflict { .. } => Some(
            "`kubectl mirrord-copy status -o wide` shows who holds it; copy without --scale-down to share the workload",
        ),
        Error::Timeout(_) => Some("raise --timeout, or look at the pod with `kubectl describe pod`"),
        Error::SessionLost(_) => Some(
            "the command was stopped because the session could no longer be vouched for; `kubectl mirrord-copy status -o wide` shows who holds the workload now",
        ),
        Error::Invalid { .. } => Some(
            "`kubectl mirrord-copy create TARGET --dry-run=client -o yaml` prints the pod that was sent",
        ),
        _ => None,
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
            if let Some(h) = hint(&err) {
                eprintln!("{} {h}", paint("hint:", "36", colour));
            }
            err.exit_code()
        }
    };
    // Don't wait for the runtime's idle connections; the work is done.
    runtime.shutdown_background();
    std::process::exit(code);
}
