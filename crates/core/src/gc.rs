//! gc: end expired sessions and put back whatever a dead session left behind. Safe to run from
//! many machines at once: every decision is re-checked right before acting, every write is
//! pinned (resourceVersion / uid preconditions, or the lock fence), and NotFound or Conflict
//! from a racing gc just means someone else did it.
//!
//! 1. Session ConfigMaps whose `expires` passed, or (`run` sessions) whose heartbeat is older
//!    than the lease, or (provisional sessions, whose create never confirmed them) whose
//!    heartbeat is older than the provisional lease, are ended through `session::end_session`
//!    (restore, copy pods, lock, ConfigMap).
//! 2. Locks whose holder session no longer exists: fenced, workload restored (with the KEDA
//!    ScaledObjects the lock recorded), released. A lock outlives its session's deletion
//!    (by hand, or by the garbage collector with it): its finalizer keeps it, marked deleted,
//!    until this releases it. The lock is therefore the one trace a dead session leaves, and no
//!    workload or ScaledObject needs listing.
//!    Confirmed sessions whose copy pod is gone (deleted by hand, being deleted, evicted, lost
//!    with its node: a bare pod is not recreated) are ended the same way: they copy
//!    nothing any more, and may hold their workload at zero until their TTL otherwise.
//! 3. Copy pods whose session no longer exists: deleted.
//!
//! Requests when nothing is to be done: one LIST of our ConfigMaps (sessions and
//! locks, by the managed-by label) and one LIST of copy pods (before step 1, which needs it),
//! each decoded item by item into the fields read here (`crate::list`). GETs happen only for
//! candidates.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, Preconditions};
use serde::{Deserialize, Serialize};

use crate::error::{is_conflict, is_not_found, Error};
use crate::labels::{self, Role};
use crate::list::{self, ConfigMapLite, Meta, PodLite};
use crate::model::{Progress, ProgressFn};
use crate::scale_down;
use crate::session::{self, for_each_ours};
use mirrord_copy_lock::{self as lock, clock};

/// What gc did, for `-o json|yaml` and the CronJob's log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    /// "namespace/session-id" of every session ended.
    pub ended_sessions: Vec<String>,
    /// "namespace kind/name -> n" of every workload scaled back.
    pub restored: Vec<String>,
    /// Objects deleted outside `session::end` ("namespace pod/x").
    pub deleted: Vec<String>,
    /// KEDA ScaledObjects put back ("namespace scaledobject/x").
    pub unpaused: Vec<String>,
    /// What was left alone and why (malformed records, errors): reported, never acted upon.
    pub skipped: Vec<String>,
}

/// Sessions are identified by (namespace, id).
type Live = HashSet<(String, String)>;

/// Run gc (steps above) in `namespace`, or in every namespace when None.
pub async fn gc(
    client: &kube::Client,
    namespace: Option<&str>,
    on_progress: &ProgressFn,
) -> Result<GcReport, Error> {
    let mut report = GcReport::default();
    let ours = our_config_maps(client, namespace).await?;
    let copies = copy_pods(client, namespace).await?;
    let (live, ended) =
        end_expired_sessions(client, &ours.sessions, &copies, &mut report, on_progress).await?;
    release_orphan_locks(client, &ours.locks, &live, &ended, &mut report, on_progress).await?;
    drop(ours);
    delete_orphan_copies(client, copies, &live, &ended, &mut report, on_progress).await?;
    Ok(report)
}

/// A copy pod as listed: what gc decides on.
struct Copy {
    meta: Meta,
    /// As `status` shows it (`Terminating`, `Evicted`, the phase).
    phase: String,
}

/// Every copy pod (by our label), from one LIST.
async fn copy_pods(client: &kube::Client, namespace: Option<&str>) -> Result<Vec<Copy>, Error> {
    let api: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut copies = Vec::new();
    let selector = labels::role_selector(Role::Copy);
    list::for_each(&api, client, Some(&selector), |pod: PodLite| {
        let phase = pod.shown_phase();
        copies.push(Copy {
            meta: pod.metadata,
            phase,
        });
    })
    .await
    .map_err(|e| Error::from_kube(e, "list", "pods"))?;
    Ok(copies)
}

/// Is the copy pod `name` gone right now? (Re-checked before acting on a LIST's answer.)
async fn copy_gone_now(client: &kube::Client, ns: &str, name: &str) -> Result<bool, Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = api
        .get_opt(name)
        .await
        .map_err(|e| Error::from_kube(e, "get", "pods"))?;
    let Some(pod) = pod else {
        return Ok(true);
    };
    let status = pod.status.unwrap_or_default();
    let lite = PodLite {
        metadata: Meta {
            deletion_timestamp: pod.metadata.deletion_timestamp.map(|t| t.0.to_string()),
            ..Default::default()
        },
        status: crate::list::PodStatusLite {
            phase: status.phase,
            reason: status.reason,
        },
    };
    Ok(session::copy_phase_gone(Some(&lite.shown_phase())))
}

/// Our session and lock ConfigMaps, from one LIST by the managed-by label.
struct Ours {
    sessions: Vec<ConfigMapLite>,
    locks: Vec<ConfigMapLite>,
}

async fn our_config_maps(client: &kube::Client, namespace: Option<&str>) -> Result<Ours, Error> {
    let mut ours = Ours {
        sessions: Vec::new(),
        locks: Vec::new(),
    };
    for_each_ours(client, namespace, |role, cm| match role {
        Role::Session => ours.sessions.push(cm),
        Role::Lock => ours.locks.push(cm),
        Role::Copy => {}
    })
    .await?;
    Ok(ours)
}

/// Does the session ConfigMap exist right now? (Re-checked before acting, so a session created
/// after our LIST is never mistaken for a dead one.)
async fn session_exists(client: &kube::Client, ns: &str, id: &str) -> Result<bool, Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    api.get_opt(&labels::session_config_map_name(id))
        .await
        .map(|o| o.is_some())
        .map_err(|e| Error::from_kube(e, "get", "configmaps"))
}

/// Ends the lapsed sessions, and the confirmed ones whose copy pod is gone; returns the live
/// ones and those it ended.
async fn end_expired_sessions(
    client: &kube::Client,
    cms: &[ConfigMapLite],
    copies: &[Copy],
    report: &mut GcReport,
    on_progress: &ProgressFn,
) -> Result<(Live, Live), Error> {
    let now = clock::now();
    let mut live = Live::new();
    let mut ended = Live::new();
    let phases: HashMap<(&str, &str), &str> = copies
        .iter()
        .map(|c| {
            let key = (c.meta.namespace.as_str(), c.meta.name.as_str());
            (key, c.phase.as_str())
        })
        .collect();
    for cm in cms {
        let ns = cm.metadata.namespace.clone();
        let Some(id) = cm.metadata.labels.get(labels::SESSION_LABEL).cloned() else {
            continue;
        };
        let session = match session::session_from_config_map(&cm.to_config_map()) {
            Ok(s) => s,
            Err(e) => {
                // Unreadable: we cannot know it expired; leave it and everything it holds,
                // and say how to end it.
                let remedy = session::Unreadable::of(cm, &e)
                    .map(|u| format!("; {}", u.remedy()))
                    .unwrap_or_default();
                report.skipped.push(format!(
                    "{e}; left alone (gc cannot tell whether it expired){remedy}"
                ));
                live.insert((ns, id));
                continue;
            }
        };
        let listed = phases
            .get(&(ns.as_str(), session.copy_pod.as_str()))
            .copied();
        let copy_gone = session.confirmed.is_some()
            && session::copy_phase_gone(listed)
            && copy_gone_now(client, &ns, &session.copy_pod).await?;
        if !session.has_lapsed(now) && !copy_gone {
            live.insert((ns, id));
            continue;
        }
        if copy_gone && !session.has_lapsed(now) {
            on_progress(Progress::Info(format!(
                "session {ns}/{id}: its copy pod {} is gone (deleted, evicted or lost with its node; a copy is not recreated); ending it",
                session.copy_pod
            )));
        } else if session.provisional {
            on_progress(Progress::Info(format!(
                "session {ns}/{id} was never confirmed: its create stopped before the copy was Ready and its name shown (provisional lease lapsed {}); ending it",
                lock::rfc3339(session.lapses_at())
            )));
        }
        match session::end_session(client, &session, on_progress).await {
            Ok(done) => {
                let unpaused = done.unpaused.iter();
                report
                    .unpaused
                    .extend(unpaused.map(|so| format!("{ns} scaledobject/{so}")));
                report.ended_sessions.push(format!("{ns}/{id}"));
                ended.insert((ns, id));
            }
            Err(e) => {
                report.skipped.push(format!(
                    "session {ns}/{id} expired but could not be ended: {e}"
                ));
                live.insert((ns, id));
            }
        }
    }
    Ok((live, ended))
}

async fn release_orphan_locks(
    client: &kube::Client,
    locks: &[ConfigMapLite],
    live: &Live,
    ended: &Live,
    report: &mut GcReport,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    for cm in locks {
        let ns = cm.metadata.namespace.clone();
        let name = &cm.metadata.name;
        let record = match lock::LockRecord::parse(&cm.data) {
            Ok(r) => r,
            Err(e) => {
                report
                    .skipped
                    .push(format!("lock {ns}/{name}: {e}; left untouched"));
                continue;
            }
        };
        let holder = record.holder_session.clone();
        let key = (ns.clone(), holder.clone());
        // Listed before step 1: a session ended there restored and released its own lock.
        if ended.contains(&key)
            || live.contains(&key)
            || session_exists(client, &ns, &holder).await?
        {
            continue;
        }
        match scale_down::restore(client, &ns, &holder, on_progress).await {
            Ok(unpaused) => {
                let unpaused = unpaused.iter();
                report
                    .unpaused
                    .extend(unpaused.map(|so| format!("{ns} scaledobject/{so}")));
                report.restored.push(format!(
                    "{ns} {}/{} (lock of dead session {holder})",
                    record.workload_kind.to_ascii_lowercase(),
                    record.workload_name
                ))
            }
            Err(e) => report.skipped.push(format!("lock {ns}/{name}: {e}")),
        }
    }
    Ok(())
}

async fn delete_orphan_copies(
    client: &kube::Client,
    copies: Vec<Copy>,
    live: &Live,
    ended: &Live,
    report: &mut GcReport,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    // Only the copies whose session is not known to be live (or just ended: its end deleted
    // them) are looked at.
    for Copy { meta: pod, .. } in copies {
        let ns = pod.namespace.clone();
        let Some(id) = pod.labels.get(labels::SESSION_LABEL).cloned() else {
            continue;
        };
        let key = (ns.clone(), id.clone());
        if pod.deletion_timestamp.is_some() || live.contains(&key) || ended.contains(&key) {
            continue;
        }
        if session_exists(client, &ns, &id).await? {
            continue;
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: (!pod.uid.is_empty()).then(|| pod.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match pods.delete(&pod.name, &dp).await {
            Ok(_) => {
                on_progress(Progress::Deleted {
                    object: format!("pod/{}", pod.name),
                });
                report.deleted.push(format!("{ns} pod/{}", pod.name));
            }
            Err(e) if is_not_found(&e) || is_conflict(&e) => {}
            Err(e) => return Err(Error::from_kube(e, "delete", "pods")),
        }
    }
    Ok(())
}
