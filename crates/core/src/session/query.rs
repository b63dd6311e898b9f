//! Reading sessions: one LIST per resource kind, whatever the number of sessions, decoded item
//! by item into the few fields we read (`crate::list`).

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::ListParams;
use kube::Api;
use mirrord_copy_lock::LockRecord;
use serde::de::DeserializeOwned;

use super::record::session_from_config_map;
use super::Session;
use crate::error::{is_not_found, Error};
use crate::labels::{self, Role};
use crate::list::{self, ConfigMapLite, PodLite};
use crate::target::TargetRef;

/// Page size of our LISTs.
const PAGE: u32 = 500;

/// Every object matching `selector`, following `continue` tokens.
pub(crate) async fn list_all<K>(
    api: &Api<K>,
    selector: &str,
    resource: &str,
) -> Result<Vec<K>, Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    list_pages(api, selector, resource, PAGE).await
}

async fn list_pages<K>(
    api: &Api<K>,
    selector: &str,
    resource: &str,
    page_size: u32,
) -> Result<Vec<K>, Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().labels(selector).limit(page_size);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api
            .list(&lp)
            .await
            .map_err(|e| Error::from_kube(e, "list", resource))?;
        items.extend(page.items);
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(items),
        }
    }
}

fn config_maps(client: &kube::Client, namespace: Option<&str>) -> Api<ConfigMap> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// One session ConfigMap, read from a LIST: parsed, or reported and skipped.
fn parse_session(cm: &ConfigMapLite) -> Option<Session> {
    match session_from_config_map(&cm.to_config_map()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    }
}

/// The session ConfigMaps of `namespace` (all namespaces if `None`), parsed. Malformed ones
/// are skipped with a log line: they are reported, never acted upon. One LIST, decoded item by
/// item (`crate::list`), so memory holds the parsed sessions and never the whole response.
pub(crate) async fn sessions_only(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Result<Vec<Session>, Error> {
    let mut sessions = Vec::new();
    list::for_each(
        &config_maps(client, namespace),
        client,
        Some(&labels::role_selector(Role::Session)),
        |cm: ConfigMapLite| sessions.extend(parse_session(&cm)),
    )
    .await
    .map_err(|e| Error::from_kube(e, "list", "configmaps"))?;
    Ok(sessions)
}

/// Every live session in `namespace` (or all namespaces), with its copy pod's phase, sorted by
/// namespace then target. Exactly one LIST of session ConfigMaps and one of copy Pods.
pub async fn list(client: &kube::Client, namespace: Option<&str>) -> Result<Vec<Session>, Error> {
    let mut sessions = sessions_only(client, namespace).await?;
    fill_phases(client, namespace, &mut sessions).await?;
    sort_sessions(&mut sessions);
    Ok(sessions)
}

/// The copy pods' phases, from one LIST of copy pods.
async fn fill_phases(
    client: &kube::Client,
    namespace: Option<&str>,
    sessions: &mut [Session],
) -> Result<(), Error> {
    let pods: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut phases: HashMap<(String, String), String> = HashMap::new();
    list::for_each(
        &pods,
        client,
        Some(&labels::role_selector(Role::Copy)),
        |p: PodLite| {
            let phase = if p.metadata.deletion_timestamp.is_some() {
                "Terminating".to_string()
            } else {
                p.status.phase.unwrap_or_else(|| "Pending".into())
            };
            phases.insert((p.metadata.namespace, p.metadata.name), phase);
        },
    )
    .await
    .map_err(|e| Error::from_kube(e, "list", "pods"))?;
    for s in sessions.iter_mut() {
        s.copy_phase = phases
            .get(&(s.namespace.clone(), s.copy_pod.clone()))
            .cloned();
    }
    Ok(())
}

/// A workload held by the scale-down lock of a session that no longer exists (its ConfigMap
/// deleted by hand, or its end failed before restoring): nobody will restore it but `gc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stranded {
    /// Namespace of the workload and its lock.
    pub namespace: String,
    /// "deployment/x".
    pub workload: String,
    /// The session the lock names.
    pub session: String,
}

/// Every ConfigMap of ours in `namespace` (or all namespaces), sessions and locks, from one
/// LIST by the managed-by label, handed to `each` with its role as it is decoded.
pub(crate) async fn for_each_ours(
    client: &kube::Client,
    namespace: Option<&str>,
    mut each: impl FnMut(Role, ConfigMapLite),
) -> Result<(), Error> {
    let selector = format!("{}={}", labels::MANAGED_BY_LABEL, labels::MANAGED_BY_VALUE);
    list::for_each(
        &config_maps(client, namespace),
        client,
        Some(&selector),
        |cm: ConfigMapLite| match cm.metadata.labels.get(labels::ROLE_LABEL) {
            Some(r) if r == Role::Session.as_str() => each(Role::Session, cm),
            Some(r) if r == Role::Lock.as_str() => each(Role::Lock, cm),
            _ => {}
        },
    )
    .await
    .map_err(|e| Error::from_kube(e, "list", "configmaps"))
}

/// What `status` shows: the sessions (sorted as [`list`]) and the stranded workloads.
#[derive(Debug, Clone, Default)]
pub struct Overview {
    /// The live sessions; `copy_phase` filled only when asked for.
    pub sessions: Vec<Session>,
    /// Workloads held by the lock of a session that no longer exists.
    pub stranded: Vec<Stranded>,
}

/// The sessions of `namespace` (or all namespaces) and, from the same LIST (our ConfigMaps by
/// the managed-by label: sessions and locks), the workloads whose lock names a session that is
/// not there. With `phases`, one more LIST, of copy pods.
pub async fn overview(
    client: &kube::Client,
    namespace: Option<&str>,
    phases: bool,
) -> Result<Overview, Error> {
    let mut sessions = Vec::new();
    let mut locks: Vec<(String, LockRecord)> = Vec::new();
    for_each_ours(client, namespace, |role, cm| match role {
        Role::Session => sessions.extend(parse_session(&cm)),
        // A malformed lock is gc's to report.
        Role::Lock => {
            if let Ok(record) = LockRecord::parse(&cm.data) {
                locks.push((cm.metadata.namespace, record));
            }
        }
        Role::Copy => {}
    })
    .await?;
    let live: HashSet<(&str, &str)> = sessions
        .iter()
        .map(|s| (s.namespace.as_str(), s.id.as_str()))
        .collect();
    let mut stranded: Vec<Stranded> = locks
        .iter()
        .filter(|(ns, r)| !live.contains(&(ns.as_str(), r.holder_session.as_str())))
        .map(|(ns, r)| Stranded {
            namespace: ns.clone(),
            workload: format!(
                "{}/{}",
                r.workload_kind.to_ascii_lowercase(),
                r.workload_name
            ),
            session: r.holder_session.clone(),
        })
        .collect();
    stranded.sort_by(|a, b| (&a.namespace, &a.workload).cmp(&(&b.namespace, &b.workload)));
    if phases {
        fill_phases(client, namespace, &mut sessions).await?;
    }
    sort_sessions(&mut sessions);
    Ok(Overview { sessions, stranded })
}

pub(crate) fn sort_sessions(sessions: &mut [Session]) {
    sessions.sort_by(|a, b| {
        (&a.namespace, &a.target, &a.created, &a.id).cmp(&(
            &b.namespace,
            &b.target,
            &b.created,
            &b.id,
        ))
    });
}

/// One session by id; `None` if it does not exist (already ended).
pub async fn get(
    client: &kube::Client,
    namespace: &str,
    session_id: &str,
) -> Result<Option<Session>, Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match api.get(&labels::session_config_map_name(session_id)).await {
        Ok(cm) => session_from_config_map(&cm).map(Some),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(Error::from_kube(e, "get", "configmaps")),
    }
}

/// The session whose copy pod is `pod` in `namespace`.
pub async fn find_by_pod(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
) -> Result<Option<Session>, Error> {
    Ok(sessions_only(client, Some(namespace))
        .await?
        .into_iter()
        .find(|s| s.copy_pod == pod))
}

/// The sessions copying `target` in `namespace` (all namespaces if `None`). A target without
/// a container matches every session of that workload, whatever container it named.
pub async fn find_by_target(
    client: &kube::Client,
    namespace: Option<&str>,
    target: &TargetRef,
) -> Result<Vec<Session>, Error> {
    let mut found: Vec<Session> = sessions_only(client, namespace)
        .await?
        .into_iter()
        .filter(|s| target_matches(target, &s.target))
        .collect();
    sort_sessions(&mut found);
    Ok(found)
}

fn target_matches(wanted: &TargetRef, recorded: &str) -> bool {
    let Ok(recorded) = recorded.parse::<TargetRef>() else {
        return false;
    };
    recorded.kind == wanted.kind
        && recorded.name == wanted.name
        && (wanted.container.is_none() || wanted.container == recorded.container)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;

    #[tokio::test]
    async fn list_pages_follows_continue_tokens() {
        if std::env::var_os(fakekube::harness::REAL_CLUSTER_ENV).is_some() {
            return;
        }
        let env = fakekube::harness::TestEnv::new().await;
        let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
        for i in 0..5 {
            let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("cm-{i}"), "labels": {"paged": "yes"}}
            }))
            .unwrap();
            api.create(&Default::default(), &cm).await.unwrap();
        }
        let all = list_pages(&api, "paged=yes", "configmaps", 2)
            .await
            .unwrap();
        let mut names: Vec<String> = all.iter().map(|c| c.name_any()).collect();
        names.sort();
        assert_eq!(names, ["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"]);
        if let Some(fake) = env.fake() {
            let lists = fake
                .requests()
                .iter()
                .filter(|r| r.verb == "list" && r.query.contains("paged"))
                .count();
            assert_eq!(lists, 3);
        }
    }

    #[test]
    fn target_matching_ignores_container_only_when_unspecified() {
        let any: TargetRef = "deploy/x".parse().unwrap();
        let app: TargetRef = "deploy/x/container/app".parse().unwrap();
        assert!(target_matches(&any, "deployment/x"));
        assert!(target_matches(&any, "deployment/x/container/app"));
        assert!(target_matches(&app, "deployment/x/container/app"));
        assert!(!target_matches(&app, "deployment/x"));
        assert!(!target_matches(&any, "statefulset/x"));
        assert!(!target_matches(&any, "garbage"));
    }
}
