//! Scale-down: the workload is scaled to zero for the copy's lifetime, under the cluster-side
//! mutex of `mirrord_copy_lock`, and restored afterwards. The order (DESIGN.md, issue 4):
//!
//! create: `check_for_create` (decide the workload from the object `resolve` read, guardrail,
//! HPAs and KEDA ScaledObjects; read-only) -> session ConfigMap (recording the `workload` and
//! its `scaledObjects`) -> `prepare_checked` (lock with the original count, the
//! ScaledObjects and a finalizer; the workload is written only to claim it from a dead
//! holder) -> copy pod -> Ready -> [`apply`] (pause KEDA; then one pinned write: zero, together
//! with the way back `original-replicas` and `scaled-down-by`). A ReadWriteOnce claim
//! (crate::claims) moves [`apply`] before the copy pod. [`check`] is the read-only variant that
//! also reads the lock (`--dry-run=client`); [`prepare`] does check and prepare in one call.
//! end: [`restore_recorded`] (from the session record: one read of the workload, one pinned
//! write of the count with our record removed, KEDA put back, lock released without a read),
//! then `session::end_session` deletes the copies and the session. [`restore`] does the same
//! through the session's locks (fenced first), for gc and for records that cannot say.
//!
//! # Crash safety (SIGKILL after each step; what is on the cluster, and who repairs it)
//!
//! Repair is always one of: `delete` run again (idempotent), `gc` once the session expired
//! (detached: `expires`; `run`: heartbeat older than the lease), or a later session taking the
//! expired lease over (it carries the recorded count forward and restores it itself). The
//! rule that makes it simple: the workload is at zero because of us only if it carries our
//! `scaled-down-by`, since both are written by one request.
//!
//! | after | on the cluster | repair does |
//! |---|---|---|
//! | session ConfigMap | session only | ends it; workload never touched |
//! | lock created | + lock (N, ScaledObjects, finalizer) | no record on the workload: count untouched; lock released |
//! | copy pod / Ready | + copy pod (owned by the session) | as above; copy deleted with the session |
//! | KEDA paused | paused-replicas=0, previous value recorded on the ScaledObject | the lock names it: previous value put back (KEDA scales back itself) |
//! | scaled to zero | workload at 0 with `original-replicas=N`, `scaled-down-by` | back to N and record off, one write pinned to the version seen at 0 |
//! | end: count back | workload at N, no record; lock remains | nothing on the workload: KEDA put back, lock released |
//! | end: lock finalizer off / released | copy and session remain | `session::end` / gc delete them |
//!
//! Every ConfigMap deleted by hand (or the session by the garbage collector): the lock's
//! finalizer keeps it, marked deleted, until gc restores through it and releases it.
//! A second crash after a takeover keeps N: the lock CAS carries `originalReplicas` and the
//! ScaledObjects forward, the new holder claims the workload at once (its own name over the
//! dead one's), and `prepare` takes the count from the dead session's annotation, not from the
//! workload (which is at zero because of it). A workload whose uid no longer matches the
//! record was recreated: it is left alone with a warning.

mod autoscalers;
pub(crate) mod gitops;
mod guardrail;
mod interference;
mod restore;
mod workload;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::DynamicObject;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::error::Error;
use crate::labels::{
    session_config_map_name, DATA_COPY_POD, DATA_HOST, DATA_OWNER, DATA_SCALED_OBJECTS,
    DATA_WORKLOAD, ORIGINAL_REPLICAS_ANNOTATION, SCALED_DOWN_BY_ANNOTATION,
};
use crate::resolve::ResolvedTarget;
use crate::session::{Progress, ProgressFn, SessionHandle};
use mirrord_copy_lock::{self as lock, clock, LockError, LockRecord, MAX_REPLICAS};

pub use autoscalers::KEDA_PAUSED_BY_ANNOTATION;
pub use interference::interference;
use restore::target_of as target_of_record;
pub use restore::{restore, restore_recorded};
pub(crate) use workload::decide;
pub use workload::{ScaleKind, ScaleTarget};

/// How long gc holds a dead session's lock while it restores the workload.
pub(crate) const FENCE: Duration = Duration::from_secs(120);

/// What [`prepare`] set up and [`apply`] acts on.
#[derive(Debug, Clone)]
pub struct ScaleDownPlan {
    /// The workload scaled down.
    pub target: ScaleTarget,
    /// The session doing it.
    pub session_id: String,
    /// Name of the lock ConfigMap it holds.
    pub lock_name: String,
    /// The count restore puts back (carried forward from a dead holder on takeover).
    pub original_replicas: i32,
    /// HPAs targeting the workload (warned about).
    pub hpas: Vec<String>,
    /// The KEDA ScaledObjects targeting the workload, as listed: `apply` pauses them.
    pub scaled_objects: Vec<DynamicObject>,
    /// The lock as acquired.
    pub lock: lock::LockGuard,
    /// The workload as last read or written: `apply`'s pin starts from it.
    pub workload: DynamicObject,
    /// What `apply` writes on the workload together with the zero: the way back.
    pub annotations: serde_json::Value,
}

/// What [`check_for_create`] read: the workload to scale, as read, its guardrails passed, and
/// the autoscalers targeting it.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub target: ScaleTarget,
    pub object: DynamicObject,
    /// HPAs targeting the workload (warned about).
    pub hpas: Vec<String>,
    /// KEDA ScaledObjects targeting the workload: recorded by the session and the lock before
    /// any is paused, so restore knows where to look.
    pub scaled_objects: Vec<DynamicObject>,
}

impl Checked {
    /// Names of [`Checked::scaled_objects`], as the session and the lock record them.
    pub(crate) fn scaled_object_names(&self) -> Vec<String> {
        self.scaled_objects.iter().map(|so| so.name_any()).collect()
    }
}

/// Who holds a lock, as its record names them, and their copy pod.
#[derive(Debug, Clone)]
pub(crate) struct Holder {
    /// "user (localuser@host)": the Kubernetes user and the machine it works from.
    pub who: String,
    pub copy_pod: String,
}

impl Holder {
    pub(crate) fn new(owner: &str, host: Option<&str>, copy_pod: &str) -> Holder {
        let who = match host {
            Some(host) if !host.is_empty() && host != owner => format!("{owner} ({host})"),
            _ => owner.to_string(),
        };
        Holder {
            who,
            copy_pod: copy_pod.to_string(),
        }
    }
}

/// `create`'s check, in as few round trips as the answer allows: the workload is the object
/// `resolve` already read when the target names it (a ReplicaSet's owner is read), then the
/// guardrail (the Namespace) and the autoscalers targeting it (HPAs, KEDA ScaledObjects). A
/// lock held by another session is found by acquiring.
pub(crate) async fn check_for_create(
    client: &kube::Client,
    resolved: &ResolvedTarget,
) -> Result<Checked, Error> {
    let target = decide(client, resolved).await?;
    let is_resolved =
        resolved.object.kind == target.kind.api_kind() && resolved.object.name == target.name;
    let known = match is_resolved {
        true => serde_json::from_value::<DynamicObject>(resolved.raw.clone()).ok(),
        false => None,
    };
    let object = match known {
        Some(o) => o,
        None => workload::get(client, &target)
            .await?
            .ok_or_else(|| Error::Vanished(target.describe()))?,
    };
    guardrail::check(client, &target, &object.metadata, resolved).await?;
    let target = ScaleTarget {
        uid: object.uid().unwrap_or_default(),
        ..target
    };
    let hpas = autoscalers::hpas(client, &target).await;
    let scaled_objects = autoscalers::keda_objects(client, &target).await?;
    Ok(Checked {
        target,
        object,
        hpas,
        scaled_objects,
    })
}

/// Before anything is created: decide the workload, honour the guardrail, and fail with
/// [`Error::Conflict`] if another session holds a valid lock on it. Read-only.
pub async fn check(client: &kube::Client, resolved: &ResolvedTarget) -> Result<ScaleTarget, Error> {
    let target = decide(client, resolved).await?;
    let object = workload::get(client, &target)
        .await?
        .ok_or_else(|| Error::Vanished(target.describe()))?;
    guardrail::check(client, &target, &object.metadata, resolved).await?;
    match lock::read(client, &target.namespace, &target.key().lock_name()).await {
        Ok(Some((held, _))) if held.lease_valid(clock::now()) => Err(conflict(&target, &held)),
        Ok(_) => Ok(target),
        Err(e) => Err(lock_error(&target, e)),
    }
}

/// Take the lock on the workload for `session` (owned by the session ConfigMap) recording the
/// original count, and annotate the workload with it. Nothing is scaled yet.
///
/// `lease`: a detached session passes its TTL (nobody renews it); a `run` session a few
/// heartbeat intervals, renewed through [`renew`].
pub async fn prepare(
    client: &kube::Client,
    resolved: &ResolvedTarget,
    session: &SessionHandle,
    lease: Duration,
    suspend_flux: bool,
    on_progress: &ProgressFn,
) -> Result<ScaleDownPlan, Error> {
    let checked = check_for_create(client, resolved).await?;
    let holder = session_owner(client, session, &checked).await?;
    prepare_checked(
        client,
        checked,
        session,
        &holder,
        lease,
        suspend_flux,
        on_progress,
    )
    .await
}

/// [`prepare`] from what [`check_for_create`] read, for a session whose ConfigMap already
/// records the workload (`create` writes it with the session): no read of the workload, the
/// Namespace or the session again. The workload is written only when another session's
/// record is on it (a takeover): it is claimed at once, so that session's later writes fail
/// their fence. Otherwise the way back is written with the zero, in [`apply`].
pub(crate) async fn prepare_checked(
    client: &kube::Client,
    checked: Checked,
    session: &SessionHandle,
    holder: &Holder,
    lease: Duration,
    suspend_flux: bool,
    on_progress: &ProgressFn,
) -> Result<ScaleDownPlan, Error> {
    let scaled_object_names = checked.scaled_object_names();
    let Checked {
        target,
        object,
        hpas,
        scaled_objects,
    } = checked;
    let observed = workload::observed(target.kind, object);
    if observed.replicas > MAX_REPLICAS {
        return Err(Error::Unsupported(format!(
            "{} has {} replicas, more than the {MAX_REPLICAS} mirrord-copy will record",
            target.describe(),
            observed.replicas
        )));
    }
    // A dead session's annotation is the way back to the real count: the workload may be at
    // zero because of it. Malformed: refuse rather than guess.
    let original = match observed.annotation(ORIGINAL_REPLICAS_ANNOTATION) {
        Some(v) if observed.annotation(SCALED_DOWN_BY_ANNOTATION).is_some() => {
            lock::parse_replicas(ORIGINAL_REPLICAS_ANNOTATION, v)
                .map_err(|why| Error::CorruptRecord(format!("{}: {why}", target.describe())))?
        }
        _ => observed.replicas,
    };
    let meta = &observed.object.metadata;
    let empty = Default::default();
    let gitops = gitops::manager(
        meta.labels.as_ref().unwrap_or(&empty),
        meta.annotations.as_ref().unwrap_or(&empty),
    );
    let suspend_flux =
        suspend_flux && matches!(gitops, Some(gitops::Manager::FluxKustomization(_)));
    if let Some(m) = &gitops {
        on_progress(Progress::Warning(gitops::warning(
            &target.describe(),
            m,
            suspend_flux,
        )));
    }
    for hpa in &hpas {
        on_progress(Progress::Warning(format!(
            "HorizontalPodAutoscaler {hpa} targets {}; it stays idle while the workload is at zero, and resumes after restore",
            target.describe()
        )));
    }

    let now = clock::now();
    let record = LockRecord {
        holder_session: session.id.clone(),
        holder: holder.who.clone(),
        since: now,
        lease_expires: now
            + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::hours(8)),
        workload_uid: target.uid.clone(),
        workload_kind: target.kind.api_kind().to_string(),
        workload_name: target.name.clone(),
        original_replicas: original,
        copy_pod: holder.copy_pod.clone(),
        scaled_objects: scaled_object_names,
    };
    let guard = lock::acquire(
        client,
        &target.namespace,
        &target.key(),
        record,
        session.owner_reference(),
    )
    .await
    .map_err(|e| lock_error(&target, e))?;
    if let Some(dead) = &guard.took_over_from {
        on_progress(Progress::Warning(format!(
            "took over the expired lock of {} (lease expired {}); restoring to its recorded count {}",
            dead.describe_holder(),
            lock::rfc3339(dead.lease_expires),
            guard.record.original_replicas
        )));
    }
    let original = guard.record.original_replicas;
    let annotations = way_back(&observed, &session.id, original, suspend_flux);
    // Another session's record on the workload (read before the lock was ours), or a holder
    // whose place we took: claim the workload now, so their fenced writes see it is ours.
    // Never over a session that took ours over since (not among `allowed`).
    let before = observed.annotation(SCALED_DOWN_BY_ANNOTATION);
    let predecessor = guard
        .took_over_from
        .as_ref()
        .map(|dead| dead.holder_session.as_str());
    let claim = before.is_some_and(|b| b != session.id) || predecessor.is_some();
    let written = match claim {
        false => observed.object.clone(),
        true => {
            let allowed = [None, Some(session.id.as_str()), before, predecessor];
            workload::fenced(
                client,
                &target,
                &allowed,
                "the claim on the workload",
                Some(observed.object.clone()),
                |rv| {
                    let (target, annotations) = (&target, annotations.clone());
                    async move { workload::write(client, target, None, annotations, Some(&rv)).await }
                },
            )
            .await?
        }
    };
    on_progress(Progress::LockAcquired {
        workload: target.workload_field(),
        lock: guard.name.clone(),
    });
    Ok(ScaleDownPlan {
        session_id: session.id.clone(),
        lock_name: guard.name.clone(),
        original_replicas: original,
        target,
        hpas,
        scaled_objects,
        lock: guard,
        workload: written,
        annotations,
    })
}

/// The annotations that record the way back on the workload: the count to restore, the
/// session, and with `--suspend-flux` Flux's reconcile switch (with its previous value).
fn way_back(
    observed: &workload::Observed,
    session_id: &str,
    original: i32,
    suspend_flux: bool,
) -> serde_json::Value {
    let mut annotations = json!({
        ORIGINAL_REPLICAS_ANNOTATION: original.to_string(),
        SCALED_DOWN_BY_ANNOTATION: session_id,
    });
    if suspend_flux {
        annotations[gitops::FLUX_RECONCILE_ANNOTATION] = json!("disabled");
        // A dead session's record of the value before it stays the one to put back.
        if observed
            .annotation(gitops::FLUX_PREVIOUS_ANNOTATION)
            .is_none()
        {
            let previous = observed
                .annotation(gitops::FLUX_RECONCILE_ANNOTATION)
                .unwrap_or_default();
            annotations[gitops::FLUX_PREVIOUS_ANNOTATION] = json!(previous);
        }
    }
    annotations
}

/// Pause KEDA, then scale to zero: one pinned patch writes the zero together with the way back
/// (the count to restore and this session's name), so the workload is never at zero without
/// its record, and a workload without our annotation was never touched by us. Fenced: only
/// while the workload names no session or this one.
pub async fn apply(
    client: &kube::Client,
    plan: &ScaleDownPlan,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    let target = &plan.target;
    let paused = autoscalers::pause_keda(
        client,
        &target.namespace,
        &plan.scaled_objects,
        &plan.session_id,
    );
    for so in paused.await? {
        on_progress(Progress::Info(format!(
            "paused KEDA ScaledObject {so} (autoscaling.keda.sh/paused-replicas=0)"
        )));
    }
    workload::fenced(
        client,
        target,
        &[None, Some(plan.session_id.as_str())],
        "the scale to zero",
        Some(plan.workload.clone()),
        |rv| {
            let annotations = plan.annotations.clone();
            async move { workload::write(client, target, Some(0), annotations, Some(&rv)).await }
        },
    )
    .await?;
    on_progress(Progress::ScaledDown {
        workload: target.workload_field(),
        from: plan.original_replicas,
    });
    Ok(())
}

/// Extend the lease of `session_id`'s lock(s) to now + `lease` (the `run` heartbeat); the
/// records as renewed.
/// [`Error::Conflict`] if the lock is no longer ours.
pub async fn renew(
    client: &kube::Client,
    namespace: &str,
    session_id: &str,
    lease: Duration,
) -> Result<Vec<LockRecord>, Error> {
    let until =
        clock::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::hours(8));
    let locks = lock::list(client, Some(namespace), Some(session_id))
        .await
        .map_err(|e| Error::from_kube(e, "list", "configmaps"))?;
    if locks.is_empty() {
        return Err(Error::SessionLost(format!(
            "session {session_id} holds no scale-down lock in namespace {namespace} (its lease expired and another session took it over?)"
        )));
    }
    let mut renewed = Vec::with_capacity(locks.len());
    for cm in locks {
        let name = cm.name_any();
        // From the lock as listed: a read only if it changed since.
        let guard = lock::update_known(client, cm, session_id, |r| r.lease_expires = until)
            .await
            .map_err(|e| match e {
                LockError::Lost(why) => {
                    Error::SessionLost(format!("its scale-down lock {name}: {why}"))
                }
                LockError::Held(other) => Error::SessionLost(format!(
                    "its scale-down lock {name} was taken over by {}",
                    other.describe_holder()
                )),
                LockError::Kube(k) => Error::from_kube(k, "update", "configmaps"),
                other => Error::Contended(format!("renewing the scale-down lock: {other}")),
            })?;
        renewed.push(guard.record);
    }
    Ok(renewed)
}

/// The session's holder ("user (localuser@host)") and copy pod, from its ConfigMap; records the
/// workload and its ScaledObjects in it (`workload`, `scaledObjects`, DESIGN.md), as `create`
/// does when it writes the session, so ending it needs no lookup.
async fn session_owner(
    client: &kube::Client,
    session: &SessionHandle,
    checked: &Checked,
) -> Result<Holder, Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &session.namespace);
    let patch = json!({"data": {
        DATA_WORKLOAD: checked.target.workload_field(),
        DATA_SCALED_OBJECTS: checked.scaled_object_names().join(","),
    }});
    let cm = api
        .patch(
            &session.config_map,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .map_err(|e| Error::from_kube(e, "patch", "configmaps"))?;
    let data = cm.data.unwrap_or_default();
    let get = |key: &str| data.get(key).cloned().unwrap_or_default();
    Ok(Holder::new(
        &get(DATA_OWNER),
        data.get(DATA_HOST).map(String::as_str),
        &get(DATA_COPY_POD),
    ))
}

fn conflict(target: &ScaleTarget, held: &LockRecord) -> Error {
    Error::Conflict {
        workload: target.workload_field(),
        holder: held.describe_holder(),
    }
}

fn lock_error(target: &ScaleTarget, e: LockError) -> Error {
    match e {
        LockError::Held(held) => conflict(target, &held),
        LockError::Malformed(why) => Error::CorruptRecord(format!(
            "the scale-down lock of {} is malformed and was left untouched: {why}",
            target.describe()
        )),
        LockError::Kube(k) => Error::from_kube(k, "create or update", "configmaps"),
        other => Error::Contended(format!("scale-down lock of {}: {other}", target.describe())),
    }
}

/// Name of the session ConfigMap of `session_id` (re-exported for gc).
pub(crate) fn session_cm(session_id: &str) -> String {
    session_config_map_name(session_id)
}
