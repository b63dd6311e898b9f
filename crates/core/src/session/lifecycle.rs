//! preview / create / end / heartbeat.
//!
//! create's order (DESIGN.md): resolve, validate, [reuse], session ConfigMap, [scale-down
//! prepare: guardrail, lock, original count], copy pod (owned by the session ConfigMap), wait
//! until Ready, [scale to zero]. A StatefulSet copy that takes over a ReadWriteOnce claim
//! scales to zero first and waits for `<sts>-0` to be gone before the copy pod. Any failure after the session ConfigMap exists ends the
//! session (undoing scale-down first) before the error is returned.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::query::{list_all, sessions_only};
use super::record::{session_from_config_map, NewSession};
use super::wait::{pod_state, wait_gone, wait_ready, PodState};
use super::{CreateRequest, Progress, ProgressFn, Session, SessionHandle};
use crate::claims::{check_exclusive, claims, COPIED_ORDINAL};
use crate::copy::{build_copy_pod, timestamp, CopyOptions};
use crate::error::{is_conflict, is_forbidden, is_not_found, Error};
use crate::labels::{self, Role};
use crate::naming;
use crate::resolve::{resolve, ResolvedTarget};
use crate::scale_down;
use mirrord_copy_lock::clock;

/// Lease of a `run` session's scale-down lock; its heartbeat renews it.
pub const RUN_LEASE: Duration = Duration::from_secs(60);
/// How often `run` should call [`heartbeat`] (well inside [`RUN_LEASE`]).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// With no successful renewal for this long, `run` treats its session as lost: before the
/// lease itself runs out (lease > renew deadline > retry period, as client-go's leader
/// election), so the command is stopped before anyone else may take the workload.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(40);
/// A failed renewal is retried this often (with jitter); each attempt is bounded by it too.
pub const RETRY_PERIOD: Duration = Duration::from_secs(4);

/// What `end` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndReport {
    /// The session id asked for.
    pub session: String,
    /// Its namespace.
    pub namespace: String,
    /// False when there was nothing left to end (already ended: not an error).
    pub found: bool,
    /// Deleted objects, as "pod/NAME" and "configmap/NAME".
    pub deleted: Vec<String>,
    /// KEDA ScaledObjects put back, by name.
    pub unpaused: Vec<String>,
}

/// `now + ttl`, or None when that is not a representable time.
pub(crate) fn expiry(now: DateTime<Utc>, ttl: Duration) -> Option<DateTime<Utc>> {
    now.checked_add_signed(chrono::Duration::from_std(ttl).ok()?)
}

fn validate(req: &CreateRequest) -> Result<(), Error> {
    if req.namespace.is_empty() {
        return Err(Error::Usage("a namespace is required".into()));
    }
    if req.owner.is_empty() {
        return Err(Error::Usage("an owner (user@host) is required".into()));
    }
    if req.ttl.is_some_and(|ttl| ttl.is_zero()) {
        return Err(Error::Usage("--ttl must be longer than zero".into()));
    }
    if req
        .ttl
        .is_some_and(|ttl| expiry(clock::now(), ttl).is_none())
    {
        return Err(Error::Usage("--ttl is too long".into()));
    }
    if (req.wait || req.scale_down) && req.timeout.is_zero() {
        return Err(Error::Usage("--timeout must be longer than zero".into()));
    }
    Ok(())
}

/// A StatefulSet claim the copy cannot share with a running original (crate::claims).
fn check_claims(
    req: &CreateRequest,
    resolved: &ResolvedTarget,
    options: &CopyOptions,
) -> Result<(), Error> {
    let claims = claims(resolved);
    check_exclusive(
        resolved,
        &claims,
        req.scale_down,
        options.claims_as_empty_dir,
    )
}

/// The pod `create` would make (`--dry-run=client`): resolves the target, writes nothing.
/// The ownerReference names a session ConfigMap that does not exist (uid empty).
pub async fn preview(client: &kube::Client, req: &CreateRequest) -> Result<Pod, Error> {
    validate(req)?;
    let resolved = resolve(client, &req.namespace, &req.target).await?;
    let options = req.options.normalized();
    check_claims(req, &resolved, &options)?;
    // Read-only: a dry run also says when the guardrail or another session would refuse.
    if req.scale_down {
        scale_down::check(client, &resolved).await?;
    }
    let id = naming::session_id();
    let handle = SessionHandle {
        config_map: labels::session_config_map_name(&id),
        id,
        namespace: req.namespace.clone(),
        uid: String::new(),
    };
    let pod_name = naming::copy_pod_name(&req.target.name);
    build_copy_pod(
        &resolved,
        &options,
        &handle,
        &pod_name,
        &req.owner,
        clock::now(),
    )
}

/// Create a session and its copy (see the module doc for the order).
pub async fn create(
    client: &kube::Client,
    req: &CreateRequest,
    on_progress: &ProgressFn,
) -> Result<Session, Error> {
    validate(req)?;
    let options = req.options.normalized();
    let resolved = resolve(client, &req.namespace, &req.target).await?;
    on_progress(Progress::Resolved {
        target: req.target.to_string(),
        object: resolved.object.describe(),
    });

    let id = naming::session_id();
    let pod_name = naming::copy_pod_name(&req.target.name);
    let handle = SessionHandle {
        config_map: labels::session_config_map_name(&id),
        id: id.clone(),
        namespace: req.namespace.clone(),
        uid: String::new(),
    };
    // Bad exclusions and a claim the copy cannot share fail here, before anything is written.
    check_claims(req, &resolved, &options)?;
    build_copy_pod(
        &resolved,
        &options,
        &handle,
        &pod_name,
        &req.owner,
        clock::now(),
    )?;

    if req.reuse {
        if let Some(session) = reuse(client, req, &options, on_progress).await? {
            return Ok(session);
        }
    }
    // Which workload, and its guardrails, before anything is written; a lock held by another
    // session is found by acquiring it (the session just created is then ended again).
    let checked = match req.scale_down {
        true => Some(scale_down::check_for_create(client, &resolved).await?),
        false => None,
    };

    let new = NewSession {
        id: &id,
        namespace: &req.namespace,
        target: req.target.to_string(),
        copy_pod: &pod_name,
        scale_down: req.scale_down,
        owner: &req.owner,
        host: &req.host,
        workload: checked.as_ref().map(|c| c.target.workload_field()),
        scaled_objects: checked
            .as_ref()
            .map(scale_down::Checked::scaled_object_names)
            .unwrap_or_default(),
        options: &options,
        now: clock::now(),
        ttl: req.ttl,
    };
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &req.namespace);
    let cm = cms
        .create(&PostParams::default(), &new.config_map())
        .await
        .map_err(|e| Error::from_kube(e, "create", "configmaps"))?;
    let handle = SessionHandle {
        uid: cm.uid().unwrap_or_default(),
        ..handle
    };
    on_progress(Progress::SessionCreated {
        session: id.clone(),
        config_map: handle.config_map.clone(),
    });

    match start_copy(
        client,
        req,
        checked,
        &resolved,
        &handle,
        &pod_name,
        on_progress,
    )
    .await
    {
        Ok(()) => Ok(Session {
            record_uid: cm.uid(),
            ..new.session()
        }),
        Err(err) => {
            if let Err(cleanup) = end(client, &req.namespace, &id, on_progress).await {
                on_progress(Progress::Warning(format!(
                    "could not clean up session {id} after the failure ({cleanup}); \
                     `kubectl mirrord-copy delete {pod_name} -n {}` or `gc` will retry",
                    req.namespace
                )));
            }
            Err(err)
        }
    }
}

/// Everything after the session ConfigMap exists.
async fn start_copy(
    client: &kube::Client,
    req: &CreateRequest,
    checked: Option<scale_down::Checked>,
    resolved: &ResolvedTarget,
    handle: &SessionHandle,
    pod_name: &str,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    let options = &req.options.normalized();
    let plan = match checked {
        Some(checked) => {
            let holder = scale_down::Holder::new(&req.owner, Some(&req.host), pod_name);
            let lease = req.ttl.unwrap_or(RUN_LEASE);
            let plan = scale_down::prepare_checked(
                client,
                checked,
                handle,
                &holder,
                lease,
                req.suspend_flux,
                on_progress,
            );
            Some(plan.await?)
        }
        None => None,
    };
    // A claim only one pod can use (StatefulSet, ReadWriteOnce) is handed over: the originals
    // stop first, then the copy mounts it. Otherwise the originals go only once the copy can
    // take their place.
    let held: Vec<String> = claims(resolved)
        .into_iter()
        .filter(|c| c.exclusive && !options.claims_as_empty_dir)
        .map(|c| c.claim_name)
        .collect();
    let scale_first = plan.is_some() && !held.is_empty();
    if let (true, Some(plan)) = (scale_first, &plan) {
        scale_down::apply(client, plan, on_progress).await?;
        let holder = format!("{}-{COPIED_ORDINAL}", resolved.object.name);
        on_progress(Progress::Releasing {
            pod: holder.clone(),
            claims: held,
        });
        let gone = wait_gone(client, &req.namespace, &holder, req.timeout);
        keeping_alive(client, req, handle, gone, on_progress).await?;
    }
    let pod = build_copy_pod(
        resolved,
        options,
        handle,
        pod_name,
        &req.owner,
        clock::now(),
    )?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &req.namespace);
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .map_err(|e| Error::from_kube(e, "create", "pods"))?;
    on_progress(Progress::CopyCreated {
        pod: pod_name.to_string(),
    });
    // Scale-down always waits: the originals go only once the copy can take their place.
    if req.wait || plan.is_some() {
        let ready = wait_ready(
            client,
            &req.namespace,
            pod_name,
            Some(created),
            req.timeout,
            on_progress,
        );
        keeping_alive(client, req, handle, ready, on_progress).await?;
    }
    if let (false, Some(plan)) = (scale_first, &plan) {
        scale_down::apply(client, plan, on_progress).await?;
    }
    Ok(())
}

/// The caller's live, detached session of the same target with the same options, if any;
/// its expiry is pushed out to now + ttl.
async fn reuse(
    client: &kube::Client,
    req: &CreateRequest,
    options: &CopyOptions,
    on_progress: &ProgressFn,
) -> Result<Option<Session>, Error> {
    let now = clock::now();
    let target = req.target.to_string();
    let candidates = sessions_only(client, Some(&req.namespace)).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &req.namespace);
    for mut session in candidates {
        let same = session.target == target
            && session.owner == req.owner
            && session.host.as_deref().unwrap_or_default() == req.host
            && &session.options == options
            && session.scale_down == req.scale_down
            // Only detached sessions: a `run` session ends with its command.
            && session.expires.is_some_and(|e| e > now);
        if !same {
            continue;
        }
        let healthy = match pods.get(&session.copy_pod).await {
            Ok(pod) => !matches!(pod_state(&pod), PodState::Failed(_)),
            Err(e) if is_not_found(&e) => false,
            Err(e) => return Err(Error::from_kube(e, "get", "pods")),
        };
        if !healthy {
            continue;
        }
        on_progress(Progress::Info(format!(
            "reusing session {} (copy pod {})",
            session.id, session.copy_pod
        )));
        if let Some(ttl) = req.ttl {
            let expires = expiry(now, ttl)
                .unwrap_or(now)
                .max(session.expires.unwrap_or(now));
            patch_data(
                client,
                &session.namespace,
                &session.id,
                labels::DATA_EXPIRES,
                &timestamp(expires),
            )
            .await?;
            session.expires = Some(expires);
            if session.scale_down {
                scale_down::renew(client, &session.namespace, &session.id, ttl).await?;
            }
        }
        if req.wait {
            wait_ready(
                client,
                &session.namespace,
                &session.copy_pod,
                None,
                req.timeout,
                on_progress,
            )
            .await?;
        }
        return Ok(Some(session));
    }
    Ok(None)
}

async fn patch_data(
    client: &kube::Client,
    namespace: &str,
    session_id: &str,
    key: &str,
    value: &str,
) -> Result<(), Error> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let patch = json!({ "data": { key: value } });
    match cms
        .patch(
            &labels::session_config_map_name(session_id),
            &PatchParams::default(),
            &Patch::Merge(&patch),
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

async fn beat(
    client: &kube::Client,
    namespace: &str,
    session_id: &str,
    scale_down: bool,
) -> Result<Vec<mirrord_copy_lock::LockRecord>, Error> {
    let now = timestamp(clock::now());
    patch_data(client, namespace, session_id, labels::DATA_HEARTBEAT, &now).await?;
    if !scale_down {
        return Ok(Vec::new());
    }
    scale_down::renew(client, namespace, session_id, RUN_LEASE).await
}

/// Run `wait` (for Ready, or for an original to release its claims). A `run` session (no ttl)
/// lives by its heartbeat and its lock by a lease of [`RUN_LEASE`]; a wait longer than that
/// must keep both alive, or gc (or a takeover) would end the session while it is still being
/// created.
async fn keeping_alive(
    client: &kube::Client,
    req: &CreateRequest,
    handle: &SessionHandle,
    wait: impl std::future::Future<Output = Result<(), Error>>,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    if req.ttl.is_some() {
        return wait.await;
    }
    tokio::pin!(wait);
    let mut ticker = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticker.tick().await; // the first tick is immediate; the session was just created
    loop {
        tokio::select! {
            result = &mut wait => return result,
            _ = ticker.tick() => {
                if let Err(e) = beat(client, &handle.namespace, &handle.id, req.scale_down).await {
                    on_progress(Progress::Warning(format!("heartbeat of session {}: {e}", handle.id)));
                }
            }
        }
    }
}

/// End a session: restore a scaled-down workload, delete the copy pod, the session's lock and
/// its ConfigMap. Idempotent: a session already gone is `found: false`, not an error. If the
/// restore fails, the session ConfigMap (which owns the lock) is kept and the error returned,
/// so the original replica count is never lost.
pub async fn end(
    client: &kube::Client,
    namespace: &str,
    session_id: &str,
    on_progress: &ProgressFn,
) -> Result<EndReport, Error> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let record = match cms.get(&labels::session_config_map_name(session_id)).await {
        Ok(cm) => Some((cm.uid(), session_from_config_map(&cm))),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(Error::from_kube(e, "get", "configmaps")),
    };
    match record {
        Some((_, Ok(session))) => end_session(client, &session, on_progress).await,
        // Unreadable (`Some(uid)`: deleted by that uid), or already gone while its lock or copy
        // lingers (a crash between steps below): end whatever the labels find. Restore is
        // idempotent and cheap when there is nothing to do.
        unknown => {
            let uid = unknown.map(|(uid, _)| uid);
            end_unrecorded(client, namespace, session_id, uid, on_progress).await
        }
    }
}

/// [`end`] of a session as just read (`list`, `find_by_pod`): no read of its ConfigMap again.
/// The workload it recorded is restored and its lock released by name, its copies deleted by
/// their label in one request, then its ConfigMap.
pub async fn end_session(
    client: &kube::Client,
    session: &Session,
    on_progress: &ProgressFn,
) -> Result<EndReport, Error> {
    let (namespace, id) = (session.namespace.as_str(), session.id.as_str());
    let mut report = EndReport {
        session: id.to_string(),
        namespace: namespace.to_string(),
        found: true,
        ..Default::default()
    };
    if session.scale_down {
        let (workload, scaled_objects) = (session.workload.as_deref(), &session.scaled_objects);
        let restored = scale_down::restore_recorded(
            client,
            namespace,
            id,
            workload,
            scaled_objects,
            on_progress,
        );
        report.unpaused = restored.await?;
    }
    let recorded = Some((session.copy_pod.as_str(), session.record_uid.as_deref()));
    delete_copies(client, namespace, id, recorded, &mut report, on_progress).await?;
    delete_record(
        client,
        namespace,
        id,
        session.record_uid.clone(),
        &mut report,
        on_progress,
    )
    .await?;
    Ok(report)
}

/// [`end`] without a readable record: the session's locks (found by label) restore, and
/// copies and locks are found by label. `record`: the unreadable ConfigMap's uid, if there is
/// one (then deleted with it as precondition).
async fn end_unrecorded(
    client: &kube::Client,
    namespace: &str,
    session_id: &str,
    record: Option<Option<String>>,
    on_progress: &ProgressFn,
) -> Result<EndReport, Error> {
    let found = record.is_some();
    let unpaused = scale_down::restore(client, namespace, session_id, on_progress).await?;
    let mut report = EndReport {
        session: session_id.to_string(),
        namespace: namespace.to_string(),
        found,
        deleted: Vec::new(),
        unpaused,
    };
    delete_copies(
        client,
        namespace,
        session_id,
        None,
        &mut report,
        on_progress,
    )
    .await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    delete_own_locks(client, &cms, session_id, &mut report, on_progress).await?;
    if let Some(uid) = record {
        delete_record(client, namespace, session_id, uid, &mut report, on_progress).await?;
    }
    Ok(report)
}

/// The session's copy pods, by their labels, in one DELETE of the collection (the garbage
/// collector would delete them with the session ConfigMap too, but not on our schedule). A
/// Role without `deletecollection` on pods (one from before it was needed) gets a LIST and a
/// DELETE per pod instead. The `recorded` copy pod (name, and the uid of the session
/// ConfigMap that must own it), should its labels have been edited away, is deleted by name.
async fn delete_copies(
    client: &kube::Client,
    namespace: &str,
    session_id: &str,
    recorded: Option<(&str, Option<&str>)>,
    report: &mut EndReport,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = labels::session_role_selector(session_id, Role::Copy);
    let lp = kube::api::ListParams::default().labels(&selector);
    let deleted: Vec<String> = match pods.delete_collection(&DeleteParams::default(), &lp).await {
        // The pods as deleted (a Status instead when the server says no more).
        Ok(answer) => answer
            .left()
            .map(|list| list.items.iter().map(|p| p.name_any()).collect())
            .unwrap_or_default(),
        Err(e) if is_forbidden(&e) => {
            let mut deleted = Vec::new();
            for pod in list_all(&pods, &selector, "pods").await? {
                let name = pod.name_any();
                match pods.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => deleted.push(name),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(Error::from_kube(e, "delete", "pods")),
                }
            }
            deleted
        }
        Err(e) => return Err(Error::from_kube(e, "deletecollection", "pods")),
    };
    let mut deleted = deleted;
    if let Some((pod, Some(owner_uid))) = recorded.filter(|(p, _)| !deleted.iter().any(|d| d == p))
    {
        if delete_if_owned(&pods, pod, owner_uid).await? {
            deleted.push(pod.to_string());
        }
    }
    for pod in deleted {
        report.found = true;
        report.deleted.push(format!("pod/{pod}"));
        on_progress(Progress::Deleted {
            object: format!("pod/{pod}"),
        });
    }
    Ok(())
}

/// Delete pod `name` if it exists and is owned by the ConfigMap `owner_uid` (a pod of that
/// name made by someone else is not ours; a DELETE of one never created could still be refused
/// by RBAC). Whether it was deleted.
async fn delete_if_owned(pods: &Api<Pod>, name: &str, owner_uid: &str) -> Result<bool, Error> {
    let owned = match pods.get(name).await {
        Ok(p) => p.owner_references().iter().any(|o| o.uid == owner_uid),
        Err(e) if is_not_found(&e) => false,
        Err(e) => return Err(Error::from_kube(e, "get", "pods")),
    };
    if !owned {
        return Ok(false);
    }
    match pods.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(Error::from_kube(e, "delete", "pods")),
    }
}

/// The session ConfigMap, exactly the object read (`uid`): one recreated under the same name
/// is not ours to delete.
async fn delete_record(
    client: &kube::Client,
    namespace: &str,
    session_id: &str,
    uid: Option<String>,
    report: &mut EndReport,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm_name = labels::session_config_map_name(session_id);
    let dp = DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match cms.delete(&cm_name, &dp).await {
        Ok(_) => {
            report.deleted.push(format!("configmap/{cm_name}"));
            on_progress(Progress::Deleted {
                object: format!("configmap/{cm_name}"),
            });
            Ok(())
        }
        // Gone, or replaced by another object of that name: not ours to delete.
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
        Err(e) => Err(Error::from_kube(e, "delete", "configmaps")),
    }
}

/// Lock ConfigMaps still held by this session (restore normally released them already).
/// Only locks whose recorded holder is this session are released (`lock::release`: finalizer
/// off, then a preconditioned DELETE), so a lock taken over by another session is never
/// touched.
async fn delete_own_locks(
    client: &kube::Client,
    cms: &Api<ConfigMap>,
    session_id: &str,
    report: &mut EndReport,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    let locks = list_all(
        cms,
        &labels::session_role_selector(session_id, Role::Lock),
        "configmaps",
    )
    .await?;
    for lock in locks {
        let holder = lock
            .data
            .as_ref()
            .and_then(|d| d.get(labels::LOCK_HOLDER_SESSION));
        if holder.map(String::as_str) != Some(session_id) {
            continue;
        }
        let name = lock.name_any();
        let namespace = lock.namespace().unwrap_or_default();
        match mirrord_copy_lock::release_known(client, lock, session_id).await {
            Ok(mirrord_copy_lock::Released::Deleted) => {
                report.deleted.push(format!("configmap/{name}"));
                on_progress(Progress::Deleted {
                    object: format!("configmap/{name}"),
                });
            }
            Ok(_) => {}
            Err(e) => {
                return Err(Error::Contended(format!(
                    "releasing lock {namespace}/{name}: {e}"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> CreateRequest {
        CreateRequest {
            namespace: "default".into(),
            target: "deploy/x".parse().unwrap(),
            options: CopyOptions::default(),
            scale_down: false,
            ttl: Some(Duration::from_secs(3600)),
            owner: "me".into(),
            host: "me@host".into(),
            wait: true,
            timeout: Duration::from_secs(60),
            reuse: false,
            suspend_flux: false,
        }
    }

    #[test]
    fn validation_rejects_nonsense_as_usage_errors() {
        validate(&req()).unwrap();
        type Change = Box<dyn Fn(&mut CreateRequest)>;
        let cases: Vec<(&str, Change)> = vec![
            ("zero ttl", Box::new(|r| r.ttl = Some(Duration::ZERO))),
            (
                "huge ttl",
                Box::new(|r| r.ttl = Some(Duration::from_secs(u64::MAX))),
            ),
            ("zero timeout", Box::new(|r| r.timeout = Duration::ZERO)),
            ("no owner", Box::new(|r| r.owner.clear())),
            ("no namespace", Box::new(|r| r.namespace.clear())),
        ];
        for (what, change) in cases {
            let mut r = req();
            change(&mut r);
            let err = validate(&r).expect_err(what);
            assert_eq!(err.exit_code(), 2, "{what}: {err}");
        }
        let mut no_wait = req();
        no_wait.wait = false;
        no_wait.timeout = Duration::ZERO;
        validate(&no_wait).unwrap();
    }

    #[test]
    fn expiry_is_checked() {
        let now = clock::now();
        assert_eq!(
            expiry(now, Duration::from_secs(60)),
            Some(now + chrono::Duration::seconds(60))
        );
        assert_eq!(expiry(now, Duration::from_secs(u64::MAX)), None);
    }
}
