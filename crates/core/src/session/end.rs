//! Ending a session: the scale-down restored first, then the copy pods, the lock and the
//! session ConfigMap deleted; also for sessions whose record does not read back.

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{DeleteParams, Preconditions};
use kube::{Api, ResourceExt};

use super::query::list_all;
use super::record::session_from_config_map;
use super::{Progress, ProgressFn, Session};
use crate::error::{is_conflict, is_forbidden, is_not_found, Error};
use crate::labels::{self, Role};
use crate::scale_down;
use mirrord_copy_lock::clock;

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
/// The lock of the workload it recorded is read first (a malformed one stops the end before
/// anything is written), then its copies are deleted by their label in one request, the
/// workload restored and its lock released by name, and its ConfigMap deleted.
///
/// The order is what a crash in the middle leaves behind. A live, confirmed detached session
/// (one gc would not end by time) loses its copies first: stopped after that, it is a session
/// whose copy is gone, which gc ends at once (restoring). Any other (provisional, `run`, or
/// lapsed: gc ends those by time anyway) is restored first, so the workload comes back first.
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
    let copies_first = session.confirmed.is_some()
        && session.expires.is_some()
        && !session.has_lapsed(clock::now());
    let recorded = match session.scale_down {
        true => {
            Some(scale_down::read_recorded(client, namespace, session.workload.as_deref()).await?)
        }
        false => None,
    };
    let pod = Some((session.copy_pod.as_str(), session.record_uid.as_deref()));
    if copies_first {
        delete_copies(client, namespace, id, pod, &mut report, on_progress).await?;
    }
    if let Some(recorded) = recorded {
        let paused = scale_down::Paused {
            scaled_objects: &session.scaled_objects,
            application: session.argo_application.as_ref(),
        };
        let restored = scale_down::restore_read(client, recorded, id, paused, on_progress);
        report.unpaused = restored.await?;
    }
    if !copies_first {
        delete_copies(client, namespace, id, pod, &mut report, on_progress).await?;
    }
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
        let released = match mirrord_copy_lock::LockGuard::for_session(lock, session_id) {
            Ok(guard) => guard.release(client).await,
            Err(e) => Err(e),
        };
        match released {
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
