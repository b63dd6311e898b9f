//! A session's leases: [`confirm`] (the create is done: its TTL counts from now),
//! [`heartbeat`] (a `run` renews its session and lock) and the renewal of a provisional
//! session while its create waits.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Patch;
use kube::Api;
use serde_json::json;

use super::{CreateRequest, Progress, ProgressFn, Session, SessionHandle};
use crate::error::{is_not_found, Error};
use crate::labels::{self};
use crate::scale_down;
use mirrord_copy_lock::clock;
use mirrord_copy_lock::rfc3339;

/// Lease of a `run` session's scale-down lock; its heartbeat renews it.
pub const RUN_LEASE: Duration = Duration::from_secs(60);
/// How long a provisional session (being created: [`super::create`] until [`confirm`]) lives after
/// its last heartbeat: `create` renews it every [`HEARTBEAT_INTERVAL`] while it waits, so a
/// create that dies (SIGKILL, a lost machine) leaves a session `gc` ends within this, not
/// within its TTL.
pub const PROVISIONAL_LEASE: Duration = RUN_LEASE;
/// How often `run` should call [`heartbeat`] (well inside [`RUN_LEASE`]).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// With no successful renewal for this long, `run` treats its session as lost: before the
/// lease itself runs out (lease > renew deadline > retry period, as client-go's leader
/// election), so the command is stopped before anyone else may take the workload.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(40);
/// A failed renewal is retried this often (with jitter); each attempt is bounded by it too.
pub const RETRY_PERIOD: Duration = Duration::from_secs(4);

pub(super) async fn patch_data(
    client: &kube::Client,
    namespace: &str,
    session_id: &str,
    key: &str,
    value: &str,
) -> Result<(), Error> {
    let patch = json!({ "data": { key: value } });
    patch_session(client, namespace, session_id, &patch).await
}

/// A merge patch of the session ConfigMap; gone is [`Error::SessionLost`].
async fn patch_session(
    client: &kube::Client,
    namespace: &str,
    session_id: &str,
    patch: &serde_json::Value,
) -> Result<(), Error> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match cms
        .patch(
            &labels::session_config_map_name(session_id),
            &mirrord_copy_lock::patch_params(),
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Err(Error::SessionLost(format!(
            "session {session_id} in namespace {namespace} no longer exists (ended by delete or gc)"
        ))),
        Err(e) => Err(Error::from_kube(e, "patch", "configmaps")),
    }
}

/// Make a session [`super::create`] returned durable, once its copy is Ready and its name handed
/// over (printed): `session` as [`Session::as_confirmed`] made it. One merge patch of the
/// session ConfigMap: the provisional mark off, `confirmed`, and a detached session's expiry
/// (its TTL from now). Until then the session lapses [`PROVISIONAL_LEASE`] after its last
/// heartbeat, so a create killed at any step is ended by `gc` within that. A session already
/// ended (gc judged it lapsed) is [`Error::SessionLost`].
pub async fn confirm(client: &kube::Client, session: &Session) -> Result<(), Error> {
    let mut data = serde_json::Map::new();
    data.insert(labels::DATA_PROVISIONAL.into(), serde_json::Value::Null);
    let confirmed = session.confirmed.unwrap_or_else(clock::now);
    data.insert(labels::DATA_CONFIRMED.into(), json!(rfc3339(confirmed)));
    if let Some(expires) = session.expires {
        data.insert(labels::DATA_EXPIRES.into(), json!(rfc3339(expires)));
    }
    let patch = json!({ "data": data });
    patch_session(client, &session.namespace, &session.id, &patch).await
}

/// Keep a `run` session alive: record the heartbeat and renew the scale-down lease. With
/// scale-down, also look whether someone scaled the workload meanwhile: returned (for `run` to
/// warn about) and recorded in the session (`interference`, for `status`).
pub async fn heartbeat(client: &kube::Client, session: &Session) -> Result<Vec<String>, Error> {
    let locks = beat(client, &session.namespace, &session.id, session.scale_down).await?;
    if locks.is_empty() {
        return Ok(Vec::new());
    }
    let found = scale_down::interference(client, &session.namespace, &locks).await?;
    if !found.is_empty() {
        patch_data(
            client,
            &session.namespace,
            &session.id,
            labels::DATA_INTERFERENCE,
            &found.join("; "),
        )
        .await?;
    }
    Ok(found)
}

/// Record a heartbeat; with `renew_lock`, renew the session's scale-down lease too (a `run`
/// session's: [`RUN_LEASE`]).
async fn beat(
    client: &kube::Client,
    namespace: &str,
    session_id: &str,
    renew_lock: bool,
) -> Result<Vec<mirrord_copy_lock::LockRecord>, Error> {
    let now = rfc3339(clock::now());
    patch_data(client, namespace, session_id, labels::DATA_HEARTBEAT, &now).await?;
    if !renew_lock {
        return Ok(Vec::new());
    }
    scale_down::renew(client, namespace, session_id, RUN_LEASE).await
}

/// Run `wait` (for Ready, or for an original to release its claims). A session being created
/// is provisional and lives by its heartbeat ([`PROVISIONAL_LEASE`]); a `run` session's lock
/// by a lease of [`RUN_LEASE`] too (a detached session's lock lease is its TTL). A wait longer
/// than that must keep them alive, or gc (or a takeover) would end the session while it is
/// still being created.
pub(super) async fn keeping_alive(
    client: &kube::Client,
    req: &CreateRequest,
    handle: &SessionHandle,
    wait: impl std::future::Future<Output = Result<(), Error>>,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    let renew_lock = req.scale_down && req.ttl.is_none();
    tokio::pin!(wait);
    let mut ticker = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticker.tick().await; // the first tick is immediate; the session was just created
    loop {
        tokio::select! {
            result = &mut wait => return result,
            _ = ticker.tick() => {
                if let Err(e) = beat(client, &handle.namespace, &handle.id, renew_lock).await {
                    on_progress(Progress::Warning(format!("heartbeat of session {}: {e}", handle.id)));
                }
            }
        }
    }
}

/// What a `run` does after its heartbeat failed, renewals having failed for `failing_for`:
/// retry, with this long left, or give the session up before its lease can run out (so the
/// command is stopped before anyone else may take the workload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailedRenewal {
    /// Retry in [`RETRY_PERIOD`]; the session is given up in this long.
    Retry(Duration),
    /// No renewal for [`RENEW_DEADLINE`]: the session is lost.
    Lost,
}

/// The lease-loss rule of `run` ([`AfterFailedRenewal`]).
pub fn after_failed_renewal(failing_for: Duration) -> AfterFailedRenewal {
    match RENEW_DEADLINE.checked_sub(failing_for) {
        Some(left) if !left.is_zero() => AfterFailedRenewal::Retry(left),
        _ => AfterFailedRenewal::Lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_gives_its_session_up_before_the_lease_can_run_out() {
        assert!(RETRY_PERIOD < RENEW_DEADLINE && RENEW_DEADLINE < RUN_LEASE);
        assert!(HEARTBEAT_INTERVAL < RENEW_DEADLINE);
        assert_eq!(
            after_failed_renewal(Duration::from_secs(15)),
            AfterFailedRenewal::Retry(RENEW_DEADLINE - Duration::from_secs(15))
        );
        assert_eq!(
            after_failed_renewal(RENEW_DEADLINE),
            AfterFailedRenewal::Lost
        );
        assert_eq!(
            after_failed_renewal(RUN_LEASE + Duration::from_secs(1)),
            AfterFailedRenewal::Lost
        );
    }
}
