//! The `/scale` subresource: an `autoscaling/v1 Scale` view of a workload
//! (scale-subresource.json). `spec.replicas` maps to the object's `spec.replicas`;
//! `status.replicas` to `status.replicas` (`status.HPAReplicas` for Argo Rollouts, the CRD's
//! statusReplicasPath); `status.selector` is the rendered `spec.selector` for built-in
//! workloads and `status.selector` for Rollouts (the CRD's labelSelectorPath).

use serde_json::{json, Value};

use crate::registry::ResourceType;
use crate::selectors::LabelSelector;

fn is_rollout(rt: &ResourceType) -> bool {
    rt.group == "argoproj.io"
}

/// The `autoscaling/v1 Scale` of workload `obj` of type `rt`, as GET /scale answers.
pub fn to_scale(rt: &ResourceType, obj: &Value) -> Value {
    let m = &obj["metadata"];
    let mut meta = json!({});
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if !m[k].is_null() {
            meta[k] = m[k].clone();
        }
    }
    let mut spec = json!({});
    // ScaleSpec.replicas is omitempty: 0 is not rendered (the transcript's `"spec": {}`).
    if let Some(r) = obj["spec"]["replicas"].as_i64().filter(|r| *r != 0) {
        spec["replicas"] = json!(r);
    }
    let status_replicas = if is_rollout(rt) {
        &obj["status"]["HPAReplicas"]
    } else {
        &obj["status"]["replicas"]
    };
    let mut status = json!({"replicas": status_replicas.as_i64().unwrap_or(0)});
    let selector = if is_rollout(rt) {
        obj["status"]["selector"].as_str().map(String::from)
    } else if obj["spec"]["selector"].is_object() {
        Some(LabelSelector::from_object(&obj["spec"]["selector"]).to_string())
    } else {
        None
    };
    if let Some(s) = selector.filter(|s| !s.is_empty()) {
        status["selector"] = json!(s);
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta, "spec": spec, "status": status})
}

/// The workload after writing `scale` into it (only `spec.replicas` is taken).
pub fn apply_scale(obj: &Value, scale: &Value) -> Value {
    let mut out = obj.clone();
    out["spec"]["replicas"] = json!(scale["spec"]["replicas"].as_i64().unwrap_or(0));
    out
}
