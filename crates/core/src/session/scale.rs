//! The session lifecycle's view of scale-down (crates/core/src/scale_down, owned by the
//! scale-down work). Until that lands, `--scale-down` is refused before anything is written.

use std::time::Duration;

use super::{ProgressFn, SessionHandle};
use crate::error::Error;
use crate::resolve::ResolvedTarget;

/// Whether this build can scale workloads down.
pub(crate) const AVAILABLE: bool = false;

/// What `prepare` decided; handed to `apply`.
pub(crate) struct Plan;

fn unavailable() -> Error {
    Error::Unsupported("--scale-down is not available yet".into())
}

pub(crate) async fn prepare(
    _client: &kube::Client,
    _resolved: &ResolvedTarget,
    _session: &SessionHandle,
    _lease: Duration,
    _on_progress: &ProgressFn,
) -> Result<Plan, Error> {
    Err(unavailable())
}

pub(crate) async fn apply(
    _client: &kube::Client,
    _plan: &Plan,
    _on_progress: &ProgressFn,
) -> Result<(), Error> {
    Err(unavailable())
}

pub(crate) async fn restore(
    _client: &kube::Client,
    _namespace: &str,
    _session_id: &str,
    _on_progress: &ProgressFn,
) -> Result<(), Error> {
    // No session made by this build scaled anything down; nothing to restore.
    Ok(())
}

pub(crate) async fn renew(
    _client: &kube::Client,
    _namespace: &str,
    _session_id: &str,
    _lease: Duration,
) -> Result<(), Error> {
    Ok(())
}
