//! Which object a scale-down acts on, and reading / writing its "replica count" (a CronJob's
//! count is 1 when it runs, 0 when suspended). Every write that must not clobber someone
//! else's change pins the resourceVersion read just before (a failed pin is a 409 Conflict).

use kube::api::{Api, ApiResource, DynamicObject, Patch};
use kube::ResourceExt;
use serde_json::{json, Value};

use crate::error::{is_not_found, Error};
use crate::resolve::ResolvedTarget;
use crate::target::Scaling;
use crate::target::TargetKind;
use mirrord_copy_lock::WorkloadKey;

/// Kinds a scale-down acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// argoproj.io/v1alpha1 Rollout.
    Rollout,
    /// Suspended instead of scaled.
    CronJob,
}

impl ScaleKind {
    pub(crate) const ALL: [ScaleKind; 5] = [
        ScaleKind::Deployment,
        ScaleKind::StatefulSet,
        ScaleKind::ReplicaSet,
        ScaleKind::Rollout,
        ScaleKind::CronJob,
    ];

    /// The target kind whose facts ([`crate::target::KINDS`]) this one is.
    pub(crate) fn target_kind(self) -> TargetKind {
        match self {
            ScaleKind::Deployment => TargetKind::Deployment,
            ScaleKind::StatefulSet => TargetKind::StatefulSet,
            ScaleKind::ReplicaSet => TargetKind::ReplicaSet,
            ScaleKind::Rollout => TargetKind::Rollout,
            ScaleKind::CronJob => TargetKind::CronJob,
        }
    }

    pub(crate) fn api_kind(self) -> &'static str {
        self.target_kind().kind()
    }

    /// How it is held at the count set: its replicas, or (a CronJob) its suspend switch.
    pub(crate) fn scaling(self) -> Scaling {
        self.target_kind().info().scaling
    }

    /// Lower-case kind, as in "deployment/x" and the lock name.
    pub(crate) fn lower(self) -> &'static str {
        self.target_kind().as_str()
    }

    /// From an API kind ("Deployment") or its lower-case form ("deployment").
    pub fn parse(kind: &str) -> Option<ScaleKind> {
        ScaleKind::ALL
            .into_iter()
            .find(|k| k.api_kind() == kind || k.lower() == kind)
    }

    /// The API resource, for dynamic API calls.
    pub fn resource(self) -> ApiResource {
        self.target_kind().api_resource()
    }

    /// "deployments.apps", for permission errors.
    pub(crate) fn resource_name(self) -> String {
        self.target_kind().resource()
    }
}

/// The workload a scale-down acts on and locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleTarget {
    /// Its kind.
    pub kind: ScaleKind,
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its uid when decided on: a recreated workload is another object.
    pub uid: String,
}

impl ScaleTarget {
    /// The key of its lock.
    pub fn key(&self) -> WorkloadKey {
        WorkloadKey::new(self.kind.lower(), &self.name)
    }

    /// "deployment/x": the session ConfigMap's `workload` value.
    pub(crate) fn workload_field(&self) -> String {
        format!("{}/{}", self.kind.lower(), self.name)
    }

    /// "Deployment default/x": how messages name it.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.kind.api_kind(), self.namespace, self.name)
    }

    /// An API handle for its kind in its namespace.
    pub fn api(&self, client: &kube::Client) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), &self.namespace, &self.kind.resource())
    }
}

/// A workload as read for a decision: the object (annotations, uid, resourceVersion) and its
/// count read at that same resourceVersion.
#[derive(Debug, Clone)]
pub(super) struct Observed {
    pub object: DynamicObject,
    pub replicas: i32,
    pub resource_version: String,
}

impl Observed {
    pub(super) fn uid(&self) -> String {
        self.object.uid().unwrap_or_default()
    }

    pub(super) fn annotation(&self, key: &str) -> Option<&str> {
        self.object.annotations().get(key).map(String::as_str)
    }
}

/// Decide which workload a scale-down of `resolved` acts on.
pub(crate) async fn decide(
    client: &kube::Client,
    resolved: &ResolvedTarget,
) -> Result<ScaleTarget, Error> {
    let ns = resolved.namespace.clone();
    let obj = &resolved.object;
    let direct = |kind| ScaleTarget {
        kind,
        name: obj.name.clone(),
        namespace: ns.clone(),
        uid: obj.uid.clone(),
    };
    match resolved.target.kind {
        TargetKind::Deployment => Ok(direct(ScaleKind::Deployment)),
        TargetKind::StatefulSet => Ok(direct(ScaleKind::StatefulSet)),
        TargetKind::Rollout => Ok(direct(ScaleKind::Rollout)),
        TargetKind::CronJob => Ok(direct(ScaleKind::CronJob)),
        TargetKind::ReplicaSet => match controller_of(&resolved.raw) {
            None => Ok(direct(ScaleKind::ReplicaSet)),
            Some((kind, name)) => match ScaleKind::parse(&kind) {
                Some(k @ (ScaleKind::Deployment | ScaleKind::Rollout)) => {
                    // The owner is scaled and locked, so deployment/x and replicaset/x-<hash>
                    // contend for the same lock.
                    let target = ScaleTarget {
                        kind: k,
                        name,
                        namespace: ns.clone(),
                        uid: String::new(),
                    };
                    let owner = get(client, &target).await?.ok_or_else(|| {
                        Error::Unsupported(format!(
                            "replicaset/{} is owned by {}, which no longer exists; nothing to scale down",
                            obj.name,
                            target.workload_field()
                        ))
                    })?;
                    Ok(ScaleTarget {
                        uid: owner.uid().unwrap_or_default(),
                        ..target
                    })
                }
                _ => Err(Error::Unsupported(format!(
                    "replicaset/{} is controlled by a {kind} ({name}); only ReplicaSets owned by a Deployment or an Argo Rollout, or by nothing, can be scaled down",
                    obj.name
                ))),
            },
        },
        TargetKind::Pod => Err(pod_error(client, &ns, &obj.name, &resolved.raw).await),
        TargetKind::Job => Err(Error::Unsupported(format!(
            "job/{} cannot be scaled down: a Job runs its pods to completion and has no replica count to restore (suspending it deletes its running pods); copy it without --scale-down, or target the CronJob that creates it",
            obj.name
        ))),
    }
}

/// The controller ownerReference (kind, name) of an object as JSON.
fn controller_of(raw: &Value) -> Option<(String, String)> {
    raw["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"].as_bool() == Some(true))
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or_default().to_string(),
                r["name"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// A pod cannot be scaled: name the workload that owns it (pod -> ReplicaSet -> Deployment).
async fn pod_error(client: &kube::Client, ns: &str, pod: &str, raw: &Value) -> Error {
    let suggestion = match controller_of(raw) {
        None => {
            return Error::Unsupported(format!(
                "pod/{pod} cannot be scaled down: it is a bare pod, owned by no workload; copy it without --scale-down"
            ))
        }
        Some((kind, name)) if kind == "ReplicaSet" => {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), ns, &ScaleKind::ReplicaSet.resource());
            let owner = match api.get(&name).await {
                Ok(rs) => serde_json::to_value(&rs)
                    .ok()
                    .and_then(|v| controller_of(&v)),
                Err(_) => None,
            };
            match owner {
                Some((k, n)) => format!("{}/{n}", k.to_ascii_lowercase()),
                None => format!("replicaset/{name}"),
            }
        }
        Some((kind, name)) if kind == "Job" => {
            return Error::Unsupported(format!(
                "pod/{pod} cannot be scaled down: it belongs to job/{name}, and a Job cannot be scaled down; copy it without --scale-down"
            ))
        }
        Some((kind, name)) => format!("{}/{name}", kind.to_ascii_lowercase()),
    };
    Error::Unsupported(format!(
        "pod/{pod} cannot be scaled down on its own (its controller would replace it); it belongs to {suggestion}: target {suggestion} --scale-down instead"
    ))
}

/// The workload, or None if it is gone.
pub(super) async fn get(
    client: &kube::Client,
    target: &ScaleTarget,
) -> Result<Option<DynamicObject>, Error> {
    match target.api(client).get(&target.name).await {
        Ok(o) => Ok(Some(o)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(Error::from_kube(e, "get", &target.kind.resource_name())),
    }
}

/// One merge patch of the workload itself: the count (`Some`; a CronJob: suspended for 0,
/// resumed otherwise) and `annotations` (a `null` value removes the key) written together, so
/// the count and the record of who changed it can never be seen apart. With `pin`, the write
/// only succeeds if the workload is still at that resourceVersion (409 Conflict otherwise).
/// The object as written: its resourceVersion pins the next write without a read.
pub(super) async fn write(
    client: &kube::Client,
    target: &ScaleTarget,
    replicas: Option<i32>,
    annotations: Value,
    pin: Option<&str>,
) -> Result<DynamicObject, kube::Error> {
    let mut patch = json!({"metadata": {"annotations": annotations}});
    match (replicas, target.kind.scaling()) {
        (Some(n), Scaling::Suspend) => patch["spec"] = json!({"suspend": n == 0}),
        (Some(n), _) => patch["spec"] = json!({"replicas": n}),
        (None, _) => {}
    }
    if let Some(rv) = pin {
        patch["metadata"]["resourceVersion"] = json!(rv);
    }
    target
        .api(client)
        .patch(
            &target.name,
            &mirrord_copy_lock::patch_params(),
            &Patch::Merge(&patch),
        )
        .await
}

/// A write to the workload made only while this session provably holds it: `write` gets the
/// resourceVersion at which the workload's `scaled-down-by` annotation was one of `allowed`
/// (`None`: absent), and must pin itself to it. Someone writing in between (a status update
/// too) makes the pin fail with 409: read and check again. Another session's id there means
/// ours was taken over: [`Error::SessionLost`], and nothing is written.
///
/// `known`: the workload as this session last read or wrote it; the first attempt starts
/// from it (no read), and only a failed pin reads again.
pub(super) async fn fenced<F, Fut, T>(
    client: &kube::Client,
    target: &ScaleTarget,
    allowed: &[Option<&str>],
    what: &str,
    mut known: Option<DynamicObject>,
    mut write: F,
) -> Result<T, Error>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    for _ in 0..8 {
        let object = match known.take() {
            Some(o) => o,
            None => get(client, target)
                .await?
                .ok_or_else(|| Error::Vanished(target.describe()))?,
        };
        let holder = object
            .annotations()
            .get(crate::labels::SCALED_DOWN_BY_ANNOTATION)
            .map(String::as_str);
        if !allowed.contains(&holder) {
            return Err(Error::SessionLost(format!(
                "{} is now scaled down by session {}; {what} was not written",
                target.describe(),
                holder.unwrap_or("<none>")
            )));
        }
        match write(object.resource_version().unwrap_or_default()).await {
            Ok(written) => return Ok(written),
            Err(e) if crate::error::is_conflict(&e) => continue,
            Err(e) => return Err(Error::from_kube(e, "patch", &target.kind.resource_name())),
        }
    }
    Err(Error::Contended(format!(
        "{} kept changing while {what} was being written",
        target.describe()
    )))
}

/// A workload read as a whole object: its count is `spec.replicas` at that same
/// resourceVersion (what its /scale reports: defaulted to 1 when absent), a CronJob's 1 or 0
/// by `spec.suspend`.
pub(super) fn observed(kind: ScaleKind, object: DynamicObject) -> Observed {
    let replicas = match kind.scaling() {
        Scaling::Suspend => i32::from(object.data["spec"]["suspend"].as_bool() != Some(true)),
        _ => object.data["spec"]["replicas"]
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .unwrap_or(1),
    };
    Observed {
        resource_version: object.resource_version().unwrap_or_default(),
        object,
        replicas,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_both_spellings() {
        assert_eq!(ScaleKind::parse("Deployment"), Some(ScaleKind::Deployment));
        assert_eq!(ScaleKind::parse("rollout"), Some(ScaleKind::Rollout));
        assert_eq!(ScaleKind::parse("Job"), None);
        assert_eq!(ScaleKind::Rollout.resource_name(), "rollouts.argoproj.io");
    }

    #[test]
    fn controller_reference_is_found() {
        let raw = json!({"metadata": {"ownerReferences": [
            {"kind": "Other", "name": "o"},
            {"kind": "Deployment", "name": "x", "controller": true}
        ]}});
        assert_eq!(
            controller_of(&raw),
            Some(("Deployment".to_string(), "x".to_string()))
        );
        assert_eq!(controller_of(&json!({"metadata": {}})), None);
    }
}
