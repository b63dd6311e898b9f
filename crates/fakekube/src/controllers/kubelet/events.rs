//! The kubelet's (and the scheduler's) Events about a pod, as their recorders write them.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::NODE;
use crate::controllers::util::{self, name, namespace, uid};
use crate::store::Store;

/// Events as the kubelet's recorder sends them: a repeated message bumps its Event's count.
#[derive(Debug, Default)]
pub(super) struct Recorder {
    /// (reason, type, fieldPath, message) -> the Event's name.
    sent: HashMap<String, String>,
}

impl Recorder {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record(
        &mut self,
        store: &Store,
        pod: &Value,
        reason: &str,
        ty: &str,
        field: Option<&str>,
        message: &str,
        component: &str,
    ) {
        let key = format!(
            "{reason}\u{0}{ty}\u{0}{}\u{0}{message}",
            field.unwrap_or("")
        );
        if let Some(ev_name) = self.sent.get(&key) {
            if let Some(ert) = store.resource("", "events").cloned() {
                if let Ok(ev) = store.get(&ert, Some(namespace(pod)), ev_name) {
                    let mut e = (*ev).clone();
                    e["count"] = json!(e["count"].as_i64().unwrap_or(1) + 1);
                    e["lastTimestamp"] = json!(util::now());
                    let _ = store.update(&ert, Some(namespace(pod)), ev_name, e, None, false);
                    return;
                }
            }
        }
        if let Some(n) = emit(store, pod, reason, ty, field, message, component) {
            self.sent.insert(key, n);
        }
    }
}

/// A core/v1 Event about the pod, as the kubelet's event recorder writes it; its name.
pub(super) fn emit(
    store: &Store,
    pod: &Value,
    reason: &str,
    ty: &str,
    field: Option<&str>,
    message: &str,
    component: &str,
) -> Option<String> {
    let ert = store.resource("", "events").cloned()?;
    let now = util::now();
    let mut involved = json!({
        "kind": "Pod", "namespace": namespace(pod), "name": name(pod), "uid": uid(pod),
        "apiVersion": "v1", "resourceVersion": pod["metadata"]["resourceVersion"],
    });
    if let Some(f) = field {
        involved["fieldPath"] = json!(f);
    }
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let ev_name = format!("{}.{:x}", name(pod), nanos);
    let ev = json!({
        "metadata": {"name": ev_name},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        // The kubelet and kube-controller-manager record through core/v1 (source set); the
        // scheduler through events.k8s.io/v1, which leaves it empty.
        "source": match component {
            "kubelet" => json!({"component": "kubelet", "host": NODE}),
            "default-scheduler" => json!({}),
            other => json!({"component": other}),
        },
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": ty,
        "eventTime": null,
        "reportingComponent": component,
        "reportingInstance": if component == "kubelet" { NODE } else { "" },
    });
    match store.create(&ert, Some(namespace(pod)), ev, false) {
        Ok(e) => e["metadata"]["name"].as_str().map(String::from),
        Err(e) => {
            tracing::debug!("event for {}: {}", name(pod), e.message);
            None
        }
    }
}
