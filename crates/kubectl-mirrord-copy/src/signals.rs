//! SIGINT, SIGTERM and SIGHUP while `create` (and `run`, until its command starts) works: the
//! first one stops the work and what it made is undone, scale-down first; a second
//! one gives up on the cleanup (gc ends the provisional session it leaves). Exit 128 + N.
//!
//! Once [`Signals::listen`] ran, these signals no longer end the process by themselves: every
//! command that listens must act on them.

use mirrord_copy_core::Error;
use tokio::sync::watch;

/// What arrived so far: the first signal's number, the last one's, and how many.
#[derive(Debug, Clone, Copy, Default)]
struct Received {
    first: i32,
    last: i32,
    count: u32,
}

/// The signals received since [`Signals::listen`].
#[derive(Clone)]
pub(crate) struct Signals {
    received: watch::Receiver<Received>,
}

impl Signals {
    /// Start counting SIGINT, SIGTERM and SIGHUP (Ctrl-C elsewhere).
    pub(crate) fn listen() -> Result<Signals, Error> {
        let (tx, rx) = watch::channel(Received::default());
        listen_into(tx)?;
        Ok(Signals { received: rx })
    }

    /// Completes once `n` signals arrived (at once if they already did), with
    /// [`Error::Interrupted`] naming the first.
    pub(crate) async fn nth(&self, n: u32) -> Error {
        let mut rx = self.received.clone();
        let first = rx.wait_for(|r| r.count >= n).await.map(|seen| seen.first);
        match first {
            Ok(first) => Error::Interrupted(first),
            // The listener is gone (never, short of a panic): no signal will come.
            Err(_) => std::future::pending().await,
        }
    }

    /// [`Signals::nth`] of the first signal.
    pub(crate) async fn first(&self) -> Error {
        self.nth(1).await
    }

    /// How many signals arrived so far.
    pub(crate) fn count(&self) -> u32 {
        self.received.borrow().count
    }

    /// The number of the last signal that arrived (0: none yet).
    pub(crate) fn last(&self) -> i32 {
        self.received.borrow().last
    }

    /// [`Error::Interrupted`] naming the first signal, if one arrived.
    pub(crate) fn any(&self) -> Option<Error> {
        let r = *self.received.borrow();
        (r.count > 0).then_some(Error::Interrupted(r.first))
    }
}

#[cfg(unix)]
fn listen_into(tx: watch::Sender<Received>) -> Result<(), Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let io = |source: std::io::Error| Error::Io {
        context: "listening for signals".into(),
        source,
    };
    let mut interrupt = signal(SignalKind::interrupt()).map_err(io)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(io)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(io)?;
    tokio::spawn(async move {
        loop {
            let got = tokio::select! {
                _ = interrupt.recv() => libc::SIGINT,
                _ = terminate.recv() => libc::SIGTERM,
                _ = hangup.recv() => libc::SIGHUP,
            };
            tx.send_modify(|r| record(r, got));
        }
    });
    Ok(())
}

fn record(r: &mut Received, signal: i32) {
    if r.count == 0 {
        r.first = signal;
    }
    r.last = signal;
    r.count += 1;
}

#[cfg(not(unix))]
fn listen_into(tx: watch::Sender<Received>) -> Result<(), Error> {
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            // Ctrl-C: reported as SIGINT (exit 130), as a shell would.
            tx.send_modify(|r| record(r, 2));
        }
    });
    Ok(())
}
