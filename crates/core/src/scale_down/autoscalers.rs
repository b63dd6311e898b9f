//! Autoscalers that target the workload. An HPA does nothing while its target is at zero
//! replicas (scaling is disabled at zero), so it only earns a warning. A KEDA ScaledObject
//! does scale from zero and would fight the session: it is paused with KEDA's
//! `autoscaling.keda.sh/paused-replicas: "0"`, recording the previous value on the
//! ScaledObject itself so restore works from any machine, with or without our ConfigMaps.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::ResourceExt;
use serde_json::{json, Value};

use super::pause::Switch;
use super::workload::{ScaleKind, ScaleTarget};
use crate::error::{is_not_found, Error};
use crate::labels::KEDA_PAUSED_REPLICAS_ANNOTATION;

/// Which session paused this ScaledObject.
pub const KEDA_PAUSED_BY_ANNOTATION: &str = "mirrord-copy.io/keda-paused-by";
/// The paused-replicas value before we paused it, as JSON (`null` when it had none).
pub(super) const KEDA_PREVIOUS_ANNOTATION: &str = "mirrord-copy.io/keda-previous-paused-replicas";

pub(crate) fn scaled_object_resource() -> ApiResource {
    ApiResource {
        group: "keda.sh".into(),
        version: "v1alpha1".into(),
        api_version: "keda.sh/v1alpha1".into(),
        kind: "ScaledObject".into(),
        plural: "scaledobjects".into(),
    }
}

fn scaled_objects(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &scaled_object_resource())
}

/// Does a scaleTargetRef ({apiVersion, kind, name}) name `target`? KEDA defaults the kind to
/// Deployment.
fn targets(reference: &Value, target: &ScaleTarget) -> bool {
    let kind = reference["kind"].as_str().unwrap_or("Deployment");
    reference["name"].as_str() == Some(target.name.as_str())
        && ScaleKind::parse(kind) == Some(target.kind)
}

/// Names of the HPAs (autoscaling/v2) targeting the workload. A cluster or a token that
/// cannot list them yields an empty list: the warning is a courtesy.
pub(super) async fn hpas(client: &kube::Client, target: &ScaleTarget) -> Vec<String> {
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &target.namespace);
    let Ok(list) = api.list(&ListParams::default()).await else {
        return Vec::new();
    };
    list.items
        .iter()
        .filter(|h| {
            let r = &h.spec.scale_target_ref;
            targets(&json!({"kind": r.kind, "name": r.name}), target)
        })
        .map(|h| h.name_any())
        .collect()
}

/// The KEDA ScaledObjects targeting the workload. Not served (KEDA not installed): none.
pub(super) async fn keda_objects(
    client: &kube::Client,
    target: &ScaleTarget,
) -> Result<Vec<DynamicObject>, Error> {
    match scaled_objects(client, &target.namespace)
        .list(&ListParams::default())
        .await
    {
        Ok(list) => Ok(list
            .items
            .into_iter()
            .filter(|so| targets(&so.data["spec"]["scaleTargetRef"], target))
            .collect()),
        Err(e) if is_not_found(&e) => Ok(Vec::new()),
        Err(e) => Err(Error::from_kube(e, "list", "scaledobjects.keda.sh")),
    }
}

/// KEDA's pause: `autoscaling.keda.sh/paused-replicas: "0"`, the way back on the
/// ScaledObject itself.
fn keda_switch() -> Switch {
    Switch {
        resource: scaled_object_resource(),
        qualified: "scaledobjects.keda.sh",
        path: &["metadata", "annotations", KEDA_PAUSED_REPLICAS_ANNOTATION],
        paused: json!("0"),
        by: KEDA_PAUSED_BY_ANNOTATION,
        previous: KEDA_PREVIOUS_ANNOTATION,
        read_by_list: true,
        valid: Value::is_string,
    }
}

/// Pause `objects` (the ScaledObjects targeting the workload, as listed) at 0 for `session`.
/// Idempotent: one we already paused keeps its recorded previous value.
pub(super) async fn pause_keda(
    client: &kube::Client,
    namespace: &str,
    objects: &[DynamicObject],
    session: &str,
) -> Result<Vec<String>, Error> {
    keda_switch()
        .pause(client, namespace, objects, session)
        .await
}

/// Put back what we changed on the ScaledObjects `names` (recorded by the session and its
/// lock before any was paused) whose pausing session satisfies `paused_by`: this session, or
/// any session when restoring through a lock we hold (a dead holder whose place we took may
/// have paused them). No names, no request. After the count: an unpaused ScaledObject at zero
/// would scale from zero itself.
pub(crate) async fn unpause_keda(
    client: &kube::Client,
    namespace: &str,
    names: &[String],
    paused_by: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Vec<String>, Error> {
    keda_switch()
        .unpause(client, namespace, names, paused_by, None)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_target_ref_defaults_to_deployment() {
        let t = ScaleTarget {
            kind: ScaleKind::Deployment,
            name: "w".into(),
            namespace: "n".into(),
            uid: "u".into(),
        };
        assert!(targets(&json!({"name": "w"}), &t));
        assert!(targets(&json!({"kind": "Deployment", "name": "w"}), &t));
        assert!(!targets(&json!({"kind": "StatefulSet", "name": "w"}), &t));
        assert!(!targets(&json!({"name": "other"}), &t));
    }
}
