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

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Preconditions};
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::error::{is_conflict, is_not_found, Error};
use crate::labels::{self, Role, SCALED_DOWN_BY_ANNOTATION};
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

pub async fn gc(
    client: &kube::Client,
    namespace: Option<&str>,
    on_progress: &ProgressFn,
) -> Result<GcReport, Error> {
    let mut report = GcReport::default();
    let live = end_expired_sessions(client, namespace, &mut report, on_progress).await?;
    release_orphan_locks(client, namespace, &live, &mut report, on_progress).await?;
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

async fn list_all<K>(api: &Api<K>, selector: Option<&str>) -> Result<Vec<K>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut lp = ListParams::default().limit(500);
    if let Some(s) = selector {
        lp = lp.labels(s);
    }
    let mut out = Vec::new();
    loop {
        let page = api.list(&lp).await?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(out),
        }
    }
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

async fn end_expired_sessions(
    client: &kube::Client,
    namespace: Option<&str>,
    report: &mut GcReport,
    on_progress: &ProgressFn,
) -> Result<Live, Error> {
    let cms = list_all(
        &config_maps(client, namespace),
        Some(&labels::role_selector(Role::Session)),
    )
    .await
    .map_err(|e| Error::from_kube(e, "list", "configmaps"))?;
    let now = clock::now();
    let mut live = Live::new();
    for cm in cms {
        let ns = cm.namespace().unwrap_or_default();
        let Some(id) = cm.labels().get(labels::SESSION_LABEL).cloned() else {
            continue;
        };
        let session = match session::session_from_config_map(&cm) {
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
            Ok(_) => report.ended_sessions.push(format!("{ns}/{id}")),
            Err(e) => {
                report.skipped.push(format!(
                    "session {ns}/{id} expired but could not be ended: {e}"
                ));
                live.insert((ns, id));
            }
        }
    }
    Ok(live)
}

async fn release_orphan_locks(
    client: &kube::Client,
    namespace: Option<&str>,
    live: &Live,
    report: &mut GcReport,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    let locks = lock::list(client, namespace, None)
        .await
        .map_err(|e| Error::from_kube(e, "list", "configmaps"))?;
    for cm in locks {
        let ns = cm.namespace().unwrap_or_default();
        let name = cm.name_any();
        let record = match lock::LockRecord::parse(cm.data.as_ref().unwrap_or(&Default::default()))
        {
            Ok(r) => r,
            Err(e) => {
                report
                    .skipped
                    .push(format!("lock {ns}/{name}: {e}; left untouched"));
                continue;
            }
        };
        let holder = record.holder_session.clone();
        if live.contains(&(ns.clone(), holder.clone()))
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
        let objects = match list_all(&api, None).await {
            Ok(o) => o,
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
        };
        for obj in objects {
            let Some(id) = obj.annotations().get(SCALED_DOWN_BY_ANNOTATION).cloned() else {
                continue;
            };
            let ns = obj.namespace().unwrap_or_default();
            if live.contains(&(ns.clone(), id.clone())) || session_exists(client, &ns, &id).await? {
                continue;
            }
            let target = ScaleTarget {
                kind,
                name: obj.name_any(),
                namespace: ns.clone(),
                uid: obj.uid().unwrap_or_default(),
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
    let objects = match list_all(&api, None).await {
        Ok(o) => o,
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
        let ns = so.namespace().unwrap_or_default();
        if let Some(by) = so.annotations().get(scale_down::KEDA_PAUSED_BY_ANNOTATION) {
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
            .filter(|so| so.namespace().as_deref() == Some(ns.as_str()))
            .filter_map(|so| {
                so.annotations()
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
    let pods = list_all(&api, Some(&labels::role_selector(Role::Copy)))
        .await
        .map_err(|e| Error::from_kube(e, "list", "pods"))?;
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let ns = pod.namespace().unwrap_or_default();
        let Some(id) = pod.labels().get(labels::SESSION_LABEL).cloned() else {
            continue;
        };
        if live.contains(&(ns.clone(), id.clone())) || session_exists(client, &ns, &id).await? {
            continue;
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match pods.delete(&pod.name_any(), &dp).await {
            Ok(_) => {
                on_progress(Progress::Deleted {
                    object: format!("pod/{}", pod.name_any()),
                });
                report.deleted.push(format!("{ns} pod/{}", pod.name_any()));
            }
            Err(e) if is_not_found(&e) || is_conflict(&e) => {}
            Err(e) => return Err(Error::from_kube(e, "delete", "pods")),
        }
    }
    Ok(())
}
