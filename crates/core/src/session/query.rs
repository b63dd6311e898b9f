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
use super::{Replicas, Runs, Session};
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
    // (namespace, pod) -> (phase, what runs: container and mode)
    type Seen = (String, Option<(String, String)>);
    let mut phases: HashMap<(String, String), Seen> = HashMap::new();
    list::for_each(
        &pods,
        client,
        Some(&labels::role_selector(Role::Copy)),
        |p: PodLite| {
            let phase = p.shown_phase();
            let runs = Runs::annotated(&p.metadata.annotations);
            phases.insert((p.metadata.namespace, p.metadata.name), (phase, runs));
        },
    )
    .await
    .map_err(|e| Error::from_kube(e, "list", "pods"))?;
    for s in sessions.iter_mut() {
        let Some((phase, runs)) = phases.remove(&(s.namespace.clone(), s.copy_pod.clone())) else {
            continue;
        };
        s.copy_phase = Some(phase);
        s.runs = runs.map(|(container, mode)| Runs::new(container, mode, &s.options));
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
    /// The copy pod the lock names (empty if the session died before creating it).
    pub copy_pod: String,
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

/// A session ConfigMap of ours whose record does not read back (corrupt, edited by hand, or
/// written by a build that records what this one does not know): nothing decides from it by
/// itself (gc cannot tell whether it expired), but naming its copy pod to `delete` ends it
/// through its objects (labels, owner references), the count coming from its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// Namespace of the session.
    pub namespace: String,
    /// The session id (its label).
    pub id: String,
    /// Its copy pod, where the record still names one.
    pub copy_pod: Option<String>,
    /// Why it does not read.
    pub why: String,
}

impl Unreadable {
    pub(crate) fn of(cm: &ConfigMapLite, why: &Error) -> Option<Unreadable> {
        let id = cm.metadata.labels.get(labels::SESSION_LABEL)?.clone();
        Some(Unreadable {
            namespace: cm.metadata.namespace.clone(),
            id,
            copy_pod: cm
                .data
                .get(labels::DATA_COPY_POD)
                .filter(|p| !p.is_empty())
                .cloned(),
            why: why.to_string(),
        })
    }

    /// The command that ends it: `delete` of its copy pod.
    pub fn remedy(&self) -> String {
        match &self.copy_pod {
            Some(pod) => format!(
                "`kubectl mirrord-copy delete {pod} -n {}` ends it through its labels and owner references (a scaled-down workload gets the count its lock records)",
                self.namespace
            ),
            None => format!(
                "it names no copy pod; delete its copy pod (label mirrord-copy.io/session={}) with `kubectl mirrord-copy delete POD -n {}`",
                self.id, self.namespace
            ),
        }
    }
}

/// What `status` shows: the sessions (sorted as [`list`]) and the stranded workloads.
#[derive(Debug, Clone, Default)]
pub struct Overview {
    /// The live sessions; `copy_phase` filled only when asked for.
    pub sessions: Vec<Session>,
    /// Workloads held by the lock of a session that no longer exists.
    pub stranded: Vec<Stranded>,
    /// Session ConfigMaps of ours that do not read back.
    pub unreadable: Vec<Unreadable>,
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
    let mut unreadable = Vec::new();
    let mut locks: Vec<(String, LockRecord)> = Vec::new();
    for_each_ours(client, namespace, |role, cm| match role {
        Role::Session => match session_from_config_map(&cm.to_config_map()) {
            Ok(s) => sessions.push(s),
            Err(e) => unreadable.extend(Unreadable::of(&cm, &e)),
        },
        // A malformed lock is gc's to report.
        Role::Lock => {
            if let Ok(record) = LockRecord::parse(&cm.data) {
                locks.push((cm.metadata.namespace, record));
            }
        }
        Role::Copy => {}
    })
    .await?;
    // Each session's two counts, from the lock it holds (listed with it).
    for s in sessions.iter_mut().filter(|s| s.scale_down) {
        s.replicas = locks
            .iter()
            .find(|(ns, r)| *ns == s.namespace && r.holder_session == s.id)
            .map(|(_, r)| Replicas {
                original: r.original_replicas,
                scaled_to: r.target_replicas,
            });
    }
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
            copy_pod: r.copy_pod.clone(),
        })
        .collect();
    stranded.sort_by(|a, b| (&a.namespace, &a.workload).cmp(&(&b.namespace, &b.workload)));
    if phases {
        fill_phases(client, namespace, &mut sessions).await?;
    }
    sort_sessions(&mut sessions);
    unreadable.sort_by(|a: &Unreadable, b| (&a.namespace, &a.id).cmp(&(&b.namespace, &b.id)));
    Ok(Overview {
        sessions,
        stranded,
        unreadable,
    })
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

/// The session whose copy pod is `pod` in `namespace`, when its record does not read back
/// (so [`find_by_pod`] cannot see it): the session ConfigMap whose `copyPod` names the pod,
/// else the one the pod itself names, by its session label and its controller ownerReference
/// (the uid must match: objects are ours by their owner references, not by their names).
pub async fn find_unreadable_by_pod(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
) -> Result<Option<Unreadable>, Error> {
    let mut unreadable: Vec<(ConfigMapLite, Unreadable)> = Vec::new();
    list::for_each(
        &config_maps(client, Some(namespace)),
        client,
        Some(&labels::role_selector(Role::Session)),
        |cm: ConfigMapLite| {
            if let Err(e) = session_from_config_map(&cm.to_config_map()) {
                if let Some(u) = Unreadable::of(&cm, &e) {
                    unreadable.push((cm, u));
                }
            }
        },
    )
    .await
    .map_err(|e| Error::from_kube(e, "list", "configmaps"))?;
    if let Some((_, u)) = unreadable
        .iter()
        .find(|(_, u)| u.copy_pod.as_deref() == Some(pod))
    {
        return Ok(Some(u.clone()));
    }
    if unreadable.is_empty() {
        return Ok(None);
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let found = match pods.get(pod).await {
        Ok(p) => p,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(Error::from_kube(e, "get", "pods")),
    };
    let copy_labels = found.metadata.labels.clone().unwrap_or_default();
    let ours = copy_labels
        .get(labels::MANAGED_BY_LABEL)
        .map(String::as_str)
        == Some(labels::MANAGED_BY_VALUE)
        && copy_labels.get(labels::ROLE_LABEL).map(String::as_str) == Some(Role::Copy.as_str());
    let Some(id) = copy_labels.get(labels::SESSION_LABEL).filter(|_| ours) else {
        return Ok(None);
    };
    let owners = found.metadata.owner_references.unwrap_or_default();
    Ok(unreadable.into_iter().find_map(|(cm, u)| {
        let owned = owners.iter().any(|o| {
            o.controller == Some(true) && o.kind == "ConfigMap" && o.uid == cm.metadata.uid
        });
        (&u.id == id && owned).then(|| Unreadable {
            copy_pod: Some(pod.to_string()),
            ..u
        })
    }))
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
