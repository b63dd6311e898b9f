//! `run`: an attached session. The copy lives exactly as long as COMMAND: a heartbeat keeps the
//! session (and any scale-down lease) alive, and the session ends when COMMAND exits or when we
//! get SIGINT/SIGTERM (forwarded to COMMAND first). If we are killed outright, the heartbeat
//! stops and `gc` ends the session once its lease runs out.

use std::process::ExitStatus;

use mirrord_copy_core::{scale_down, session, Error, Progress, Session};
use mirrord_copy_lock::clock;
use tokio::process::Command;

use crate::cli::{GlobalArgs, RunArgs};
use crate::commands::create::{
    after_create, build_request, confirm_or_end, create_undoing_on_signal, end_after, identify,
    open_emit, until_signal,
};
use crate::commands::with_state;
use crate::http_stack::jitter;
use crate::kube_client::connect;
use crate::progress::Reporter;
use crate::signals::Signals;

pub(crate) async fn run(global: &GlobalArgs, args: &RunArgs) -> Result<i32, Error> {
    // Until the command starts, SIGINT/SIGTERM/SIGHUP stop `run` and undo what it made; from then on they are forwarded to the command.
    let emit = open_emit(&args.copy)?;
    let signals = Signals::listen()?;
    let cluster = until_signal(&signals, connect(global)).await??;
    // No ttl: an attached session is kept alive by its heartbeat instead.
    let request = build_request(global, &cluster, args.target.as_deref(), &args.copy, None)?;
    let request = until_signal(&signals, identify(request, &cluster)).await?;
    let created = create_undoing_on_signal(&cluster, &request, &signals, global.verbose).await?;
    let start = async {
        after_create(&cluster, emit, &created)?;
        // The copy is Ready: from now on the session lives by its heartbeat, as every `run`
        // session, and a lost copy pod is gc's to end it.
        let s = created.as_confirmed(clock::now());
        confirm_or_end(&cluster, &s, global.verbose).await?;
        Ok(s)
    };
    let started = tokio::select! {
        biased;
        stopped = signals.first() => Err(stopped),
        s = start => s,
    };
    let s = match started {
        Ok(s) => s,
        Err(stopped @ Error::Interrupted(_)) => {
            end_after(&cluster, &created, &stopped, global.verbose).await;
            return Err(stopped);
        }
        Err(e) => return Err(e),
    };
    // A signal from now on goes to the command; one that came just before is not lost.
    if let Some(stopped) = signals.any() {
        end_after(&cluster, &s, &stopped, global.verbose).await;
        return Err(stopped);
    }

    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel();
    let keeper = tokio::spawn(keep_alive(cluster.client.clone(), s.clone(), lost_tx));
    let outcome = run_command(&args.command, &s, lost_rx, &signals).await;
    keeper.abort();

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

/// Renew the session every [`session::HEARTBEAT_INTERVAL`]; a failed renewal is retried every
/// [`session::RETRY_PERIOD`] (with jitter), each attempt bounded by it. Reports on `lost` when
/// the session is definitely gone (ConfigMap deleted, lock taken over) or no renewal
/// succeeded for [`session::RENEW_DEADLINE`], while the lease (measured on the API server's
/// clock, as every lease) still has time left: the command is stopped before anyone else can
/// take the workload over.
async fn keep_alive(client: kube::Client, s: Session, lost: tokio::sync::oneshot::Sender<Error>) {
    let mut last_renewal = tokio::time::Instant::now();
    let mut wait = session::HEARTBEAT_INTERVAL;
    let mut warned: Vec<String> = Vec::new();
    loop {
        tokio::time::sleep(wait).await;
        let attempt = tokio::time::timeout(session::RETRY_PERIOD, session::heartbeat(&client, &s));
        let why = match attempt.await {
            Ok(Ok(interference)) => {
                for found in interference.iter().filter(|f| !warned.contains(f)) {
                    eprintln!("warning: {found}; the session still holds it and restores the recorded count only if it is back at the count the session set");
                    if let Some(workload) = &s.workload {
                        let warn = |p: Progress| {
                            if let Progress::Warning(text) = p {
                                eprintln!("warning: {text}");
                            }
                        };
                        scale_down::record_interference(
                            &client,
                            &s.namespace,
                            workload,
                            found,
                            &warn,
                        )
                        .await;
                    }
                }
                warned = interference;
                last_renewal = tokio::time::Instant::now();
                wait = session::HEARTBEAT_INTERVAL;
                continue;
            }
            Ok(Err(e @ Error::SessionLost(_))) => {
                let _ = lost.send(e);
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {}s", session::RETRY_PERIOD.as_secs()),
        };
        let failing_for = last_renewal.elapsed();
        let left = match session::after_failed_renewal(failing_for) {
            session::AfterFailedRenewal::Retry(left) => left,
            session::AfterFailedRenewal::Lost => {
                let _ = lost.send(Error::SessionLost(format!(
                    "session {} could not be renewed for {}s (last error: {why}); its lease of {}s may run out and another session or gc take the workload",
                    s.id,
                    failing_for.as_secs(),
                    session::RUN_LEASE.as_secs()
                )));
                return;
            }
        };
        eprintln!(
            "warning: session heartbeat failed, retrying (deadline in {}s): {why}",
            left.as_secs()
        );
        // Up to a quarter more, so many clients retrying do not arrive together.
        wait = jitter(session::RETRY_PERIOD, 1.0, 1.25);
    }
}

/// Run COMMAND to completion, forwarding SIGINT/SIGTERM; its exit code (128+N if killed by N).
/// If the session is lost meanwhile, COMMAND is stopped (SIGTERM, then SIGKILL after
/// [`STOP_GRACE`]) and the loss is the result.
async fn run_command(
    command: &[String],
    s: &Session,
    lost: tokio::sync::oneshot::Receiver<Error>,
    signals: &Signals,
) -> Result<i32, Error> {
    // Every signal that arrives once the command is spawned is forwarded to it.
    let seen = signals.count();
    let args: Vec<String> = command
        .iter()
        .map(|a| a.replace("{pod}", &s.copy_pod))
        .collect();
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .env("MIRRORD_COPY_POD", &s.copy_pod)
        .env("MIRRORD_COPY_NAMESPACE", &s.namespace)
        .env("MIRRORD_COPY_TARGET", &s.target)
        .env(
            "MIRRORD_COPY_CONTAINER",
            s.runs.as_ref().map(|r| r.container.as_str()).unwrap_or(""),
        )
        .spawn()
        .map_err(|e| Error::Usage(format!("cannot run {:?}: {e}", args[0])))?;
    let lost = async {
        match lost.await {
            Ok(e) => e,
            // The keeper stopped without a loss (never, short of a panic): wait on.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::pin!(lost);
    tokio::select! {
        status = wait_forwarding_signals(&mut child, signals, seen) => Ok(exit_code(status?)),
        why = &mut lost => {
            eprintln!(
                "warning: the session was lost; stopping the command (SIGTERM, SIGKILL after {}s)",
                STOP_GRACE.as_secs()
            );
            stop(&mut child).await;
            Err(why)
        }
    }
}

/// How long a command gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// SIGTERM, then SIGKILL if COMMAND is still running after [`STOP_GRACE`].
async fn stop(child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

/// Wait for COMMAND, forwarding to it every signal [`Signals`] counts after the first `seen`
/// (SIGINT, SIGTERM, SIGHUP; elsewhere Ctrl-C stops it).
async fn wait_forwarding_signals(
    child: &mut tokio::process::Child,
    signals: &Signals,
    seen: u32,
) -> Result<ExitStatus, Error> {
    let io = |source: std::io::Error| Error::Io {
        context: "waiting for the command".into(),
        source,
    };
    let mut next = seen + 1;
    loop {
        tokio::select! {
            status = child.wait() => return status.map_err(io),
            _ = signals.nth(next) => {}
        }
        next = signals.count() + 1;
        forward(child, signals.last());
    }
}

#[cfg(unix)]
fn forward(child: &mut tokio::process::Child, signal: i32) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        unsafe {
            libc::kill(pid as libc::pid_t, signal);
        }
    }
}

#[cfg(not(unix))]
fn forward(child: &mut tokio::process::Child, _signal: i32) {
    let _ = child.start_kill();
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
