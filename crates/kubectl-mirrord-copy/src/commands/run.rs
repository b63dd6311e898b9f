//! `run`: an attached session. The copy lives exactly as long as COMMAND: a heartbeat keeps the
//! session (and any scale-down lease) alive, and the session ends when COMMAND exits or when we
//! get SIGINT/SIGTERM (forwarded to COMMAND first). If we are killed outright, the heartbeat
//! stops and `gc` ends the session once its lease runs out.

use std::process::ExitStatus;

use mirrord_copy_core::{session, Error, Session};
use tokio::process::Command;

use crate::cli::{GlobalArgs, RunArgs};
use crate::commands::create::{after_create, build_request, identify};
use crate::commands::with_state;
use crate::kube_client::connect;
use crate::progress::Reporter;

pub async fn run(global: &GlobalArgs, args: &RunArgs) -> Result<i32, Error> {
    let cluster = connect(global).await?;
    // No ttl: an attached session is kept alive by its heartbeat instead.
    let request = build_request(global, &cluster, args.target.as_deref(), &args.copy, None)?;
    let request = identify(request, &cluster).await;
    let reporter = Reporter::new(global.verbose);
    let created = session::create(&cluster.client, &request, &reporter.sink()).await;
    reporter.finish();
    let s = created?;
    after_create(&cluster, &args.copy, &s)?;

    let heartbeat = {
        let client = cluster.client.clone();
        let s = s.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(session::HEARTBEAT_INTERVAL).await;
                if let Err(e) = session::heartbeat(&client, &s).await {
                    eprintln!("warning: session heartbeat failed (will retry): {e}");
                }
            }
        })
    };
    let outcome = run_command(&args.command, &s).await;
    heartbeat.abort();

    let reporter = Reporter::new(global.verbose);
    let ended = session::end(&cluster.client, &s.namespace, &s.id, &reporter.sink()).await;
    reporter.finish();
    match ended {
        Ok(_) => with_state(|state| state.remove(&s.namespace, &s.id)),
        Err(e) => {
            eprintln!(
                "error: ending the session of pod/{} failed: {e}\nhint: `kubectl mirrord-copy delete {} -n {}` or `kubectl mirrord-copy gc` finishes it",
                s.copy_pod, s.copy_pod, s.namespace
            );
            // The command's result matters less than a workload that may still be scaled down.
            return Err(e);
        }
    }
    outcome
}

/// Run COMMAND to completion, forwarding SIGINT/SIGTERM; its exit code (128+N if killed by N).
async fn run_command(command: &[String], s: &Session) -> Result<i32, Error> {
    let args: Vec<String> = command
        .iter()
        .map(|a| a.replace("{pod}", &s.copy_pod))
        .collect();
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .env("MIRRORD_COPY_POD", &s.copy_pod)
        .env("MIRRORD_COPY_NAMESPACE", &s.namespace)
        .env("MIRRORD_COPY_TARGET", &s.target)
        .spawn()
        .map_err(|e| Error::Usage(format!("cannot run {:?}: {e}", args[0])))?;
    let status = wait_forwarding_signals(&mut child).await?;
    Ok(exit_code(status))
}

#[cfg(unix)]
async fn wait_forwarding_signals(child: &mut tokio::process::Child) -> Result<ExitStatus, Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let io = |e: std::io::Error| Error::Other(format!("waiting for the command: {e}"));
    let mut interrupt = signal(SignalKind::interrupt()).map_err(io)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(io)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(io)?;
    loop {
        let forwarded = tokio::select! {
            status = child.wait() => return status.map_err(io),
            _ = interrupt.recv() => libc::SIGINT,
            _ = terminate.recv() => libc::SIGTERM,
            _ = hangup.recv() => libc::SIGHUP,
        };
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
            unsafe {
                libc::kill(pid as libc::pid_t, forwarded);
            }
        }
    }
}

#[cfg(not(unix))]
async fn wait_forwarding_signals(child: &mut tokio::process::Child) -> Result<ExitStatus, Error> {
    let io = |e: std::io::Error| Error::Other(format!("waiting for the command: {e}"));
    tokio::select! {
        status = child.wait() => status.map_err(io),
        _ = tokio::signal::ctrl_c() => {
            let _ = child.start_kill();
            child.wait().await.map_err(io)
        }
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return 128 + signal;
        }
    }
    status.code().unwrap_or(1)
}
