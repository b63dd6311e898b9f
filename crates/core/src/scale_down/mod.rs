//! Scale-down: the workload is scaled to zero for the copy's lifetime, under the cluster-side
//! mutex of `mirrord_copy_lock`, and restored afterwards. The order (DESIGN.md, issue 4):
//!
//! create: [`check_for_create`] (decide the workload from the object `resolve` read, guardrail;
//! read-only) -> session ConfigMap (recording the `workload`) -> [`prepare_checked`] (lock with
//! the original count, annotation on the workload, fenced) -> copy pod -> Ready -> [`apply`]
//! (write-ahead `scaledDown=true`, pause KEDA, scale to zero, fenced). A ReadWriteOnce claim
//! (crate::claims) moves [`apply`] before the copy pod. [`check`] is the read-only variant that
//! also reads the lock (`--dry-run=client`); [`prepare`] does check and prepare in one call.
//! end: [`restore`] (fence the lock, scale back only if still at zero, unpause KEDA, remove
//! the annotation, release the lock), then `session::end` deletes the copy and the session.
//!
//! # Crash safety (SIGKILL after each step; what is on the cluster, and who repairs it)
//!
//! Repair is always one of: `delete` run again (idempotent), `gc` once the session expired
//! (detached: `expires`; `run`: heartbeat older than the lease), or a later session taking the
//! expired lease over (it carries the recorded count forward and restores it itself).
//!
//! | after | on the cluster | repair does |
//! |---|---|---|
//! | session ConfigMap | session only | ends it; workload never touched |
//! | lock created | + lock (N, scaledDown=false) | restore: never scaled, count untouched; release |
//! | annotation | + `original-replicas=N` on the workload | as above, annotation removed; if the lock is lost, the annotation alone: workload at N, nothing to do |
//! | copy pod / Ready | + copy pod (owned by the session) | as above; copy deleted with the session |
//! | write-ahead `scaledDown=true` | lock says "maybe at zero" | workload still at N: nothing to do |
//! | KEDA paused | paused-replicas=0, previous value recorded on the ScaledObject | back to N if KEDA zeroed it; previous value put back |
//! | scaled to zero | workload at 0 | back to N (pinned to the resourceVersion seen at 0) |
//! | end: fence | lease renewed 2 min as the holder | restore runs again |
//! | end: count back | workload at N, annotation and lock remain | at N already: annotation removed, lock released |
//! | end: annotation removed | lock remains (scaledDown=true) | at N: lock released |
//! | end: lock released | copy and session remain | `session::end` / gc delete them |
//!
//! A second crash after a takeover keeps N: the lock CAS carries `originalReplicas` and
//! `scaledDown` forward, and `prepare` takes the count from the dead session's annotation, not
//! from the workload (which is at zero because of it). The annotation on the workload is the
//! way back even when every ConfigMap is lost (gc restores from it). A workload whose uid no
//! longer matches the record was recreated: it is left alone with a warning.

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
    session_config_map_name, DATA_COPY_POD, DATA_HOST, DATA_OWNER, DATA_WORKLOAD,
    ORIGINAL_REPLICAS_ANNOTATION, SCALED_DOWN_BY_ANNOTATION,
};
use crate::resolve::ResolvedTarget;
use crate::session::{Progress, ProgressFn, SessionHandle};
use mirrord_copy_lock::{self as lock, clock, LockError, LockRecord, MAX_REPLICAS};

pub use autoscalers::KEDA_PAUSED_BY_ANNOTATION;
pub(crate) use autoscalers::{scaled_object_resource, unpause_keda};
pub use interference::interference;
pub use restore::restore;
use restore::target_of as target_of_record;
pub(crate) use restore::{restore_workload, RestoreOutcome};
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
    /// The lock as acquired: `apply`'s compare-and-swap starts from it.
    pub lock: lock::LockGuard,
    /// The workload as last written (with our annotation): `apply`'s pin starts from it.
    pub workload: DynamicObject,
}

/// What [`check_for_create`] read: the workload to scale, as read, its guardrails passed.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub target: ScaleTarget,
    pub object: DynamicObject,
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
/// guardrail (the Namespace). A lock held by another session is found by acquiring.
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
    Ok(Checked { target, object })
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
    let holder = session_owner(client, session, &checked.target).await?;
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
/// Namespace or the session again.
pub(crate) async fn prepare_checked(
    client: &kube::Client,
    checked: Checked,
    session: &SessionHandle,
    holder: &Holder,
    lease: Duration,
    suspend_flux: bool,
    on_progress: &ProgressFn,
) -> Result<ScaleDownPlan, Error> {
    let Checked { target, object } = checked;
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
    let hpas = autoscalers::hpas(client, &target).await;
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
        scaled_down: false,
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
    // The recorded way back, on the workload itself: survives the loss of every ConfigMap.
    // Fenced: only over no annotation, ours, or the one of the dead session whose place we
    // took (read before the lock was ours); never over a session that took ours over since.
    let before = observed.annotation(SCALED_DOWN_BY_ANNOTATION);
    let api = target.api(client);
    let mut annotations = json!({
        ORIGINAL_REPLICAS_ANNOTATION: original.to_string(),
        SCALED_DOWN_BY_ANNOTATION: session.id,
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
    let written = workload::fenced(
        client,
        &target,
        &[None, Some(session.id.as_str()), before],
        "the original-replicas annotation",
        Some(observed.object.clone()),
        |rv| {
            let (api, name, annotations) = (&api, &target.name, annotations.clone());
            async move { workload::patch_annotations(api, name, annotations, Some(&rv)).await }
        },
    )
    .await?;
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
        lock: guard,
        workload: written,
    })
}

/// After the copy is Ready: mark the lock `scaledDown=true` (write-ahead, so a crash between
/// the two leaves a record that says "maybe at zero"), pause KEDA, scale to zero.
pub async fn apply(
    client: &kube::Client,
    plan: &ScaleDownPlan,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    let target = &plan.target;
    lock::update_guarded(client, &plan.lock, &plan.session_id, |r| {
        r.scaled_down = true;
    })
    .await
    .map_err(|e| lock_error(target, e))?;
    for so in autoscalers::pause_keda(client, target, &plan.session_id).await? {
        on_progress(Progress::Info(format!(
            "paused KEDA ScaledObject {so} (autoscaling.keda.sh/paused-replicas=0)"
        )));
    }
    // Fenced: the lock CAS above proved we held it a moment ago; the workload must still name
    // this session, at the resourceVersion the scale is pinned to.
    workload::fenced(
        client,
        target,
        &[Some(plan.session_id.as_str())],
        "the scale to zero",
        Some(plan.workload.clone()),
        |rv| async move {
            workload::set_replicas(client, target, 0, Some(&rv))
                .await
                .map(drop)
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

/// The session's holder ("user (localuser@host)") and copy pod, from its ConfigMap; records the workload in
/// it (`workload`, DESIGN.md) so `restore` finds the workload even if the lock is lost.
async fn session_owner(
    client: &kube::Client,
    session: &SessionHandle,
    target: &ScaleTarget,
) -> Result<Holder, Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &session.namespace);
    let patch = json!({"data": {DATA_WORKLOAD: target.workload_field()}});
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
