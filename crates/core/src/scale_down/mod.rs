//! Scale-down: the workload is scaled to zero for the copy's lifetime (with `--replace-one`,
//! to one replica fewer: the count set is data, [`ScaleTo`], and nothing else differs), under
//! the cluster-side mutex of `mirrord_copy_lock`, and restored afterwards. The order
//! (DESIGN.md):
//!
//! create: `check_for_create` (decide the workload from the object `resolve` read, guardrail,
//! HPAs and KEDA ScaledObjects, with `--suspend-argocd` the Argo CD Application; read-only) ->
//! session ConfigMap (recording the `workload`, its `scaledObjects` and the Application with
//! its self-heal before) -> `prepare_checked` (lock with the original count, the
//! ScaledObjects, the Application and a finalizer; the workload is written only to claim it
//! from a dead holder) -> copy pod -> Ready -> [`apply`] (pause KEDA and the Application's
//! self-heal; then one pinned write: the count set, together with the way back
//! `original-replicas`, `scaled-to` and `scaled-down-by`). A ReadWriteOnce claim
//! (crate::claims) moves [`apply`] before the copy pod. [`check`] is the read-only variant that
//! also reads the lock (`--dry-run=client`); `create` calls [`check_for_create`], then [`prepare_checked`].
//! end: [`restore_recorded`] (from the session record: one read of the lock, whose count is
//! the one restored, one of the workload, one pinned write of the count with our record
//! removed, KEDA put back, lock released),
//! then `session::end_session` deletes the copies and the session. [`restore`] does the same
//! through the session's locks (fenced first), for gc and for records that cannot say.
//!
//! # Crash safety (SIGKILL after each step; what is on the cluster, and who repairs it)
//!
//! Repair is always one of: `delete` run again (idempotent), `gc` once the session lapsed
//! (provisional, i.e. its create never finished: heartbeat older than the provisional lease;
//! detached: `expires`; `run`: heartbeat older than the lease) or lost its copy pod, or a
//! later session taking the expired lease over (it carries the recorded count forward and
//! restores it itself). The rules that make it simple: the workload is at zero because of us
//! only if it carries our `scaled-down-by`, since both are written by one request; and the
//! count restored is the lock's whenever the lock is the session's (the annotations are a copy
//! anyone may edit; a workload at zero whose `scaled-down-by` was stripped goes back to it).
//!
//! | after | on the cluster | repair does |
//! |---|---|---|
//! | session ConfigMap | session only | ends it; workload never touched |
//! | lock created | + lock (N, the count to set, ScaledObjects, finalizer) | no record on the workload: count untouched; lock released |
//! | copy pod / Ready | + copy pod (owned by the session) | as above; copy deleted with the session |
//! | KEDA paused | paused-replicas=0, previous value recorded on the ScaledObject | the lock names it: previous value put back (KEDA scales back itself) |
//! | Argo CD paused | selfHeal=false, `argocd-paused-by` and the previous value on the Application | the lock records it and its value before: put back after the count |
//! | scaled (to 0, or N-1) | workload at the count set with `original-replicas=N`, `scaled-to`, `scaled-down-by` | back to N and record off, one write pinned to the version seen |
//! | end: count back | workload at N, no record; lock remains | nothing on the workload: KEDA and self-heal put back, lock released |
//! | end: lock finalizer off / released | copy and session remain | `session::end` / gc delete them |
//!
//! Every ConfigMap deleted by hand (or the session by the garbage collector): the lock's
//! finalizer keeps it, marked deleted, until gc restores through it and releases it.
//! A second crash after a takeover keeps N: the lock CAS carries `originalReplicas` and the
//! ScaledObjects forward, the new holder claims the workload at once (its own name over the
//! dead one's), and `prepare` takes the count from the dead session's annotation, not from the
//! workload (which is at zero because of it). A workload whose uid no longer matches the
//! record was recreated: it is left alone with a warning.

mod argocd;
mod autoscalers;
pub(crate) mod breadcrumbs;
mod count;
pub(crate) mod gitops;
mod guardrail;
mod interference;
mod pause;
mod restore;
mod workload;

use std::time::Duration;

use kube::api::DynamicObject;
use kube::ResourceExt;
use serde_json::json;

use crate::error::Error;
use crate::labels::{
    session_config_map_name, ORIGINAL_REPLICAS_ANNOTATION, SCALED_DOWN_BY_ANNOTATION,
    SCALED_TO_ANNOTATION,
};
use crate::model::{Progress, ProgressFn, SessionHandle};
use crate::resolve::ResolvedTarget;
use mirrord_copy_lock::{self as lock, clock, LockError, LockRecord, MAX_REPLICAS};

pub use argocd::{ARGOCD_PAUSED_BY_ANNOTATION, DEFAULT_ARGOCD_NAMESPACE};
pub use autoscalers::KEDA_PAUSED_BY_ANNOTATION;
pub use count::ScaleTo;
pub use interference::interference;
use restore::target_of as target_of_record;
pub(crate) use restore::{read_recorded, restore_read, Paused};
pub use restore::{restore, restore_recorded};
pub(crate) use workload::decide;
pub use workload::{ScaleKind, ScaleTarget};

/// How long gc holds a dead session's lock while it restores the workload.
pub(crate) const FENCE: Duration = Duration::from_secs(120);

/// What [`prepare_checked`] set up and [`apply`] acts on.
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
    /// The count [`apply`] sets: 0, or one less than the original with `--replace-one`.
    pub target_replicas: i32,
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
    /// `--suspend-argocd`: the Application whose self-heal `apply` turns off first.
    pub(crate) application: Option<argocd::ToPause>,
}

/// What [`check_for_create`] read: the workload to scale, as read, its guardrails passed, and
/// the autoscalers targeting it.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The workload to scale.
    pub(crate) target: ScaleTarget,
    /// It, as read.
    pub(crate) object: DynamicObject,
    /// HPAs targeting the workload (warned about).
    pub(crate) hpas: Vec<String>,
    /// KEDA ScaledObjects targeting the workload: recorded by the session and the lock before
    /// any is paused, so restore knows where to look.
    pub(crate) scaled_objects: Vec<DynamicObject>,
    /// `--suspend-argocd`: the Argo CD Application to pause, recorded by the session and the
    /// lock before it is paused.
    pub(crate) application: Option<argocd::ToPause>,
    /// What `--suspend-argocd` does (for the warning).
    pub(crate) argo: gitops::ArgoSuspend,
    /// Where an Application named without a namespace lives (for the warning).
    pub(crate) argocd_namespace: String,
    /// How far the session scales it.
    pub(crate) scale_to: ScaleTo,
}

impl Checked {
    /// The workload as the session records it (`kind/name`).
    pub fn workload(&self) -> String {
        self.target.workload_field()
    }

    /// Names of the KEDA ScaledObjects targeting the workload, as the session and the lock
    /// record them.
    pub fn scaled_object_names(&self) -> Vec<String> {
        self.scaled_objects.iter().map(|so| so.name_any()).collect()
    }

    /// The Application the session and the lock record as paused, if any.
    pub fn paused_application(&self) -> Option<lock::PausedApplication> {
        self.application.as_ref().map(|a| a.record.clone())
    }
}

/// Who holds a lock, as its record names them, and their copy pod.
#[derive(Debug, Clone)]
pub struct Holder {
    /// "user (localuser@host)": the Kubernetes user and the machine it works from.
    pub who: String,
    /// Its copy pod.
    pub copy_pod: String,
    /// When the session expires (a detached session's TTL); None while `run` holds it.
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
}

impl Holder {
    /// The holder a session's owner, host and copy pod make.
    pub fn new(owner: &str, host: Option<&str>, copy_pod: &str) -> Holder {
        let who = match host {
            Some(host) if !host.is_empty() && host != owner => format!("{owner} ({host})"),
            _ => owner.to_string(),
        };
        Holder {
            who,
            copy_pod: copy_pod.to_string(),
            expires: None,
        }
    }
}

/// `create`'s check, in as few round trips as the answer allows: the workload is the object
/// `resolve` already read when the target names it (a ReplicaSet's owner is read), then the
/// guardrail (the Namespace) and the autoscalers targeting it (HPAs, KEDA ScaledObjects);
/// with `suspend_argocd`, the Argo CD Application that applies it (none found: an error, before
/// anything is written). A lock held by another session is found by acquiring.
pub async fn check_for_create(
    client: &kube::Client,
    resolved: &ResolvedTarget,
    scale_to: ScaleTo,
    suspend_argocd: bool,
    argocd_namespace: &str,
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
    let original = original_of(&workload::observed(target.kind, object.clone()), &target)?;
    scale_to.check(target.kind, &target.describe(), original)?;
    let hpas = autoscalers::hpas(client, &target).await;
    let scaled_objects = autoscalers::keda_objects(client, &target).await?;
    let names: Vec<String> = scaled_objects.iter().map(|so| so.name_any()).collect();
    scale_to.check_autoscalers(&target.describe(), &hpas, &names)?;
    let (application, argo) = match (suspend_argocd, manager_of(&object)) {
        (true, Some(gitops::Manager::ArgoCd(app))) => {
            let found = argocd::check(client, &app, argocd_namespace, &target.describe()).await?;
            let argo = match found {
                Some(_) => gitops::ArgoSuspend::Pausing,
                None => gitops::ArgoSuspend::SelfHealOff,
            };
            (found, argo)
        }
        _ => (None, gitops::ArgoSuspend::NotAsked),
    };
    Ok(Checked {
        target,
        object,
        hpas,
        scaled_objects,
        application,
        argo,
        argocd_namespace: argocd_namespace.to_string(),
        scale_to,
    })
}

/// The GitOps manager of a workload, from its marks.
fn manager_of(object: &DynamicObject) -> Option<gitops::Manager> {
    let empty = Default::default();
    let meta = &object.metadata;
    gitops::manager(
        meta.labels.as_ref().unwrap_or(&empty),
        meta.annotations.as_ref().unwrap_or(&empty),
    )
}

/// The count the way back leads to: a dead session's `original-replicas` when it names
/// itself on the workload (which may be scaled because of it), else the count observed.
/// Malformed: refuse rather than guess.
fn original_of(observed: &workload::Observed, target: &ScaleTarget) -> Result<i32, Error> {
    match observed.annotation(ORIGINAL_REPLICAS_ANNOTATION) {
        Some(v) if observed.annotation(SCALED_DOWN_BY_ANNOTATION).is_some() => {
            lock::parse_replicas(ORIGINAL_REPLICAS_ANNOTATION, v)
                .map_err(|why| Error::CorruptRecord(format!("{}: {why}", target.describe())))
        }
        _ => Ok(observed.replicas),
    }
}

/// The count a session's record on the workload says it set: its `scaled-to`, or 0 where
/// the record is an earlier build's (which only scaled to zero); None without a record.
pub(crate) fn scaled_to_of(
    annotations: &std::collections::BTreeMap<String, String>,
) -> Option<i32> {
    annotations.get(SCALED_DOWN_BY_ANNOTATION)?;
    match annotations.get(SCALED_TO_ANNOTATION) {
        None => Some(0),
        Some(v) => lock::parse_replicas(SCALED_TO_ANNOTATION, v).ok(),
    }
}

/// Before anything is created: decide the workload, honour the guardrail and what
/// `scale_to` can act on, and fail with [`Error::Conflict`] if another session holds a
/// valid lock on it. Read-only.
pub async fn check(
    client: &kube::Client,
    resolved: &ResolvedTarget,
    scale_to: ScaleTo,
) -> Result<ScaleTarget, Error> {
    let target = decide(client, resolved).await?;
    let object = workload::get(client, &target)
        .await?
        .ok_or_else(|| Error::Vanished(target.describe()))?;
    guardrail::check(client, &target, &object.metadata, resolved).await?;
    let original = original_of(&workload::observed(target.kind, object), &target)?;
    scale_to.check(target.kind, &target.describe(), original)?;
    match lock::read(client, &target.namespace, &target.key().lock_name()).await {
        Ok(Some((held, _))) if held.lease_valid(clock::now()) => Err(conflict(&target, &held)),
        Ok(_) => Ok(target),
        Err(e) => Err(lock_error(&target, e)),
    }
}

/// Take the lock on the workload for `session` (owned by the session ConfigMap) recording the
/// original count; nothing is scaled yet. From what [`check_for_create`] read, for a session
/// whose ConfigMap already records the workload (`create` writes it with the session): no
/// read of the workload, the Namespace or the session again.
///
/// `lease`: a detached session passes its TTL (nobody renews it); a `run` session a few
/// heartbeat intervals, renewed through [`renew`]. The workload is written only when another session's
/// record is on it (a takeover): it is claimed at once, so that session's later writes fail
/// their fence. Otherwise the way back is written with the zero, in [`apply`].
pub async fn prepare_checked(
    client: &kube::Client,
    checked: Checked,
    session: &SessionHandle,
    holder: &Holder,
    lease: Duration,
    suspend_flux: bool,
    on_progress: &ProgressFn,
) -> Result<ScaleDownPlan, Error> {
    let scaled_object_names = checked.scaled_object_names();
    let paused_application = checked.paused_application();
    let Checked {
        target,
        object,
        hpas,
        scaled_objects,
        application,
        argo,
        argocd_namespace,
        scale_to,
    } = checked;
    let observed = workload::observed(target.kind, object);
    if observed.replicas > MAX_REPLICAS {
        return Err(Error::Unsupported(format!(
            "{} has {} replicas, more than the {MAX_REPLICAS} mirrord-copy will record",
            target.describe(),
            observed.replicas
        )));
    }
    // A dead session's annotation is the way back to the real count: the workload may be
    // scaled because of it.
    let original = original_of(&observed, &target)?;
    let gitops = manager_of(&observed.object);
    let suspend_flux =
        suspend_flux && matches!(gitops, Some(gitops::Manager::FluxKustomization(_)));
    if let Some(m) = &gitops {
        on_progress(Progress::Warning(gitops::warning(
            &target.describe(),
            m,
            suspend_flux,
            &argocd_namespace,
            argo,
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
        target_replicas: scale_to.count(original),
        copy_pod: holder.copy_pod.clone(),
        scaled_objects: scaled_object_names,
        argo_application: paused_application,
    };
    let mut guard = lock::acquire(
        client,
        &target.namespace,
        &target.key(),
        record,
        session.owner_reference(),
    )
    .await
    .map_err(|e| lock_error(&target, e))?;
    // A takeover carries the dead holder's original forward: the count this session sets is
    // reckoned from it (and must still be one this mode can set; if not, the caller ends the
    // session, which puts the workload back through the lock).
    let original = guard.record.original_replicas;
    scale_to.check(target.kind, &target.describe(), original)?;
    let target_replicas = scale_to.count(original);
    if guard.record.target_replicas != target_replicas {
        let took_over_from = guard.took_over_from.take();
        guard = guard
            .update(client, |r| r.target_replicas = target_replicas)
            .await
            .map_err(|e| lock_error(&target, e))?;
        guard.took_over_from = took_over_from;
    }
    if let Some(dead) = &guard.took_over_from {
        on_progress(Progress::Warning(format!(
            "took over the expired lock of {} (lease expired {}); restoring to its recorded count {}",
            dead.describe_holder(),
            lock::rfc3339(dead.lease_expires),
            guard.record.original_replicas
        )));
    }
    // A dead holder whose place we took paused its Application: pause it as ours (its value
    // before carried forward), so our restore puts it back, flag or not. Only on takeover.
    let application = match (application, &guard.record.argo_application) {
        (None, Some(carried)) if guard.took_over_from.is_some() => {
            argocd::reclaim(client, carried).await?
        }
        (application, _) => application,
    };
    let story = breadcrumbs::Story {
        target: &target,
        holder: &holder.who,
        session: &session.id,
        copy_pod: &holder.copy_pod,
        original_replicas: original,
        scaled_to: target_replicas,
        expires: holder.expires,
    };
    let mut annotations = way_back(&observed, &session.id, original, suspend_flux);
    annotations[SCALED_TO_ANNOTATION] = json!(target_replicas.to_string());
    annotations[breadcrumbs::NOTE_ANNOTATION] = json!(story.note());
    // Another session's record on the workload (read before the lock was ours), or a holder
    // whose place we took: claim the workload now, so their fenced writes see it is ours.
    // Never over a session that took ours over since (not among `allowed`).
    let before = observed.annotation(SCALED_DOWN_BY_ANNOTATION);
    let predecessor = guard
        .took_over_from
        .as_ref()
        .map(|dead| dead.holder_session.as_str());
    let claim = must_claim(before, &session.id, predecessor);
    // The claim keeps the count the dead holder's record says it set, since the workload is
    // still there: restore takes it for one of ours until `apply` sets this session's.
    let mut claim_annotations = annotations.clone();
    if let Some(set) = scaled_to_of(observed.object.annotations()) {
        claim_annotations[SCALED_TO_ANNOTATION] = json!(set.to_string());
    }
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
                    let (target, annotations) = (&target, claim_annotations.clone());
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
        target_replicas,
        target,
        hpas,
        scaled_objects,
        lock: guard,
        workload: written,
        annotations,
        application,
    })
}

/// Does `session` write its name onto the workload as soon as the lock is its own, before the
/// copy is Ready? Only when another session's record is there (`before`, read before the lock
/// was ours) or it took a dead holder's place (`predecessor`): their later fenced writes must
/// then see it is ours. Otherwise the way back is written with the count, in [`apply`].
fn must_claim(before: Option<&str>, session: &str, predecessor: Option<&str>) -> bool {
    before.is_some_and(|b| b != session) || predecessor.is_some()
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

/// Pause KEDA, then scale to the plan's count (0, or one less with `--replace-one`): one
/// pinned patch writes the count together with the way back (the count to restore, the count
/// set and this session's name), so the workload is never scaled without its record, and a
/// workload without our annotation was never touched by us. Fenced: only while the workload
/// names no session or this one.
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
    // Before the zero: under self-heal the zero would last seconds. A 403 here fails the
    // create before anything is scaled (create then ends the session).
    if let Some(app) = &plan.application {
        if argocd::pause(client, app, &plan.session_id).await? {
            on_progress(Progress::Info(format!(
                "turned off self-heal of Argo CD Application {} for the session",
                app.record.application
            )));
        }
    }
    workload::fenced(
        client,
        target,
        &[None, Some(plan.session_id.as_str())],
        "the scale-down",
        Some(plan.workload.clone()),
        |rv| {
            let (annotations, count) = (plan.annotations.clone(), plan.target_replicas);
            async move { workload::write(client, target, Some(count), annotations, Some(&rv)).await }
        },
    )
    .await?;
    on_progress(Progress::ScaledDown {
        workload: target.workload_field(),
        from: plan.original_replicas,
        to: plan.target_replicas,
    });
    let note = plan.annotations[breadcrumbs::NOTE_ANNOTATION]
        .as_str()
        .unwrap_or_default();
    breadcrumbs::record(
        client,
        target,
        breadcrumbs::SCALED_DOWN,
        "Normal",
        note,
        on_progress,
    )
    .await;
    Ok(())
}

/// Record on `workload` (`kind/name`, as the session names it) an Event saying that someone
/// else changed its count while a session holds it (best-effort, as every breadcrumb).
pub async fn record_interference(
    client: &kube::Client,
    namespace: &str,
    workload: &str,
    message: &str,
    on_progress: &ProgressFn,
) {
    let Some((kind, name)) = workload.split_once('/') else {
        return;
    };
    let Some(kind) = ScaleKind::parse(kind) else {
        return;
    };
    let mut target = ScaleTarget {
        kind,
        name: name.to_string(),
        namespace: namespace.to_string(),
        uid: String::new(),
    };
    // `kubectl describe` finds Events by the object's uid too (a GET, once per new finding).
    if let Ok(Some(object)) = workload::get(client, &target).await {
        target.uid = object.uid().unwrap_or_default();
    }
    let (reason, type_) = (breadcrumbs::INTERFERENCE, "Warning");
    breadcrumbs::record(client, &target, reason, type_, message, on_progress).await;
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
        let guard = lock::LockGuard::for_session(cm, session_id);
        let guard = match guard {
            Ok(guard) => guard.renew(client, until).await,
            Err(e) => Err(e),
        }
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

#[cfg(test)]
mod tests {
    use super::must_claim;

    #[test]
    fn the_workload_is_claimed_early_only_from_another_session() {
        assert!(
            !must_claim(None, "s", None),
            "nobody's record: written with the count"
        );
        assert!(
            !must_claim(Some("s"), "s", None),
            "our own record: a retried create"
        );
        assert!(
            must_claim(Some("dead"), "s", None),
            "a dead session's record"
        );
        assert!(must_claim(None, "s", Some("dead")), "a lock taken over");
        assert!(must_claim(Some("s"), "s", Some("dead")));
    }
}
