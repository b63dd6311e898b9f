//! Autoscalers that target the workload. An HPA does nothing while its target is at zero
//! replicas (scaling is disabled at zero), so it only earns a warning. A KEDA ScaledObject
//! does scale from zero and would fight the session: it is paused with KEDA's
//! `autoscaling.keda.sh/paused-replicas: "0"`, recording the previous value on the
//! ScaledObject itself so restore works from any machine, with or without our ConfigMaps.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::ResourceExt;
use serde_json::{json, Value};

use super::workload::{patch_annotations, ScaleKind, ScaleTarget};
use crate::error::{is_conflict, is_not_found, Error};
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

/// Pause `objects` (the ScaledObjects targeting the workload, as listed) at 0 for `session`.
/// Idempotent: one we already paused keeps its recorded previous value.
pub(super) async fn pause_keda(
    client: &kube::Client,
    namespace: &str,
    objects: &[DynamicObject],
    session: &str,
) -> Result<Vec<String>, Error> {
    let api = scaled_objects(client, namespace);
    let mut paused = Vec::new();
    for so in objects {
        let name = so.name_any();
        let mut current = Some(so.clone());
        for _ in 0..8 {
            let Some(so) = current.take() else {
                break; // deleted meanwhile: nothing to pause
            };
            match pause_one(&api, &so, session).await {
                Ok(()) => {
                    paused.push(name.clone());
                    break;
                }
                // KEDA updates its objects too: read again and retry.
                Err(e) if is_conflict(&e) => {
                    current = reread(&api, &name).await?;
                }
                Err(e) if is_not_found(&e) => break,
                Err(e) => return Err(Error::from_kube(e, "patch", "scaledobjects.keda.sh")),
            }
        }
    }
    Ok(paused)
}

/// Read one ScaledObject again, by a LIST on its name: the shipped Roles grant list and patch
/// on ScaledObjects, not get.
async fn reread(api: &Api<DynamicObject>, name: &str) -> Result<Option<DynamicObject>, Error> {
    let lp = ListParams::default().fields(&format!("metadata.name={name}"));
    match api.list(&lp).await {
        Ok(l) => Ok(l.items.into_iter().next()),
        // KEDA uninstalled since: nothing left to put back.
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(Error::from_kube(e, "list", "scaledobjects.keda.sh")),
    }
}

/// Pause one ScaledObject, pinned to the resourceVersion read. Already ours: nothing to do.
/// Paused by another (dead) session: its recorded previous value is carried forward, so the
/// value put back is the one from before any session paused it.
async fn pause_one(
    api: &Api<DynamicObject>,
    so: &DynamicObject,
    session: &str,
) -> Result<(), kube::Error> {
    let annotations = so.annotations();
    let previous = match annotations
        .get(KEDA_PAUSED_BY_ANNOTATION)
        .map(String::as_str)
    {
        Some(by) if by == session => return Ok(()),
        Some(_) => annotations
            .get(KEDA_PREVIOUS_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| Value::Null.to_string()),
        None => annotations
            .get(KEDA_PAUSED_REPLICAS_ANNOTATION)
            .map_or(Value::Null, |v| json!(v))
            .to_string(),
    };
    // One merge patch: the pause and the way back are written together.
    let patch = json!({
        KEDA_PAUSED_REPLICAS_ANNOTATION: "0",
        KEDA_PAUSED_BY_ANNOTATION: session,
        KEDA_PREVIOUS_ANNOTATION: previous,
    });
    patch_annotations(api, &so.name_any(), patch, so.resource_version().as_deref())
        .await
        .map(drop)
}

/// Put back what we changed on the ScaledObjects `names` (recorded by the session and its
/// lock before any was paused) whose pausing session satisfies `paused_by`: this session, or
/// any session when restoring through a lock we hold (a dead holder whose place we took may
/// have paused them). No names, no request.
pub(crate) async fn unpause_keda(
    client: &kube::Client,
    namespace: &str,
    names: &[String],
    paused_by: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Vec<String>, Error> {
    let api = scaled_objects(client, namespace);
    let mut restored = Vec::new();
    for name in names {
        let mut current = reread(&api, name).await?;
        for _ in 0..8 {
            let Some(so) = current.take() else {
                break;
            };
            match unpause_one(&api, &so, paused_by).await {
                Ok(true) => restored.push(name.clone()),
                Ok(false) => {}
                // Changed meanwhile (KEDA, another gc): read again and decide again.
                Err(e) if is_conflict(&e) => {
                    current = reread(&api, name).await?;
                    continue;
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(Error::from_kube(e, "patch", "scaledobjects.keda.sh")),
            }
            break;
        }
    }
    Ok(restored)
}

/// Put back the recorded paused-replicas value (none: the annotation is removed and KEDA
/// resumes) if `paused_by` accepts the pausing session. Pinned to what we read.
async fn unpause_one(
    api: &Api<DynamicObject>,
    so: &DynamicObject,
    paused_by: &(dyn Fn(&str) -> bool + Sync),
) -> Result<bool, kube::Error> {
    let annotations = so.annotations();
    let Some(by) = annotations.get(KEDA_PAUSED_BY_ANNOTATION) else {
        return Ok(false);
    };
    if !paused_by(by) {
        return Ok(false);
    }
    // An unreadable previous value resumes KEDA: its normal state, rather than paused forever.
    let previous: Value = annotations
        .get(KEDA_PREVIOUS_ANNOTATION)
        .and_then(|p| serde_json::from_str(p).ok())
        .filter(Value::is_string)
        .unwrap_or(Value::Null);
    let patch = json!({
        KEDA_PAUSED_REPLICAS_ANNOTATION: previous,
        KEDA_PAUSED_BY_ANNOTATION: null,
        KEDA_PREVIOUS_ANNOTATION: null,
    });
    patch_annotations(api, &so.name_any(), patch, so.resource_version().as_deref()).await?;
    Ok(true)
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
