//! One module per subcommand; each returns the process exit code or a core error.

pub(crate) mod completion;
pub(crate) mod create;
pub(crate) mod delete;
pub(crate) mod gc;
pub(crate) mod run;
pub(crate) mod status;
pub(crate) mod version;

use mirrord_copy_core::session::Stranded;
use mirrord_copy_core::{Error, Session};

use crate::commands::create::known_identity;
use crate::kube_client::Cluster;
use crate::state::{Entry, LocalState};

/// `user@host` of this machine, recorded on sessions beside the Kubernetes user: the login
/// name (`$USER`, as a shell shows it, else the account database) and the host name, from
/// `whoami` on every platform.
pub(crate) fn local_user() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| whoami::username().ok())
        .unwrap_or_else(|| "unknown".into());
    let host = whoami::hostname()
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{user}@{host}")
}

/// The local state file; problems with it are warnings, never failures of the command.
pub(crate) fn with_state(action: impl FnOnce(&LocalState) -> std::io::Result<()>) {
    let Some(state) = LocalState::default_location() else {
        return;
    };
    if let Err(e) = action(&state) {
        eprintln!(
            "warning: the local session cache {} could not be updated: {e}",
            state.path().display()
        );
    }
}

/// Whether this machine's state file records `session`.
pub(crate) fn recorded_here(entries: &[Entry], session: &Session) -> bool {
    entries
        .iter()
        .any(|e| e.id == session.id && e.namespace == session.namespace)
}

/// The one rule for "yours": `status`'s Yours column and `yours` field, and what `delete --all`
/// and `--target` end without `--all-owners`. A session is yours when this machine's state
/// file records it, or when it was made by the Kubernetes user these credentials authenticate
/// as (a SelfSubjectReview, cached for a day; the local `user@host` where the cluster cannot
/// say, as `create` records it then).
pub(crate) struct Yours {
    entries: Vec<Entry>,
    me: Option<String>,
}

impl Yours {
    /// Reads the state file; asks who we are only if some of `sessions` is not recorded in it.
    pub(crate) async fn of(cluster: &Cluster, sessions: &[Session]) -> Yours {
        let entries = state_entries();
        let me = if sessions.iter().all(|s| recorded_here(&entries, s)) {
            None
        } else {
            Some(known_identity(cluster).await.unwrap_or_else(local_user))
        };
        Yours { entries, me }
    }

    pub(crate) fn is(&self, session: &Session) -> bool {
        recorded_here(&self.entries, session) || self.me.as_deref() == Some(session.owner.as_str())
    }
}

pub(crate) fn state_entries() -> Vec<Entry> {
    let mut entries = Vec::new();
    with_state(|s| {
        entries = s.entries()?;
        Ok(())
    });
    entries
}

/// The cluster has just listed every session of `namespace` (all namespaces if None) for the
/// current context, from a LIST started at `listed_at`: this machine's state file forgets the
/// ones it records there that are gone (ended by gc, by their TTL, from another machine).
pub(crate) fn forget_ended(
    cluster: &Cluster,
    namespace: Option<&str>,
    live: &[Session],
    listed_at: chrono::DateTime<chrono::Utc>,
) {
    let live: Vec<(&str, &str)> = live
        .iter()
        .map(|s| (s.namespace.as_str(), s.id.as_str()))
        .collect();
    with_state(|state| {
        state
            .prune(&cluster.context, namespace, &live, listed_at)
            .map(drop)
    });
}

/// When a LIST that began at `started` (this machine's monotonic clock) began, on the API
/// server's clock: asked after the LIST, once its response has told the server's time.
pub(crate) fn listed_at(started: std::time::Instant) -> chrono::DateTime<chrono::Utc> {
    let took = chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
    mirrord_copy_lock::clock::now() - took
}

/// What `status` and `delete` say of a workload held by the lock of a session that no longer
/// exists: only gc puts it back.
pub(crate) fn warn_stranded(s: &Stranded) {
    eprintln!(
        "warning: {} in namespace {} is held by the scale-down lock of session {}, which no longer exists; `kubectl mirrord-copy gc -n {}` restores it and releases the lock",
        s.workload, s.namespace, s.session, s.namespace
    );
}

pub(crate) fn print(text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a message.
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|source| Error::Io {
            context: "cannot write to stdout".into(),
            source,
        }),
    }
}
