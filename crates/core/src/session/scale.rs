//! The session lifecycle's view of scale-down (crates/core/src/scale_down, owned by the
//! scale-down work): one place that names what the lifecycle calls.

use std::time::Duration;

use super::{ProgressFn, SessionHandle};
use crate::error::Error;
use crate::resolve::ResolvedTarget;
use crate::scale_down;

/// What `prepare` decided; handed to `apply`.
pub(crate) type Plan = scale_down::ScaleDownPlan;

/// Read-only, before anything is written: which workload, guardrail, conflict.
pub(crate) async fn check(client: &kube::Client, resolved: &ResolvedTarget) -> Result<(), Error> {
    scale_down::check(client, resolved).await.map(|_| ())
}

pub(crate) async fn prepare(
    client: &kube::Client,
    resolved: &ResolvedTarget,
    session: &SessionHandle,
    lease: Duration,
    on_progress: &ProgressFn,
) -> Result<Plan, Error> {
    scale_down::prepare(client, resolved, session, lease, on_progress).await
}

pub(crate) async fn apply(
    client: &kube::Client,
    plan: &Plan,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    scale_down::apply(client, plan, on_progress).await
}

pub(crate) async fn restore(
    client: &kube::Client,
    namespace: &str,
    session_id: &str,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    scale_down::restore(client, namespace, session_id, on_progress).await
}

pub(crate) async fn renew(
    client: &kube::Client,
    namespace: &str,
    session_id: &str,
    lease: Duration,
) -> Result<(), Error> {
    scale_down::renew(client, namespace, session_id, lease).await
}
