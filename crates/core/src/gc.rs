//! gc: end expired sessions and put back whatever a dead session left behind. Safe to run from
//! many machines at once: every decision is re-checked right before acting, every write is
//! pinned (resourceVersion / uid preconditions, or the lock fence), and NotFound or Conflict
//! from a racing gc just means someone else did it.
//!
//! 1. Session ConfigMaps whose `expires` passed, or (`run` sessions) whose heartbeat is older
//!    than the lease, are ended through `session::end` (restore, copy pod, lock, ConfigMap).
//! 2. Locks whose holder session no longer exists: fenced, workload restored, released.
//! 3. Workloads still annotated `scaled-down-by` a session that no longer exists and holds no
//!    lock (the lock was garbage-collected with its session): restored from the annotation.
//! 4. KEDA ScaledObjects paused by a session that no longer exists: unpaused.
//! 5. Copy pods whose session no longer exists: deleted.
//!
//! Requests when nothing is to be done (issue 11): one LIST of our ConfigMaps (sessions and
//! locks, by the managed-by label), one metadata-only LIST per scalable kind and of the KEDA
//! ScaledObjects (the annotations of step 3 and 4 can only be found by reading every object:
//! there are no selectors on annotations), and one LIST of copy pods. Each LIST is decoded item
//! by item into the fields read here (`crate::list`). GETs happen only for candidates.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, Preconditions};
use serde::{Deserialize, Serialize};

use crate::error::{is_conflict, is_not_found, Error};
use crate::labels::{self, Role, SCALED_DOWN_BY_ANNOTATION};
use crate::list::{self, ConfigMapLite, Meta, MetaOnly, PodLite};
use crate::scale_down::{self, restore_workload, RestoreOutcome, ScaleKind, ScaleTarget};
use crate::session::{self, Progress, ProgressFn};
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
    /// ScaledObjects unpaused outside `session::end`.
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
    let (live, ended) =
        end_expired_sessions(client, &ours.sessions, &mut report, on_progress).await?;
    release_orphan_locks(client, &ours.locks, &live, &ended, &mut report, on_progress).await?;
    drop(ours);
    restore_annotated(client, namespace, &live, &mut report, on_progress).await?;
    unpause_orphan_keda(client, namespace, &live, &mut report, on_progress).await?;
    delete_orphan_copies(client, namespace, &live, &mut report, on_progress).await?;
    Ok(report)
}

fn config_maps(client: &kube::Client, namespace: Option<&str>) -> Api<ConfigMap> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
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
    let selector = format!("{}={}", labels::MANAGED_BY_LABEL, labels::MANAGED_BY_VALUE);
    list::for_each(
        &config_maps(client, namespace),
        client,
        Some(&selector),
        |cm: ConfigMapLite| match cm.metadata.labels.get(labels::ROLE_LABEL) {
            Some(r) if r == Role::Session.as_str() => ours.sessions.push(cm),
            Some(r) if r == Role::Lock.as_str() => ours.locks.push(cm),
            _ => {}
        },
    )
    .await
    .map_err(|e| Error::from_kube(e, "list", "configmaps"))?;
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

/// Ends the lapsed sessions; returns the live ones and those it ended.
async fn end_expired_sessions(
    client: &kube::Client,
    cms: &[ConfigMapLite],
    report: &mut GcReport,
    on_progress: &ProgressFn,
) -> Result<(Live, Live), Error> {
    let now = clock::now();
    let mut live = Live::new();
    let mut ended = Live::new();
    for cm in cms {
        let ns = cm.metadata.namespace.clone();
        let Some(id) = cm.metadata.labels.get(labels::SESSION_LABEL).cloned() else {
            continue;
        };
        let session = match session::session_from_config_map(&cm.to_config_map()) {
            Ok(s) => s,
            Err(e) => {
                // Unreadable: we cannot know it expired; leave it and everything it holds.
                report.skipped.push(e.to_string());
                live.insert((ns, id));
                continue;
            }
        };
        if !session.has_lapsed(now) {
            live.insert((ns, id));
            continue;
        }
        match session::end(client, &ns, &id, on_progress).await {
            Ok(_) => {
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
            Ok(()) => report.restored.push(format!(
                "{ns} {}/{} (lock of dead session {holder})",
                record.workload_kind.to_ascii_lowercase(),
                record.workload_name
            )),
            Err(e) => report.skipped.push(format!("lock {ns}/{name}: {e}")),
        }
    }
    Ok(())
}

async fn restore_annotated(
    client: &kube::Client,
    namespace: Option<&str>,
    live: &Live,
    report: &mut GcReport,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    for kind in ScaleKind::ALL {
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &kind.resource()),
            None => Api::all_with(client.clone(), &kind.resource()),
        };
        // Metadata is all we read: only the annotated ones are kept.
        let mut annotated: Vec<Meta> = Vec::new();
        let listed = list::for_each(&api, client, None, |o: MetaOnly| {
            if o.metadata
                .annotations
                .contains_key(SCALED_DOWN_BY_ANNOTATION)
            {
                annotated.push(o.metadata);
            }
        })
        .await;
        match listed {
            Ok(()) => {}
            // Argo Rollouts not installed.
            Err(e) if is_not_found(&e) => continue,
            Err(e) => {
                report.skipped.push(format!(
                    "could not list {}: {}",
                    kind.resource_name(),
                    Error::from_kube(e, "list", &kind.resource_name())
                ));
                continue;
            }
        }
        for obj in annotated {
            let id = obj.annotations[SCALED_DOWN_BY_ANNOTATION].clone();
            let ns = obj.namespace.clone();
            if live.contains(&(ns.clone(), id.clone())) || session_exists(client, &ns, &id).await? {
                continue;
            }
            let target = ScaleTarget {
                kind,
                name: obj.name.clone(),
                namespace: ns.clone(),
                uid: obj.uid.clone(),
            };
            // Any lock on this workload (still the dead session's because step 2 could not
            // fence it, or a new session's that is about to re-annotate) or an unreadable one:
            // its holder decides, not us.
            if lock::read(client, &ns, &target.key().lock_name())
                .await
                .map_or(true, |l| l.is_some())
            {
                continue;
            }
            match restore_workload(client, &target, &id, None, on_progress).await {
                Ok(RestoreOutcome::Restored { to }) => report.restored.push(format!(
                    "{ns} {} -> {to} (annotation of dead session {id})",
                    target.workload_field()
                )),
                Ok(_) => {}
                Err(e) => report.skipped.push(format!("{}: {e}", target.describe())),
            }
        }
    }
    Ok(())
}

async fn unpause_orphan_keda(
    client: &kube::Client,
    namespace: Option<&str>,
    live: &Live,
    report: &mut GcReport,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    let resource = scale_down::scaled_object_resource();
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let objects: Vec<Meta> = match list::collect::<_, MetaOnly>(&api, client, None).await {
        Ok(o) => o.into_iter().map(|o| o.metadata).collect(),
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => {
            report
                .skipped
                .push(format!("could not list scaledobjects.keda.sh: {e}"));
            return Ok(());
        }
    };
    let mut namespaces: Vec<String> = Vec::new();
    for so in &objects {
        let ns = so.namespace.clone();
        if let Some(by) = so.annotations.get(scale_down::KEDA_PAUSED_BY_ANNOTATION) {
            if !live.contains(&(ns.clone(), by.clone()))
                && !session_exists(client, &ns, by).await?
                && !namespaces.contains(&ns)
            {
                namespaces.push(ns);
            }
        }
    }
    for ns in namespaces {
        // Re-checked per object by the predicate; a session created meanwhile has a ConfigMap.
        let dead: HashSet<String> = objects
            .iter()
            .filter(|so| so.namespace == ns)
            .filter_map(|so| {
                so.annotations
                    .get(scale_down::KEDA_PAUSED_BY_ANNOTATION)
                    .cloned()
            })
            .filter(|by| !live.contains(&(ns.clone(), by.clone())))
            .collect();
        let mut really_dead = HashSet::new();
        for by in dead {
            if !session_exists(client, &ns, &by).await? {
                really_dead.insert(by);
            }
        }
        let unpaused =
            scale_down::unpause_keda(client, &ns, &|by| really_dead.contains(by)).await?;
        for so in unpaused {
            on_progress(Progress::Info(format!(
                "unpaused KEDA ScaledObject {ns}/{so}"
            )));
            report.unpaused.push(format!("{ns} scaledobject/{so}"));
        }
    }
    Ok(())
}

async fn delete_orphan_copies(
    client: &kube::Client,
    namespace: Option<&str>,
    live: &Live,
    report: &mut GcReport,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    let api: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // Only the copies whose session is not known to be live are kept.
    let mut candidates: Vec<Meta> = Vec::new();
    list::for_each(
        &api,
        client,
        Some(&labels::role_selector(Role::Copy)),
        |pod: PodLite| {
            let m = pod.metadata;
            let live_session = m
                .labels
                .get(labels::SESSION_LABEL)
                .is_some_and(|id| live.contains(&(m.namespace.clone(), id.clone())));
            if m.deletion_timestamp.is_none() && !live_session {
                candidates.push(m);
            }
        },
    )
    .await
    .map_err(|e| Error::from_kube(e, "list", "pods"))?;
    for pod in candidates {
        let ns = pod.namespace.clone();
        let Some(id) = pod.labels.get(labels::SESSION_LABEL).cloned() else {
            continue;
        };
        if live.contains(&(ns.clone(), id.clone())) || session_exists(client, &ns, &id).await? {
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
