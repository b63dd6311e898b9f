//! Object validation as kube-apiserver does it, for the rules the plugin can trip over:
//! object names (DNS-1123 subdomain, 253), label keys and values (63), owner references,
//! ConfigMap keys, apps/v1 selectors; pods in [`pod`]. Messages are byte-identical to
//! configmap-crud.json, pod-create.json and pod-validation.json.

use serde_json::Value;

use crate::api_error::{ApiError, Cause};
use crate::registry::ResourceType;

mod pod;

use crate::names::{label_key_error, label_name_errors, label_value_error, subdomain_errors};

pub(crate) fn invalid(field: &str, value: &str, msg: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: \"{value}\": {msg}"),
        field: field.into(),
    }
}

/// Validate an object before it is stored; `old` is the stored object on update.
pub(crate) fn validate_object(
    rt: &ResourceType,
    name: &str,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    if old.is_none() {
        let errs = if rt.plural == "namespaces" {
            label_name_errors(name)
        } else {
            subdomain_errors(name)
        };
        for e in errs {
            causes.push(invalid("metadata.name", name, &e));
        }
    }
    if let Some(labels) = obj["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            if let Err(e) = label_key_error(k) {
                causes.push(invalid("metadata.labels", k, &e));
            }
            let v = v.as_str().unwrap_or("");
            if let Err(e) = label_value_error(v) {
                causes.push(invalid("metadata.labels", v, &e));
            }
        }
    }
    if let Some(annotations) = obj["metadata"]["annotations"].as_object() {
        for k in annotations.keys() {
            if let Err(e) = label_key_error(k) {
                causes.push(invalid("metadata.annotations", k, &e));
            }
        }
    }
    validate_owner_references(obj, &mut causes);
    if let Some(old) = old {
        no_new_finalizers_while_deleting(obj, old, &mut causes);
    }
    if rt.plural == "pods" {
        pod::validate_pod(obj, old, &mut causes);
    }
    // Divergence: the workload's pod template is not validated (upstream also runs
    // ValidatePodTemplateSpec, the rules of `pod` for a template).
    if rt.group == "apps" && matches!(rt.plural, "deployments" | "replicasets" | "statefulsets") {
        validate_workload(obj, old, &mut causes);
    }
    if rt.plural == "configmaps" || rt.plural == "secrets" {
        for field in ["data", "binaryData"] {
            if let Some(m) = obj[field].as_object() {
                for k in m.keys() {
                    let ok = !k.is_empty()
                        && k.len() <= 253
                        && k.bytes()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
                    if !ok {
                        causes.push(invalid(&format!("{field}[{k}]"), k, CONFIG_KEY_MSG));
                    }
                }
            }
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(rt, name, causes))
    }
}

/// Upstream's ValidateNoNewFinalizers (apimachinery objectmeta.go), run by
/// ValidateObjectMetaUpdate once the old object has a deletionTimestamp: finalizers may only
/// go away. Message as upstream prints it (Go's `%#v` of the sorted new names).
fn no_new_finalizers_while_deleting(obj: &Value, old: &Value, causes: &mut Vec<Cause>) {
    if old["metadata"]["deletionTimestamp"].is_null() {
        return;
    }
    let names = |v: &Value| -> Vec<String> {
        v["metadata"]["finalizers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = names(old);
    let mut extra: Vec<String> = names(obj)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    if extra.is_empty() {
        return;
    }
    extra.sort();
    extra.dedup();
    let quoted: Vec<String> = extra.iter().map(|f| format!("{f:?}")).collect();
    causes.push(Cause {
        reason: "FieldValueForbidden".into(),
        message: format!(
            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
            quoted.join(", ")
        ),
        field: "metadata.finalizers".into(),
    });
}

const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

/// Go's `%#v` of a `map[string]string` (sorted keys), as upstream messages print label maps.
fn go_map(m: &serde_json::Map<String, Value>) -> String {
    let mut kv: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or("")))
        .collect();
    kv.sort();
    format!("map[string]string{{{}}}", kv.join(", "))
}

/// apps/v1 workloads: replicas >= 0, a selector that selects the template's labels, and (on
/// update) an unchanged selector.
fn validate_workload(obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let spec = &obj["spec"];
    if let Some(r) = spec["replicas"].as_i64().filter(|r| *r < 0) {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {r}: must be greater than or equal to 0"),
            field: "spec.replicas".into(),
        });
    }
    let selector = &spec["selector"];
    let empty = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.is_empty())
        && selector["matchExpressions"]
            .as_array()
            .is_none_or(|a| a.is_empty());
    if empty {
        causes.push(Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
            field: "spec.selector".into(),
        });
    } else {
        let labels = spec["template"]["metadata"]["labels"].as_object();
        let sel = crate::selectors::LabelSelector::from_object(selector);
        let matches = labels.is_some_and(|l| sel.matches(|k| l.get(k).and_then(|v| v.as_str())));
        if !matches {
            let shown = labels
                .map(go_map)
                .unwrap_or_else(|| "map[string]string(nil)".into());
            causes.push(Cause {
                reason: "FieldValueInvalid".into(),
                message: format!(
                    "Invalid value: {shown}: `selector` does not match template `labels`"
                ),
                field: "spec.template.metadata.labels".into(),
            });
        }
    }
    if let Some(old) = old {
        if old["spec"]["selector"] != *selector {
            causes.push(Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {selector}: field is immutable"),
                field: "spec.selector".into(),
            });
        }
    }
}

/// ValidateOwnerReferences: apiVersion, kind, name and uid set; at most one controller.
fn validate_owner_references(obj: &Value, causes: &mut Vec<Cause>) {
    let Some(refs) = obj["metadata"]["ownerReferences"].as_array() else {
        return;
    };
    let mut controllers = Vec::new();
    for r in refs {
        for (k, what) in [
            ("apiVersion", "version"),
            ("kind", "kind"),
            ("name", "name"),
            ("uid", "uid"),
        ] {
            if r[k].as_str().is_none_or(str::is_empty) {
                causes.push(invalid(
                    &format!("metadata.ownerReferences.{k}"),
                    "",
                    &format!("{what} must not be empty"),
                ));
            }
        }
        if r["controller"].as_bool() == Some(true) {
            controllers.push(format!(
                "{}/{}",
                r["kind"].as_str().unwrap_or(""),
                r["name"].as_str().unwrap_or("")
            ));
        }
    }
    if controllers.len() > 1 {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "Invalid value: {}: Only one reference can have Controller set to true. Found \"true\" in references for {}",
                serde_json::Value::Array(refs.clone()),
                controllers.join(" and ")
            ),
            field: "metadata.ownerReferences".into(),
        });
    }
}

/// Five characters from the alphabet upstream uses for generateName suffixes.
pub(crate) fn random_suffix(len: usize) -> String {
    use rand::Rng;
    // k8s.io/apimachinery/pkg/util/rand: consonants and digits without look-alikes.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(subdomain_errors("a.b-c").is_empty());
        assert_eq!(subdomain_errors("Bad_Name").len(), 1);
        assert_eq!(subdomain_errors(&"a".repeat(254)).len(), 1);
        assert!(label_name_errors("App").len() == 1);
        assert!(label_value_error(&"v".repeat(64)).is_err());
        assert!(label_key_error("mirrord-copy.io/session").is_ok());
    }

    #[test]
    fn owner_references_and_config_keys() {
        let rt = crate::registry::builtin()
            .into_iter()
            .find(|t| t.plural == "configmaps")
            .unwrap();
        let two = serde_json::json!({"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": "1", "controller": true},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "b", "uid": "2", "controller": true}]}});
        let e = validate_object(&rt, "x", &two, None).unwrap_err();
        assert!(e
            .message
            .contains("Only one reference can have Controller set to true"));
        let no_uid = serde_json::json!({"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "a"}]}});
        let e = validate_object(&rt, "x", &no_uid, None).unwrap_err();
        assert!(
            e.message.contains(
                "metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty"
            ),
            "{}",
            e.message
        );
        let bad_key = serde_json::json!({"metadata": {}, "data": {"a/b": "v"}});
        let e = validate_object(&rt, "x", &bad_key, None).unwrap_err();
        assert!(
            e.message.starts_with(
                "ConfigMap \"x\" is invalid: data[a/b]: Invalid value: \"a/b\": a valid config key"
            ),
            "{}",
            e.message
        );
    }
}
