//! Putting a workload back. Works from any machine: it reads the lock ConfigMap and the
//! workload's annotation, never in-memory state, and every write is pinned to the
//! resourceVersion it decided on, so a racing gc, a new session or a human scaling the
//! workload is never overwritten.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::DynamicObject;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::workload::{self, patch_annotations, ScaleKind, ScaleTarget};
use super::{autoscalers, gitops};
use super::{lock_error, session_cm, FENCE};
use crate::error::{is_conflict, is_not_found, Error};
use crate::labels::{DATA_WORKLOAD, ORIGINAL_REPLICAS_ANNOTATION, SCALED_DOWN_BY_ANNOTATION};
use crate::session::{Progress, ProgressFn};
use mirrord_copy_lock::{self as lock, clock, LockError, LockRecord, Released};

/// What [`restore_workload`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RestoreOutcome {
    /// Scaled back from zero to the recorded count.
    Restored { to: i32 },
    /// Already at the recorded count (never scaled, or restored by an earlier run).
    AlreadyAtOriginal,
    /// Someone scaled it during the session: their count was kept.
    KeptTheirs { current: i32, original: i32 },
    /// The session never scaled it (the write-ahead flag was never set).
    NeverScaled,
    /// Nothing recorded for this session on the workload.
    NothingRecorded,
    /// The workload is gone.
    Gone,
    /// The workload was deleted and recreated: the record is about another object.
    Recreated,
    /// Another session's scale-down now: not ours to touch.
    OtherSession(String),
}

/// End the scale-down of `session_id` in `namespace`: for each lock it holds, fence it (renew
/// the lease briefly, proving it is still ours), restore the workload, release the lock. With
/// no lock (garbage-collected with its session, or never taken), fall back to the session
/// ConfigMap's `workload` and the annotation on it. Idempotent.
pub async fn restore(
    client: &kube::Client,
    namespace: &str,
    session_id: &str,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    let locks = lock::list(client, Some(namespace), Some(session_id))
        .await
        .map_err(|e| Error::from_kube(e, "list", "configmaps"))?;
    let mut handled = false;
    for cm in locks {
        let name = cm.name_any();
        let until = clock::now() + chrono::Duration::from_std(FENCE).unwrap_or_default();
        // From the lock as listed: a read only if it changed since.
        let fenced = lock::update_known(client, cm, session_id, |r| r.lease_expires = until).await;
        let guard = match fenced {
            Ok(g) => g,
            Err(LockError::Lost(why)) => {
                // Taken over after our lease expired: the new holder carries the count.
                on_progress(Progress::Warning(format!(
                    "not restoring: {why}; the new holder will restore it"
                )));
                continue;
            }
            Err(e) => return Err(record_error(namespace, &name, e)),
        };
        let record = &guard.record;
        let target = target_of(namespace, record)?;
        restore_workload(client, &target, session_id, Some(record), on_progress).await?;
        match lock::release_guarded(client, &guard, session_id).await {
            Ok(Released::Deleted) => on_progress(Progress::Deleted {
                object: format!("configmap/{name}"),
            }),
            Ok(_) => {}
            Err(e) => return Err(lock_error(&target, e)),
        }
        handled = true;
    }
    if handled {
        return Ok(());
    }
    let sessions: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let workload = match sessions.get_opt(&session_cm(session_id)).await {
        Ok(cm) => cm.and_then(|cm| cm.data?.get(DATA_WORKLOAD).cloned()),
        Err(e) => return Err(Error::from_kube(e, "get", "configmaps")),
    };
    if let Some((kind, name)) = workload.as_deref().and_then(|w| w.split_once('/')) {
        if let Some(kind) = ScaleKind::parse(kind) {
            let target = ScaleTarget {
                kind,
                name: name.to_string(),
                namespace: namespace.to_string(),
                uid: String::new(),
            };
            restore_workload(client, &target, session_id, None, on_progress).await?;
        }
    }
    Ok(())
}

pub(super) fn target_of(namespace: &str, record: &LockRecord) -> Result<ScaleTarget, Error> {
    let kind = ScaleKind::parse(&record.workload_kind).ok_or_else(|| {
        Error::CorruptRecord(format!(
            "lock of {}/{} names an unknown kind {:?}",
            namespace, record.workload_name, record.workload_kind
        ))
    })?;
    Ok(ScaleTarget {
        kind,
        name: record.workload_name.clone(),
        namespace: namespace.to_string(),
        uid: record.workload_uid.clone(),
    })
}

fn record_error(namespace: &str, name: &str, e: LockError) -> Error {
    match e {
        LockError::Malformed(why) => Error::CorruptRecord(format!(
            "lock {namespace}/{name} is malformed and was left untouched: {why}"
        )),
        LockError::Kube(k) => Error::from_kube(k, "update", "configmaps"),
        other => Error::Contended(format!("lock {namespace}/{name}: {other}")),
    }
}

/// Restore one workload for `session_id`, from the lock `record` if we have it, else from the
/// workload's own annotation. The count is put back only if the workload is at zero, by a
/// write pinned to the resourceVersion we read; then KEDA is unpaused and our annotations are
/// removed. A workload whose uid differs from the record's is left alone.
pub(crate) async fn restore_workload(
    client: &kube::Client,
    target: &ScaleTarget,
    session_id: &str,
    record: Option<&LockRecord>,
    on_progress: &ProgressFn,
) -> Result<RestoreOutcome, Error> {
    let (outcome, latest) = restore_count(client, target, session_id, record, on_progress).await?;
    // Nothing of ours on the workload: KEDA was never paused by us, or was unpaused before
    // the annotation went (the order below); gc sweeps any leftover pause.
    if matches!(
        outcome,
        RestoreOutcome::OtherSession(_) | RestoreOutcome::NothingRecorded
    ) {
        return Ok(outcome);
    }
    // After the count: an unpaused ScaledObject at zero would scale from zero itself and we
    // would then mistake its count for a human's.
    for so in autoscalers::unpause_keda(client, &target.namespace, &|by| by == session_id).await? {
        on_progress(Progress::Info(format!("unpaused KEDA ScaledObject {so}")));
    }
    if !matches!(outcome, RestoreOutcome::Gone | RestoreOutcome::Recreated) {
        remove_annotations(client, target, session_id, latest).await?;
    }
    Ok(outcome)
}

async fn restore_count(
    client: &kube::Client,
    target: &ScaleTarget,
    session_id: &str,
    record: Option<&LockRecord>,
    on_progress: &ProgressFn,
) -> Result<(RestoreOutcome, Option<DynamicObject>), Error> {
    let what = target.describe();
    for _ in 0..8 {
        let Some(object) = workload::get(client, target).await? else {
            on_progress(Progress::Warning(format!(
                "{what} no longer exists; nothing to restore"
            )));
            return Ok((RestoreOutcome::Gone, None));
        };
        let observed = workload::observed(target.kind, object);
        // Every outcome below but a write leaves the workload as read: the next step may
        // start from it.
        let seen = Some(observed.object.clone());
        if let Some(r) = record {
            if r.workload_uid != observed.uid() {
                on_progress(Progress::Warning(format!(
                    "{what} was deleted and recreated during the session (uid {} -> {}); left untouched",
                    r.workload_uid,
                    observed.uid()
                )));
                return Ok((RestoreOutcome::Recreated, None));
            }
        }
        let by = observed.annotation(SCALED_DOWN_BY_ANNOTATION);
        if let Some(other) = by.filter(|b| *b != session_id) {
            // Worth a warning only if we held the lock (a session that lost the race for it
            // sees the winner's annotation, as it should).
            if record.is_some() {
                on_progress(Progress::Warning(format!(
                    "{what} is now scaled down by session {other}; left to it"
                )));
            }
            return Ok((RestoreOutcome::OtherSession(other.to_string()), seen));
        }
        let annotated = by == Some(session_id);
        let (original, maybe_scaled) = match record {
            Some(r) => (r.original_replicas, r.scaled_down),
            None if annotated => {
                let raw = observed
                    .annotation(ORIGINAL_REPLICAS_ANNOTATION)
                    .unwrap_or_default();
                let n = lock::parse_replicas(ORIGINAL_REPLICAS_ANNOTATION, raw).map_err(|why| {
                    Error::CorruptRecord(format!("{what}: {why}; left untouched"))
                })?;
                // Without the lock we cannot know whether the scale happened: assume it may have.
                (n, true)
            }
            None => return Ok((RestoreOutcome::NothingRecorded, seen)),
        };
        if !maybe_scaled {
            return Ok((RestoreOutcome::NeverScaled, seen));
        }
        if observed.replicas == original {
            return Ok((RestoreOutcome::AlreadyAtOriginal, seen));
        }
        if observed.replicas != 0 {
            on_progress(Progress::Warning(format!(
                "{what} was scaled to {} during the session; keeping that instead of the original {original}",
                observed.replicas
            )));
            return Ok((
                RestoreOutcome::KeptTheirs {
                    current: observed.replicas,
                    original,
                },
                seen,
            ));
        }
        match workload::set_replicas(client, target, original, Some(&observed.resource_version))
            .await
        {
            Ok(_) => {
                on_progress(Progress::Restored {
                    workload: target.workload_field(),
                    to: original,
                });
                // Its controller answers a new count with a status update (a new
                // resourceVersion): the next write reads first rather than fail a pin.
                return Ok((RestoreOutcome::Restored { to: original }, None));
            }
            // Changed since we looked: look again.
            Err(e) if is_conflict(&e) => continue,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => {
                return Err(Error::from_kube(
                    e,
                    "patch",
                    &format!("{}/scale", target.kind.resource_name()),
                ))
            }
        }
    }
    Err(Error::Contended(format!(
        "{what} kept changing while being restored"
    )))
}

/// Remove our annotations, only while they name `session_id`, pinned to what we read
/// (`known`: the workload as last read or written, tried first without a read).
async fn remove_annotations(
    client: &kube::Client,
    target: &ScaleTarget,
    session_id: &str,
    mut known: Option<DynamicObject>,
) -> Result<(), Error> {
    let api = target.api(client);
    for _ in 0..8 {
        let fetched = match known.take() {
            Some(o) => Some(o),
            None => workload::get(client, target).await?,
        };
        let Some(object) = fetched else {
            return Ok(());
        };
        if object
            .annotations()
            .get(SCALED_DOWN_BY_ANNOTATION)
            .map(String::as_str)
            != Some(session_id)
        {
            return Ok(());
        }
        let mut patch =
            json!({ORIGINAL_REPLICAS_ANNOTATION: null, SCALED_DOWN_BY_ANNOTATION: null});
        // --suspend-flux: Flux's reconcile annotation goes back to what it was.
        if let Some(previous) = object.annotations().get(gitops::FLUX_PREVIOUS_ANNOTATION) {
            patch[gitops::FLUX_RECONCILE_ANNOTATION] = match previous.as_str() {
                "" => serde_json::Value::Null,
                value => json!(value),
            };
            patch[gitops::FLUX_PREVIOUS_ANNOTATION] = serde_json::Value::Null;
        }
        match patch_annotations(
            &api,
            &target.name,
            patch,
            object.resource_version().as_deref(),
        )
        .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_conflict(&e) || is_not_found(&e) => continue,
            Err(e) => return Err(Error::from_kube(e, "patch", &target.kind.resource_name())),
        }
    }
    Err(Error::Contended(format!(
        "{} kept changing while its annotations were removed",
        target.describe()
    )))
}
