//! The guardrail: `mirrord-copy.io/scale-down: forbidden` on a workload or its Namespace
//! refuses scale-down. Fails closed: if the Namespace cannot be read, the request fails.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;

use super::workload::ScaleTarget;
use crate::error::Error;
use crate::labels::{GUARDRAIL_ANNOTATION, GUARDRAIL_FORBIDDEN};
use crate::resolve::ResolvedTarget;

/// Optional annotation next to the guardrail naming who set it (free text, e.g. "team-payments").
pub(super) const GUARDRAIL_BY_ANNOTATION: &str = "mirrord-copy.io/scale-down-guardrail-by";

/// Refuse with [`Error::Guardrail`] if the workload or its Namespace forbids scale-down.
/// The object the user named (e.g. a ReplicaSet whose owning Deployment is scaled) is checked
/// as well as the workload scaled.
pub(super) async fn check(
    client: &kube::Client,
    target: &ScaleTarget,
    workload_meta: &ObjectMeta,
    resolved: &ResolvedTarget,
) -> Result<(), Error> {
    if let Some(set_by) = forbidden_by(workload_meta) {
        return Err(Error::Guardrail {
            workload: target.workload_field(),
            location: target.describe(),
            set_by,
        });
    }
    if resolved.object.uid != target.uid {
        let named: ObjectMeta =
            serde_json::from_value(resolved.raw["metadata"].clone()).unwrap_or_default();
        if let Some(set_by) = forbidden_by(&named) {
            return Err(Error::Guardrail {
                workload: target.workload_field(),
                location: resolved.object.describe(),
                set_by,
            });
        }
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = namespaces
        .get(&target.namespace)
        .await
        .map_err(|e| Error::from_kube(e, "get", "namespaces"))?;
    if let Some(set_by) = forbidden_by(&ns.metadata) {
        return Err(Error::Guardrail {
            workload: target.workload_field(),
            location: format!("Namespace {}", target.namespace),
            set_by,
        });
    }
    Ok(())
}

/// `Some(who)` when `meta` carries the guardrail; `who` from the `-by` annotation, else from
/// the field manager that owns the annotation in managedFields.
fn forbidden_by(meta: &ObjectMeta) -> Option<Option<String>> {
    let annotations = meta.annotations.as_ref()?;
    let value = annotations.get(GUARDRAIL_ANNOTATION)?;
    if value.trim() != GUARDRAIL_FORBIDDEN {
        return None;
    }
    if let Some(by) = annotations.get(GUARDRAIL_BY_ANNOTATION) {
        return Some(Some(by.clone()));
    }
    let field = format!("f:{GUARDRAIL_ANNOTATION}");
    let manager = meta.managed_fields.iter().flatten().find_map(|entry| {
        let fields = entry.fields_v1.as_ref()?;
        fields.0["f:metadata"]["f:annotations"]
            .get(&field)
            .and(entry.manager.clone())
    });
    Some(manager.map(|m| format!("field manager {m}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(v: serde_json::Value) -> ObjectMeta {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn names_who_set_it() {
        assert_eq!(forbidden_by(&meta(json!({"name": "x"}))), None);
        assert_eq!(
            forbidden_by(&meta(
                json!({"annotations": {GUARDRAIL_ANNOTATION: "allowed"}})
            )),
            None
        );
        assert_eq!(
            forbidden_by(&meta(json!({"annotations": {
                GUARDRAIL_ANNOTATION: "forbidden", GUARDRAIL_BY_ANNOTATION: "team-payments"}}))),
            Some(Some("team-payments".to_string()))
        );
        let m = meta(json!({
            "annotations": {GUARDRAIL_ANNOTATION: "forbidden"},
            "managedFields": [
                {"manager": "kubectl-client-side-apply", "operation": "Update",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}},
                {"manager": "kubectl-annotate", "operation": "Update", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:mirrord-copy.io/scale-down": {}}}}}
            ]
        }));
        assert_eq!(
            forbidden_by(&m),
            Some(Some("field manager kubectl-annotate".to_string()))
        );
        let m = meta(json!({"annotations": {GUARDRAIL_ANNOTATION: "forbidden"}}));
        assert_eq!(forbidden_by(&m), Some(None));
    }
}
