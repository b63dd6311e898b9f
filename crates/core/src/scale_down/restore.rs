//! Putting a workload back. Works from any machine: it reads the workload and the session's
//! lock, never in-memory state, and every write is pinned to the resourceVersion it decided
//! on, so a racing gc, a new session or a human scaling the workload is never overwritten.
//! The count and the removal of our record are one write, as the zero and the record were.
//!
//! The count comes from the lock whenever the lock is this session's: the workload's
//! annotations are a copy anyone with rights to the workload can edit or strip. A
//! workload at zero without our annotation while our lock records N is put back to N; an
//! `original-replicas` that disagrees with the lock is warned about and the lock's count used.
//! The annotation alone decides only when there is no lock left. A malformed lock is reported
//! and nothing is changed; the lock is released only once the count is back.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::count::{self, Decision};
use super::workload::{self, ScaleKind, ScaleTarget};
use super::{argocd, autoscalers, breadcrumbs, gitops};
use super::{lock_error, session_cm, FENCE};
use crate::error::{is_conflict, is_not_found, Error};
use crate::labels::{
    DATA_ARGO_APPLICATION, DATA_ARGO_SELF_HEAL_BEFORE, DATA_SCALED_OBJECTS, DATA_WORKLOAD,
    ORIGINAL_REPLICAS_ANNOTATION, SCALED_DOWN_BY_ANNOTATION, SCALED_TO_ANNOTATION,
};
use crate::model::{Progress, ProgressFn};
use mirrord_copy_lock::{
    self as lock, clock, LockError, LockGuard, LockRecord, PausedApplication, Released,
};

/// What [`restore_workload`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RestoreOutcome {
    /// Scaled back from the count the session set to the recorded count.
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

/// What ending a session's scale-down starts from: the workload its record names and the
/// lock of that workload, as read before anything is written ([`read_recorded`]).
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    namespace: String,
    /// The workload the session's record names; None: [`restore`] finds it through the locks.
    target: Option<ScaleTarget>,
    /// Its lock as read (absent: released already, or never taken) and what it records.
    lock: Option<(ConfigMap, LockRecord)>,
}

/// Read what [`restore_read`] needs, writing nothing: the lock of the workload the session's
/// record names (`workload`, "kind/name"). A malformed lock is an error naming it: reported,
/// never acted upon, so the caller stops before it changes anything.
pub(crate) async fn read_recorded(
    client: &kube::Client,
    namespace: &str,
    workload: Option<&str>,
) -> Result<Recorded, Error> {
    let target = workload.and_then(|w| parse_workload(namespace, w));
    let mut recorded = Recorded {
        namespace: namespace.to_string(),
        target,
        lock: None,
    };
    let Some(target) = &recorded.target else {
        return Ok(recorded);
    };
    let name = target.key().lock_name();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = cms
        .get_opt(&name)
        .await
        .map_err(|e| Error::from_kube(e, "get", "configmaps"))?;
    if let Some(cm) = cm {
        let record = LockRecord::parse(cm.data.as_ref().unwrap_or(&Default::default()))
            .map_err(|e| malformed_lock(namespace, &name, &target.describe(), e))?;
        recorded.lock = Some((cm, record));
    }
    Ok(recorded)
}

fn malformed_lock(namespace: &str, name: &str, workload: &str, e: LockError) -> Error {
    let why = match e {
        LockError::Malformed(why) => why,
        other => other.to_string(),
    };
    Error::CorruptRecord(format!(
        "the scale-down lock {namespace}/{name} of {workload} is malformed ({why}); nothing was changed: it holds the only trusted record of the count to restore. Fix its data, or restore the workload and delete the lock by hand"
    ))
}

/// End the scale-down of a session from what its record says: `workload` ("kind/name"), the
/// KEDA `scaled_objects` and the Argo CD `application` it recorded: the lock read first (a malformed one stops it before
/// anything is written), then the workload restored to the lock's count and the lock released.
pub async fn restore_recorded(
    client: &kube::Client,
    namespace: &str,
    session_id: &str,
    workload: Option<&str>,
    scaled_objects: &[String],
    application: Option<&PausedApplication>,
    on_progress: &ProgressFn,
) -> Result<Vec<String>, Error> {
    let recorded = read_recorded(client, namespace, workload).await?;
    let paused = Paused {
        scaled_objects,
        application,
    };
    restore_read(client, recorded, session_id, paused, on_progress).await
}

/// What a session recorded as paused besides the workload: KEDA ScaledObjects (by name) and
/// the Argo CD Application (with its self-heal before).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Paused<'a> {
    pub scaled_objects: &'a [String],
    pub application: Option<&'a PausedApplication>,
}

/// The second half of [`restore_recorded`]: the workload is read once and put back with one
/// pinned write, then the lock is released (never before the count is back). The count is
/// the lock's when the lock is this session's (it is the record `prepare` wrote; the
/// workload's annotations are only a copy, which anyone with rights to the workload can edit
/// or remove: a disagreement is warned about and the lock wins). Without a lock, the
/// workload's own annotation. Another session's name on the workload means the lock must
/// decide, fenced (ours was taken over, or we stopped between taking a dead holder's lock and
/// claiming the workload): [`restore`].
pub(crate) async fn restore_read(
    client: &kube::Client,
    recorded: Recorded,
    session_id: &str,
    paused: Paused<'_>,
    on_progress: &ProgressFn,
) -> Result<Vec<String>, Error> {
    let namespace = recorded.namespace.as_str();
    let Some(target) = recorded.target else {
        return restore(client, namespace, session_id, on_progress).await;
    };
    let ours = recorded
        .lock
        .as_ref()
        .filter(|(_, r)| r.holder_session == session_id)
        .map(|(_, r)| r);
    let mut scaled_objects = paused.scaled_objects.to_vec();
    for so in ours.iter().flat_map(|r| r.scaled_objects.iter()) {
        if !scaled_objects.contains(so) {
            scaled_objects.push(so.clone());
        }
    }
    // The lock's record of the Application counts (it may carry a dead holder's forward).
    let application = ours
        .and_then(|r| r.argo_application.as_ref())
        .or(paused.application);
    let paused = Paused {
        scaled_objects: &scaled_objects,
        application,
    };
    let (outcome, unpaused) = restore_workload(
        client,
        &target,
        session_id,
        ours.map(|r| (r, Fence::Unfenced)),
        paused,
        on_progress,
    )
    .await?;
    if let RestoreOutcome::OtherSession(_) = outcome {
        return restore(client, namespace, session_id, on_progress).await;
    }
    if recorded.lock.is_none() {
        return Ok(unpaused);
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
        let fenced = match LockGuard::for_session(cm, session_id) {
            Ok(guard) => guard.renew(client, until).await,
            Err(e) => Err(e),
        };
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
        let paused = Paused {
            scaled_objects: &record.scaled_objects,
            application: record.argo_application.as_ref(),
        };
        let (_, put_back) = restore_workload(
            client,
            &target,
            session_id,
            Some((record, Fence::Fenced)),
            paused,
            on_progress,
        )
        .await?;
        unpaused.extend(put_back);
        match guard.release(client).await {
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
        // Unreadable: not acted upon (putting back a guess could leave self-heal off).
        let application = PausedApplication::parse(
            data.get(DATA_ARGO_APPLICATION).map(String::as_str),
            data.get(DATA_ARGO_SELF_HEAL_BEFORE).map(String::as_str),
        )
        .map_err(|why| {
            Error::CorruptRecord(format!(
                "session {namespace}/{session_id}: {why}; the Argo CD Application was left as it is"
            ))
        })?;
        let paused = Paused {
            scaled_objects: &scaled_objects,
            application: application.as_ref(),
        };
        let restored = restore_workload(client, &target, session_id, None, paused, on_progress);
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

/// How far a lock record passed to [`restore_workload`] is vouched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fence {
    /// The lock was just renewed by this session (compare-and-swap): nobody can take it over
    /// while the workload is restored, so another session's name on the workload is the dead
    /// holder whose place this session took, and its record is ours to undo.
    Fenced,
    /// The lock was read and names this session, but was not renewed: its count is trusted,
    /// another session's name on the workload is not ours to undo ([`restore`] decides).
    Unfenced,
}

/// Restore one workload for `session_id`, from the lock `record` when this session holds it,
/// else from the workload's own annotation. One write, pinned to the resourceVersion read: the
/// count (only if the workload is at zero) and the removal of our annotations together. Then
/// the recorded KEDA ScaledObjects are unpaused (returned by name), then the Argo CD
/// Application's self-heal put back. A workload whose uid differs from the record's is left
/// alone.
pub(crate) async fn restore_workload(
    client: &kube::Client,
    target: &ScaleTarget,
    session_id: &str,
    record: Option<(&LockRecord, Fence)>,
    paused: Paused<'_>,
    on_progress: &ProgressFn,
) -> Result<(RestoreOutcome, Vec<String>), Error> {
    let outcome = restore_count(client, target, session_id, record, on_progress).await?;
    // Another session's now: its pauses are its own.
    if let RestoreOutcome::OtherSession(_) = outcome {
        return Ok((outcome, Vec::new()));
    }
    // After the count: an unpaused ScaledObject at zero would scale from zero itself and we
    // would then mistake its count for a human's. Through a lock we hold (fenced), a pause by
    // the dead holder whose place we took is ours to put back too.
    let fenced = matches!(record, Some((_, Fence::Fenced)));
    let ours = |by: &str| by == session_id || fenced;
    let scaled_objects = paused.scaled_objects;
    let unpaused = autoscalers::unpause_keda(client, &target.namespace, scaled_objects, &ours);
    let unpaused = unpaused.await?;
    for so in &unpaused {
        on_progress(Progress::Unpaused {
            scaled_object: so.clone(),
        });
    }
    // Self-heal back only once the count is: re-enabled while the workload is at zero, Argo CD
    // would sync the count from Git itself, racing our pinned write (which then sees a count
    // that is not ours and keeps it, our record left on the workload for nobody). The count
    // first leaves self-heal nothing to correct.
    if let Some(app) = paused.application {
        if argocd::unpause(client, app, &ours).await? {
            on_progress(Progress::Info(format!(
                "restored self-heal of Argo CD Application {} (selfHeal: {})",
                app.application,
                app.before_text()
            )));
        }
    }
    Ok((outcome, unpaused))
}

/// The count to put back and the counts this session set (the lock's, and the one the
/// workload's record names: after a takeover across modes, the dead holder's is still on the
/// workload until this session's own write), from what the workload says and what this
/// session's lock records (`record`); or the outcome that needs no write.
fn decide_count(
    observed: &workload::Observed,
    what: &str,
    session_id: &str,
    record: Option<(&LockRecord, Fence)>,
    on_progress: &ProgressFn,
) -> Result<Result<(i32, Vec<i32>), RestoreOutcome>, Error> {
    let by = observed.annotation(SCALED_DOWN_BY_ANNOTATION);
    let annotated = observed.annotation(ORIGINAL_REPLICAS_ANNOTATION);
    let corrupt = |why: String| Error::CorruptRecord(format!("{what}: {why}; left untouched"));
    // Absent in an earlier build's record (which only scaled to zero): 0.
    let annotated_set = match observed.annotation(SCALED_TO_ANNOTATION) {
        Some(v) => Some(lock::parse_replicas(SCALED_TO_ANNOTATION, v)),
        None => by.map(|_| Ok(0)),
    };
    let Some((r, fence)) = record else {
        return match by {
            // The count is written with our record: without it, never scaled by us.
            None => Ok(Err(RestoreOutcome::NothingRecorded)),
            Some(by) if by != session_id => Ok(Err(RestoreOutcome::OtherSession(by.to_string()))),
            // No lock to compare with: the annotations are the only record left.
            Some(_) => {
                let original = lock::parse_replicas(
                    ORIGINAL_REPLICAS_ANNOTATION,
                    annotated.unwrap_or_default(),
                )
                .map_err(corrupt)?;
                let set = annotated_set.unwrap_or(Ok(0)).map_err(corrupt)?;
                Ok(Ok((original, vec![set])))
            }
        };
    };
    let original = r.original_replicas;
    let set = r.target_replicas;
    let Some(by) = by else {
        // Our lock, and no record of ours on the workload: normally never scaled (the count
        // and the record are one write). At the count the lock says we set, the record was
        // removed by hand (or by a tool that rewrote the annotations): the lock is the record
        // of the count, and the workload is put back to it.
        if observed.replicas == set && original != set {
            on_progress(Progress::Warning(format!(
                "{what} is at {set} and carries no {SCALED_DOWN_BY_ANNOTATION} annotation (removed by someone?), while the scale-down lock of session {session_id} records {original} replicas; restoring {original}"
            )));
            return Ok(Ok((original, vec![set])));
        }
        return Ok(Err(RestoreOutcome::NeverScaled));
    };
    if by != session_id {
        if fence == Fence::Unfenced {
            return Ok(Err(RestoreOutcome::OtherSession(by.to_string())));
        }
        // We hold the lock (fenced): this is the dead holder whose place we took, stopped
        // before we claimed the workload. Its record is ours to undo.
        on_progress(Progress::Warning(format!(
            "{what} still names session {by}, whose expired lock this session took over; restoring it"
        )));
    }
    let agrees = annotated.and_then(|a| lock::parse_replicas(ORIGINAL_REPLICAS_ANNOTATION, a).ok())
        == Some(original);
    if !agrees {
        on_progress(Progress::Warning(format!(
            "{what} records {ORIGINAL_REPLICAS_ANNOTATION}={:?} but the scale-down lock of session {session_id} records {original}; the lock is the record that counts: restoring {original}",
            annotated.unwrap_or("<absent>")
        )));
    }
    // The workload's record of the count set is a copy too, but written with the count
    // itself: when it names another count than the lock (a takeover across modes, before
    // this session's own write), the workload is there because of the holder it names.
    let mut counts = vec![set];
    if let Some(Ok(other)) = annotated_set {
        if other != set && other < original {
            counts.push(other);
        }
    }
    Ok(Ok((original, counts)))
}

async fn restore_count(
    client: &kube::Client,
    target: &ScaleTarget,
    session_id: &str,
    record: Option<(&LockRecord, Fence)>,
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
        if let Some((r, _)) = record {
            if r.workload_uid != observed.uid() {
                on_progress(Progress::Warning(format!(
                    "{what} was deleted and recreated during the session (uid {} -> {}); left untouched",
                    r.workload_uid,
                    observed.uid()
                )));
                return Ok(RestoreOutcome::Recreated);
            }
        }
        // The decision's warnings are about this read of the workload: reported once the
        // attempt settles, dropped when a conflict (its controller writing status, say) sends
        // us round again, so each disagreement is reported once.
        let pending = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let collector = pending.clone();
        let collect: &ProgressFn = &move |p| collector.lock().expect("warnings").push(p);
        let report = || {
            for p in pending.lock().expect("warnings").drain(..) {
                on_progress(p);
            }
        };
        let decided = decide_count(&observed, &what, session_id, record, collect);
        if !matches!(decided, Ok(Ok(_))) {
            report();
        }
        let (original, set) = match decided? {
            Ok(counts) => counts,
            Err(outcome) => return Ok(outcome),
        };
        let (count, outcome) = match count::decide(observed.replicas, original, &set) {
            Decision::AlreadyAtOriginal => (None, RestoreOutcome::AlreadyAtOriginal),
            Decision::Restore { to } => (Some(to), RestoreOutcome::Restored { to }),
            Decision::KeepTheirs { current } => {
                (None, RestoreOutcome::KeptTheirs { current, original })
            }
        };
        let annotations = record_removal(&observed);
        let pin = Some(observed.resource_version.as_str());
        match workload::write(client, target, count, annotations, pin).await {
            Ok(_) => {
                report();
                match &outcome {
                    RestoreOutcome::Restored { to } => {
                        on_progress(Progress::Restored {
                            workload: target.workload_field(),
                            to: *to,
                        });
                        let message = breadcrumbs::restored(target, session_id, *to);
                        // Named by uid too, as `kubectl describe` searches for its Events.
                        let named = ScaleTarget {
                            uid: observed.uid(),
                            ..target.clone()
                        };
                        breadcrumbs::record(
                            client,
                            &named,
                            breadcrumbs::RESTORED,
                            "Normal",
                            &message,
                            on_progress,
                        )
                        .await;
                    }
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
            Err(e) => {
                report();
                return Err(Error::from_kube(e, "patch", &target.kind.resource_name()));
            }
        }
    }
    Err(Error::Contended(format!(
        "{what} kept changing while being restored"
    )))
}

/// The merge-patch annotations that remove our record from the workload; with
/// `--suspend-flux`, Flux's reconcile annotation goes back to what it was.
fn record_removal(observed: &workload::Observed) -> serde_json::Value {
    let mut patch = json!({
        ORIGINAL_REPLICAS_ANNOTATION: null,
        SCALED_DOWN_BY_ANNOTATION: null,
        SCALED_TO_ANNOTATION: null,
        breadcrumbs::NOTE_ANNOTATION: null,
    });
    if let Some(previous) = observed.annotation(gitops::FLUX_PREVIOUS_ANNOTATION) {
        patch[gitops::FLUX_RECONCILE_ANNOTATION] = match previous {
            "" => serde_json::Value::Null,
            value => json!(value),
        };
        patch[gitops::FLUX_PREVIOUS_ANNOTATION] = serde_json::Value::Null;
    }
    patch
}
