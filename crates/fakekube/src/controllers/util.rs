//! Small helpers shared by the controllers.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::store::Store;

pub(super) fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

pub(super) fn namespace(obj: &Value) -> &str {
    obj["metadata"]["namespace"].as_str().unwrap_or("")
}

pub(super) fn uid(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or("")
}

pub(super) fn deleting(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The ownerReference with `controller: true`, if any.
pub(super) fn controller_of(obj: &Value) -> Option<&Value> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"].as_bool() == Some(true))
}

/// controller.ComputeHash: fnv32a of the template (upstream hashes its Go dump; here its
/// JSON), rendered by rand.SafeEncodeString of the decimal number (up to 10 characters of
/// `bcdfghjklmnpqrstvwxz2456789`).
pub(super) fn template_hash(template: &Value) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut h: u32 = 0x811c9dc5;
    for b in bytes {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h.to_string()
        .bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// A pod built from a template (controller.GetPodFromTemplate): labels, annotations, spec,
/// and a controller ownerReference.
pub(super) fn pod_from_template(template: &Value, owner: &Value, name: &str) -> Value {
    let mut meta = json!({
        "name": name,
        "ownerReferences": [super::controller_ref(owner)],
    });
    for k in ["labels", "annotations"] {
        if template["metadata"][k].is_object() {
            meta[k] = template["metadata"][k].clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"].clone()})
}

pub(super) fn pod_phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("Pending")
}

/// Not terminated and not being deleted (controller.IsPodActive).
pub(super) fn pod_active(pod: &Value) -> bool {
    !deleting(pod) && !matches!(pod_phase(pod), "Succeeded" | "Failed")
}

pub(super) fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Write `status` into `obj` through the status subresource, if it changed.
pub(super) fn write_status(
    store: &Store,
    plural: crate::store::ResKey,
    obj: &Arc<Value>,
    status: Value,
) {
    let _ = write_status_returning(store, plural, obj, status);
}

/// [`write_status`], returning the object written (None when unchanged or refused).
pub(super) fn write_status_returning(
    store: &Store,
    plural: crate::store::ResKey,
    obj: &Arc<Value>,
    status: Value,
) -> Option<Arc<Value>> {
    if obj["status"] == status {
        return None;
    }
    let rt = super::rt(store, plural);
    let mut o = (**obj).clone();
    o["status"] = status;
    store
        .update(
            &rt,
            Some(namespace(obj)),
            name(obj),
            o,
            Some("status"),
            false,
        )
        .ok()
}

/// Objects of one type in every namespace.
pub(super) fn list_all(store: &Store, key: crate::store::ResKey) -> Vec<Arc<Value>> {
    let rt = super::rt(store, key);
    store.list(&rt, None, &|_| true).0
}
