//! Target resolution: fetch the object a target names and extract the pod template a copy is
//! made from. A missing target suggests close names; a missing container names the valid ones.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{DynamicObject, ListParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{is_not_found, Error};
use crate::target::{TargetKind, TargetRef};

/// Identity of a Kubernetes object, enough to build an ownerReference or a lock key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadRef {
    /// apiVersion, e.g. "apps/v1".
    pub api_version: String,
    /// Kind, e.g. "Deployment".
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// The object's uid.
    pub uid: String,
    /// The object's namespace.
    pub namespace: String,
}

impl WorkloadRef {
    /// "Deployment default/x": how messages name an object.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A target looked up on the cluster.
#[derive(Debug, Clone)]
pub struct ResolvedTarget {
    /// The target as parsed.
    pub target: TargetRef,
    /// Namespace it was looked up in.
    pub namespace: String,
    /// The pod template the copy is made from (a pod target: its own metadata and spec).
    pub template: PodTemplateSpec,
    /// The object the target names (for a Rollout with a workloadRef: the Rollout itself).
    pub object: WorkloadRef,
    /// That object as JSON, so scale-down can read its owners and replicas.
    pub raw: serde_json::Value,
    /// A StatefulSet's volume claim templates, decoded once (empty for other kinds).
    pub claim_templates: Vec<ClaimTemplate>,
}

/// A StatefulSet's volume claim template, as decoded once by `resolve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimTemplate {
    /// The template's name (the volume name in the pod template).
    pub name: String,
    /// ReadWriteOnce or ReadWriteOncePod (or no mode): only one pod (node) at a time.
    pub exclusive: bool,
}

/// The volume claim templates of a StatefulSet's JSON (`spec.volumeClaimTemplates`); none for
/// other objects.
pub(crate) fn claim_templates(raw: &serde_json::Value) -> Vec<ClaimTemplate> {
    raw["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let name = t["metadata"]["name"].as_str()?.to_string();
            let modes: Vec<&str> = t["spec"]["accessModes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str())
                .collect();
            let exclusive = modes.is_empty()
                || modes
                    .iter()
                    .any(|m| *m == "ReadWriteOnce" || *m == "ReadWriteOncePod");
            Some(ClaimTemplate { name, exclusive })
        })
        .collect()
}

/// Look `target` up in `namespace` and extract its pod template.
pub async fn resolve(
    client: &kube::Client,
    namespace: &str,
    target: &TargetRef,
) -> Result<ResolvedTarget, Error> {
    let (template, object, raw) = match target.kind {
        TargetKind::Pod => {
            let pod: Pod = get_typed(client, namespace, target).await?;
            let mut spec = pod.spec.clone();
            // The StatefulSet controller sets a pod's hostname to the pod's own name: the copy
            // must not claim that identity (its DNS record would shadow the original's).
            if let Some(spec) = spec.as_mut() {
                if spec.hostname.as_deref() == pod.metadata.name.as_deref() {
                    spec.hostname = None;
                }
            }
            let template = PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: pod.metadata.labels.clone(),
                    annotations: pod.metadata.annotations.clone(),
                    ..Default::default()
                }),
                spec,
            };
            typed_parts(template, &pod)?
        }
        TargetKind::Deployment => {
            let d: Deployment = get_typed(client, namespace, target).await?;
            let t = d.spec.as_ref().map(|s| s.template.clone());
            typed_parts(require(t, target)?, &d)?
        }
        TargetKind::StatefulSet => {
            let s: StatefulSet = get_typed(client, namespace, target).await?;
            let t = s.spec.as_ref().map(|s| s.template.clone());
            typed_parts(require(t, target)?, &s)?
        }
        TargetKind::ReplicaSet => {
            let r: ReplicaSet = get_typed(client, namespace, target).await?;
            let t = r.spec.as_ref().and_then(|s| s.template.clone());
            typed_parts(require(t, target)?, &r)?
        }
        TargetKind::Job => {
            let j: Job = get_typed(client, namespace, target).await?;
            let t = j.spec.as_ref().map(|s| s.template.clone());
            typed_parts(require(t, target)?, &j)?
        }
        TargetKind::CronJob => {
            let c: CronJob = get_typed(client, namespace, target).await?;
            let t = c
                .spec
                .job_template
                .spec
                .as_ref()
                .map(|s| s.template.clone());
            typed_parts(require(t, target)?, &c)?
        }
        TargetKind::Rollout => resolve_rollout(client, namespace, target).await?,
    };
    check_container(&template, target, namespace)?;
    let claim_templates = match target.kind {
        TargetKind::StatefulSet => claim_templates(&raw),
        _ => Vec::new(),
    };
    Ok(ResolvedTarget {
        target: target.clone(),
        namespace: namespace.to_string(),
        template,
        object,
        raw,
        claim_templates,
    })
}

type Parts = (PodTemplateSpec, WorkloadRef, serde_json::Value);

fn typed_parts<K>(template: PodTemplateSpec, obj: &K) -> Result<Parts, Error>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let object = WorkloadRef {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        name: obj.name_any(),
        uid: obj.uid().unwrap_or_default(),
        namespace: obj.namespace().unwrap_or_default(),
    };
    let mut raw = serde_json::to_value(obj).map_err(|e| Error::Internal(e.to_string()))?;
    // Typed objects fetched by kube lose apiVersion/kind in serialization only if unset; keep them.
    raw["apiVersion"] = object.api_version.clone().into();
    raw["kind"] = object.kind.clone().into();
    Ok((template, object, raw))
}

fn require(
    template: Option<PodTemplateSpec>,
    target: &TargetRef,
) -> Result<PodTemplateSpec, Error> {
    template.ok_or_else(|| {
        Error::Unsupported(format!("{} has no pod template to copy", target.workload()))
    })
}

async fn get_typed<K>(
    client: &kube::Client,
    namespace: &str,
    target: &TargetRef,
) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.get(&target.name).await {
        Ok(obj) => Ok(obj),
        Err(e) if is_not_found(&e) => Err(not_found(client, namespace, target).await),
        Err(e) => Err(Error::from_kube(e, "get", &target.kind.resource())),
    }
}

/// A Rollout carries its template inline (`spec.template`) or points at a Deployment,
/// ReplicaSet or PodTemplate with `spec.workloadRef`.
async fn resolve_rollout(
    client: &kube::Client,
    namespace: &str,
    target: &TargetRef,
) -> Result<Parts, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &TargetKind::Rollout.api_resource(),
    );
    let rollout = match api.get(&target.name).await {
        Ok(r) => r,
        Err(e) if is_named_not_found(&e) => return Err(not_found(client, namespace, target).await),
        Err(e) => return Err(Error::from_kube(e, "get", &TargetKind::Rollout.resource())),
    };
    let object = WorkloadRef {
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Rollout".into(),
        name: rollout.name_any(),
        uid: rollout.uid().unwrap_or_default(),
        namespace: rollout.namespace().unwrap_or_else(|| namespace.to_string()),
    };
    let raw = serde_json::to_value(&rollout).map_err(|e| Error::Internal(e.to_string()))?;
    let spec = &rollout.data["spec"];
    let template = if let Some(inline) = spec.get("template").filter(|t| !t.is_null()) {
        serde_json::from_value(inline.clone()).map_err(|e| {
            Error::Unsupported(format!(
                "{}: malformed spec.template: {e}",
                target.workload()
            ))
        })?
    } else if let Some(workload_ref) = spec.get("workloadRef").filter(|w| !w.is_null()) {
        referenced_template(client, namespace, target, workload_ref).await?
    } else {
        return Err(Error::Unsupported(format!(
            "{} has neither spec.template nor spec.workloadRef",
            target.workload()
        )));
    };
    Ok((template, object, raw))
}

async fn referenced_template(
    client: &kube::Client,
    namespace: &str,
    target: &TargetRef,
    workload_ref: &serde_json::Value,
) -> Result<PodTemplateSpec, Error> {
    let kind = workload_ref["kind"].as_str().unwrap_or_default();
    let name = workload_ref["name"].as_str().unwrap_or_default();
    let missing = |what: &str| Error::TargetNotFound {
        kind: format!("{what} (spec.workloadRef of {})", target.workload()),
        name: name.to_string(),
        namespace: namespace.to_string(),
        suggestions: vec![],
    };
    match kind {
        "Deployment" => {
            let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
            match api.get(name).await {
                Ok(d) => d
                    .spec
                    .map(|s| s.template)
                    .ok_or_else(|| Error::Unsupported(format!("deployment/{name} has no spec"))),
                Err(e) if is_not_found(&e) => Err(missing("deployment")),
                Err(e) => Err(Error::from_kube(e, "get", "deployments.apps")),
            }
        }
        "ReplicaSet" => {
            let api: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
            match api.get(name).await {
                Ok(r) => r.spec.and_then(|s| s.template).ok_or_else(|| {
                    Error::Unsupported(format!("replicaset/{name} has no pod template"))
                }),
                Err(e) if is_not_found(&e) => Err(missing("replicaset")),
                Err(e) => Err(Error::from_kube(e, "get", "replicasets.apps")),
            }
        }
        "PodTemplate" => {
            let api: Api<k8s_openapi::api::core::v1::PodTemplate> =
                Api::namespaced(client.clone(), namespace);
            match api.get(name).await {
                Ok(p) => p.template.ok_or_else(|| {
                    Error::Unsupported(format!("podtemplate/{name} has no template"))
                }),
                Err(e) if is_not_found(&e) => Err(missing("podtemplate")),
                Err(e) => Err(Error::from_kube(e, "get", "podtemplates")),
            }
        }
        other => Err(Error::Unsupported(format!(
            "{}: spec.workloadRef of kind \"{other}\" is not supported (Deployment, ReplicaSet or PodTemplate)",
            target.workload()
        ))),
    }
}

/// A 404 naming an object (as opposed to a 404 for a resource type the server does not serve).
fn is_named_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s)
        if s.code == 404 && s.details.as_ref().is_some_and(|d| !d.name.is_empty()))
}

/// Build the TargetNotFound error, with same-kind names from the namespace that look close.
async fn not_found(client: &kube::Client, namespace: &str, target: &TargetRef) -> Error {
    // Suggestions are a courtesy: if we may not list, we just don't suggest.
    let names = list_names(client, namespace, target.kind)
        .await
        .unwrap_or_default();
    Error::TargetNotFound {
        kind: target.kind.to_string(),
        name: target.name.clone(),
        namespace: namespace.to_string(),
        suggestions: suggest(&target.name, &names),
    }
}

async fn list_names(
    client: &kube::Client,
    namespace: &str,
    kind: TargetKind,
) -> Result<Vec<String>, kube::Error> {
    let lp = ListParams::default().limit(500);
    async fn names<K>(
        client: &kube::Client,
        ns: &str,
        lp: &ListParams,
    ) -> Result<Vec<String>, kube::Error>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        Ok(api
            .list(lp)
            .await?
            .items
            .iter()
            .map(|o| o.name_any())
            .collect())
    }
    match kind {
        TargetKind::Pod => names::<Pod>(client, namespace, &lp).await,
        TargetKind::Deployment => names::<Deployment>(client, namespace, &lp).await,
        TargetKind::StatefulSet => names::<StatefulSet>(client, namespace, &lp).await,
        TargetKind::ReplicaSet => names::<ReplicaSet>(client, namespace, &lp).await,
        TargetKind::Job => names::<Job>(client, namespace, &lp).await,
        TargetKind::CronJob => names::<CronJob>(client, namespace, &lp).await,
        TargetKind::Rollout => {
            let api: Api<DynamicObject> = Api::namespaced_with(
                client.clone(),
                namespace,
                &TargetKind::Rollout.api_resource(),
            );
            Ok(api
                .list(&lp)
                .await?
                .items
                .iter()
                .map(|o| o.name_any())
                .collect())
        }
    }
}

/// Names close to `wanted`: a prefix/substring either way, or a small edit distance.
/// Best first, at most five.
pub(crate) fn suggest(wanted: &str, candidates: &[String]) -> Vec<String> {
    let budget = (wanted.len() / 3).max(2);
    let mut scored: Vec<(usize, &String)> = candidates
        .iter()
        .filter_map(|c| {
            let distance = edit_distance(wanted, c);
            let related = c.starts_with(wanted)
                || wanted.starts_with(c.as_str())
                || c.contains(wanted)
                || wanted.contains(c.as_str());
            (related || distance <= budget).then_some((distance, c))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(5).map(|(_, c)| c.clone()).collect()
}

/// Levenshtein distance over bytes (names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The names of a template's containers (what `/container/NAME` may name).
pub fn container_names(template: &PodTemplateSpec) -> Vec<String> {
    template
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

fn check_container(
    template: &PodTemplateSpec,
    target: &TargetRef,
    namespace: &str,
) -> Result<(), Error> {
    let Some(wanted) = &target.container else {
        return Ok(());
    };
    let names = container_names(template);
    if names.iter().any(|n| n == wanted) {
        return Ok(());
    }
    Err(Error::ContainerNotFound {
        workload: target.workload(),
        name: wanted.clone(),
        namespace: namespace.to_string(),
        valid: names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn suggests_close_and_prefix_names() {
        let names: Vec<String> = ["py-serv-deployment", "queue-worker", "db", "checkout"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(suggest("py-serv", &names), vec!["py-serv-deployment"]);
        assert_eq!(suggest("queue-wroker", &names), vec!["queue-worker"]);
        assert_eq!(suggest("checkuot", &names), vec!["checkout"]);
        assert!(suggest("zzzzzzzzzz", &names).is_empty());
    }

    #[test]
    fn missing_container_names_the_valid_ones() {
        let template: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "app"}, {"name": "sidecar"}]}
        }))
        .unwrap();
        let target: TargetRef = "deploy/x/container/nope".parse().unwrap();
        let err = check_container(&template, &target, "default").unwrap_err();
        assert_eq!(err.exit_code(), 3);
        let text = err.to_string();
        assert!(
            text.contains("\"nope\"") && text.contains("app, sidecar"),
            "{text}"
        );
        let ok: TargetRef = "deploy/x/container/sidecar".parse().unwrap();
        check_container(&template, &ok, "default").unwrap();
    }
}
