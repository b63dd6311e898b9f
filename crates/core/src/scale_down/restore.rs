//! Putting a workload back. Works from any machine: it reads the workload's annotation (and
//! the lock ConfigMap when the session record cannot say), never in-memory state, and every
//! write is pinned to the resourceVersion it decided on, so a racing gc, a new session or a
//! human scaling the workload is never overwritten. The count and the removal of our record
//! are one write, as the zero and the record were.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::workload::{self, ScaleKind, ScaleTarget};
use super::{autoscalers, gitops};
use super::{lock_error, session_cm, FENCE};
use crate::error::{is_conflict, is_not_found, Error};
use crate::labels::{
    DATA_SCALED_OBJECTS, DATA_WORKLOAD, ORIGINAL_REPLICAS_ANNOTATION, SCALED_DOWN_BY_ANNOTATION,
};
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
    /// The session never scaled it (no record of ours on it: the zero and the record are
    /// written together).
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

/// End the scale-down of a session from what its record says: `workload` ("kind/name") and
/// the KEDA `scaled_objects` it recorded. The workload is read once and put back with one
/// pinned write, then the lock is released without a read (`lock::release`). Another
/// session's name on the workload means the lock must decide (ours was taken over, or we
/// stopped between taking a dead holder's lock and claiming the workload): [`restore`].
pub async fn restore_recorded(
    client: &kube::Client,
    namespace: &str,
    session_id: &str,
    workload: Option<&str>,
    scaled_objects: &[String],
    on_progress: &ProgressFn,
) -> Result<Vec<String>, Error> {
    let Some(target) = workload.and_then(|w| parse_workload(namespace, w)) else {
        return restore(client, namespace, session_id, on_progress).await;
    };
    let (outcome, unpaused) = restore_workload(
        client,
        &target,
        session_id,
        None,
        scaled_objects,
        on_progress,
    )
    .await?;
    if let RestoreOutcome::OtherSession(_) = outcome {
        return restore(client, namespace, session_id, on_progress).await;
    }
    let name = target.key().lock_name();
    match lock::release(client, namespace, &name, session_id).await {
        Ok(Released::Deleted) => on_progress(Progress::Deleted {
            object: format!("configmap/{name}"),
        }),
        Ok(_) => {}
        Err(e) => return Err(lock_error(&target, e)),
    }
    Ok(unpaused)
}

/// End the scale-down of `session_id` in `namespace` through its locks: for each lock it
/// holds, fence it (renew the lease briefly, proving it is still ours), restore the workload,
/// release the lock. With no lock (never taken, or released), fall back to the session
/// ConfigMap's `workload` and the annotation on it. Idempotent. gc's way for a dead session.
/// The KEDA ScaledObjects put back, by name.
pub async fn restore(
    client: &kube::Client,
    namespace: &str,
    session_id: &str,
    on_progress: &ProgressFn,
) -> Result<Vec<String>, Error> {
    let locks = lock::list(client, Some(namespace), Some(session_id))
        .await
        .map_err(|e| Error::from_kube(e, "list", "configmaps"))?;
    let mut handled = false;
    let mut unpaused = Vec::new();
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
        let scaled_objects = &record.scaled_objects;
        let (_, put_back) = restore_workload(
            client,
            &target,
            session_id,
            Some(record),
            scaled_objects,
            on_progress,
        )
        .await?;
        unpaused.extend(put_back);
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
        return Ok(unpaused);
    }
    let sessions: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let data = match sessions.get_opt(&session_cm(session_id)).await {
        Ok(cm) => cm.and_then(|cm| cm.data).unwrap_or_default(),
        Err(e) => return Err(Error::from_kube(e, "get", "configmaps")),
    };
    let target = data
        .get(DATA_WORKLOAD)
        .and_then(|w| parse_workload(namespace, w));
    if let Some(target) = target {
        let scaled_objects = lock::split_names(data.get(DATA_SCALED_OBJECTS).map(String::as_str));
        let restored = restore_workload(
            client,
            &target,
            session_id,
            None,
            &scaled_objects,
            on_progress,
        );
        unpaused.extend(restored.await?.1);
    }
    Ok(unpaused)
}

/// "deployment/x" (a session's `workload`) in `namespace`; the uid is unknown.
fn parse_workload(namespace: &str, workload: &str) -> Option<ScaleTarget> {
    let (kind, name) = workload.split_once('/')?;
    Some(ScaleTarget {
        kind: ScaleKind::parse(kind)?,
        name: name.to_string(),
        namespace: namespace.to_string(),
        uid: String::new(),
    })
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

/// Restore one workload for `session_id`, from the lock `record` if we hold it (fenced), else
/// from the workload's own annotation. One write, pinned to the resourceVersion read: the count
/// (only if the workload is at zero) and the removal of our annotations together. Then the
/// recorded KEDA ScaledObjects are unpaused (returned by name). A workload whose uid differs
/// from the record's is left alone.
pub(crate) async fn restore_workload(
    client: &kube::Client,
    target: &ScaleTarget,
    session_id: &str,
    record: Option<&LockRecord>,
    scaled_objects: &[String],
    on_progress: &ProgressFn,
) -> Result<(RestoreOutcome, Vec<String>), Error> {
    let outcome = restore_count(client, target, session_id, record, on_progress).await?;
    // Another session's now: its pauses are its own.
    if let RestoreOutcome::OtherSession(_) = outcome {
        return Ok((outcome, Vec::new()));
    }
    // After the count: an unpaused ScaledObject at zero would scale from zero itself and we
    // would then mistake its count for a human's. Through a lock we hold, a pause by the dead
    // holder whose place we took is ours to put back too.
    let ours = |by: &str| by == session_id || record.is_some();
    let unpaused = autoscalers::unpause_keda(client, &target.namespace, scaled_objects, &ours);
    let unpaused = unpaused.await?;
    for so in &unpaused {
        on_progress(Progress::Unpaused {
            scaled_object: so.clone(),
        });
    }
    Ok((outcome, unpaused))
}

async fn restore_count(
    client: &kube::Client,
    target: &ScaleTarget,
    session_id: &str,
    record: Option<&LockRecord>,
    on_progress: &ProgressFn,
) -> Result<RestoreOutcome, Error> {
    let what = target.describe();
    for _ in 0..8 {
        let Some(object) = workload::get(client, target).await? else {
            on_progress(Progress::Warning(format!(
                "{what} no longer exists; nothing to restore"
            )));
            return Ok(RestoreOutcome::Gone);
        };
        let observed = workload::observed(target.kind, object);
        if let Some(r) = record {
            if r.workload_uid != observed.uid() {
                on_progress(Progress::Warning(format!(
                    "{what} was deleted and recreated during the session (uid {} -> {}); left untouched",
                    r.workload_uid,
                    observed.uid()
                )));
                return Ok(RestoreOutcome::Recreated);
            }
        }
        let by = observed.annotation(SCALED_DOWN_BY_ANNOTATION);
        let Some(by) = by else {
            // The zero is written with our record: without it, never scaled by us.
            return Ok(match record {
                Some(_) => RestoreOutcome::NeverScaled,
                None => RestoreOutcome::NothingRecorded,
            });
        };
        if by != session_id {
            match record {
                // We hold the lock (fenced): this is the dead holder whose place we took,
                // stopped before we claimed the workload. Its record is ours to undo.
                Some(_) => on_progress(Progress::Warning(format!(
                    "{what} still names session {by}, whose expired lock this session took over; restoring it"
                ))),
                None => return Ok(RestoreOutcome::OtherSession(by.to_string())),
            }
        }
        let original = match record {
            Some(r) => r.original_replicas,
            None => {
                let raw = observed
                    .annotation(ORIGINAL_REPLICAS_ANNOTATION)
                    .unwrap_or_default();
                lock::parse_replicas(ORIGINAL_REPLICAS_ANNOTATION, raw)
                    .map_err(|why| Error::CorruptRecord(format!("{what}: {why}; left untouched")))?
            }
        };
        let (count, outcome) = match observed.replicas {
            n if n == original => (None, RestoreOutcome::AlreadyAtOriginal),
            0 => (Some(original), RestoreOutcome::Restored { to: original }),
            current => (None, RestoreOutcome::KeptTheirs { current, original }),
        };
        let annotations = record_removal(&observed);
        let pin = Some(observed.resource_version.as_str());
        match workload::write(client, target, count, annotations, pin).await {
            Ok(_) => {
                match &outcome {
                    RestoreOutcome::Restored { to } => on_progress(Progress::Restored {
                        workload: target.workload_field(),
                        to: *to,
                    }),
                    RestoreOutcome::KeptTheirs { current, .. } => {
                        on_progress(Progress::Warning(format!(
                            "{what} was scaled to {current} during the session; keeping that instead of the original {original}"
                        )))
                    }
                    _ => {}
                }
                return Ok(outcome);
            }
            // Changed since we looked (its controller, a racing gc, a person): look again.
            Err(e) if is_conflict(&e) || is_not_found(&e) => continue,
            Err(e) => return Err(Error::from_kube(e, "patch", &target.kind.resource_name())),
        }
    }
    Err(Error::Contended(format!(
        "{what} kept changing while being restored"
    )))
}

/// The merge-patch annotations that remove our record from the workload; with
/// `--suspend-flux`, Flux's reconcile annotation goes back to what it was.
fn record_removal(observed: &workload::Observed) -> serde_json::Value {
    let mut patch = json!({ORIGINAL_REPLICAS_ANNOTATION: null, SCALED_DOWN_BY_ANNOTATION: null});
    if let Some(previous) = observed.annotation(gitops::FLUX_PREVIOUS_ANNOTATION) {
        patch[gitops::FLUX_RECONCILE_ANNOTATION] = match previous {
            "" => serde_json::Value::Null,
            value => json!(value),
        };
        patch[gitops::FLUX_PREVIOUS_ANNOTATION] = serde_json::Value::Null;
    }
    patch
}
