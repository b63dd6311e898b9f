//! `mirrord-copy-sandbox`: the fake API server as a process, to try `kubectl mirrord-copy`
//! (and kubectl) without a cluster. The contract: writes the kubeconfig, prints a
//! line containing `ready` on stdout once serving, serves until SIGINT or SIGTERM, exits 0.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use fakekube::{FakeCluster, ServerOptions, ADMIN_TOKEN};

#[derive(Parser, Debug)]
#[command(
    name = "mirrord-copy-sandbox",
    version,
    about = "An in-process fake Kubernetes API server with simulated controllers and kubelet"
)]
struct Args {
    /// Where to write the kubeconfig (token user with cluster-admin, namespace `default`).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Port on 127.0.0.1 (random free port when absent).
    #[arg(long)]
    port: Option<u16>,
    /// Seed the demo workloads (py-serv-deployment, db, migrate, nightly, checkout, debug-me, queue-worker).
    #[arg(long)]
    demo: bool,
    /// Manifests to seed: YAML files, or directories of .yaml/.yml files (repeatable).
    #[arg(long = "manifests", value_name = "PATH")]
    manifests: Vec<PathBuf>,
}

fn manifest_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        Ok(files)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let fake = FakeCluster::start(ServerOptions {
        port: args.port,
        ..Default::default()
    })
    .await
    .context("starting the fake API server")?;
    if args.demo {
        fake.seed_yaml(fakekube::demo::demo_manifests())
            .context("seeding the demo")?;
    }
    for m in &args.manifests {
        for f in manifest_files(m)? {
            let yaml =
                std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            fake.seed_yaml(&yaml)
                .with_context(|| format!("seeding {}", f.display()))?;
        }
    }
    fake.write_kubeconfig(&args.kubeconfig, "default", ADMIN_TOKEN)
        .with_context(|| format!("writing {}", args.kubeconfig.display()))?;
    println!(
        "mirrord-copy-sandbox ready at {} (kubeconfig {})",
        fake.url(),
        args.kubeconfig.display()
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("mirrord-copy-sandbox: shutting down");
    fake.stop().await;
    Ok(())
}
