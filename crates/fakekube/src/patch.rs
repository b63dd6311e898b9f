//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch
//! (the subset the plugin and kubectl send), and server-side apply (see [`crate::apply`]).

use serde_json::{Map, Value};

use crate::api_error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchKind {
    /// From the request's Content-Type; 415 for anything else, as upstream.
    pub(crate) fn from_content_type(ct: &str) -> Result<PatchKind, ApiError> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchKind::Apply),
            other => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"),
            )),
        }
    }
}

/// Apply a merge, JSON or strategic patch to `target`.
pub(crate) fn apply_patch(
    kind: PatchKind,
    target: &mut Value,
    body: &[u8],
) -> Result<(), ApiError> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    match kind {
        PatchKind::Merge => {
            json_patch::merge(target, &patch);
            Ok(())
        }
        PatchKind::Strategic => {
            strategic_merge(target, &patch);
            Ok(())
        }
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            // Any failed operation (a failing `test` included) is a 422 with this generic
            // message and empty details, as configmap-crud.json records.
            json_patch::patch(target, &p).map_err(|_| {
                let mut e = ApiError::new(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request",
                );
                e.details = Some(serde_json::json!({}));
                e
            })
        }
        PatchKind::Apply => Err(ApiError::internal("apply patches go through apply::apply")),
    }
}

/// The merge key of a list field, as the Kubernetes Go types declare it (`patchMergeKey`).
/// `ports` is keyed by `containerPort` in containers and by `port` in Services.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ownerReferences" => Some("uid"),
        "conditions" => Some("type"),
        "hostAliases" => Some("ip"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "ports" => {
            if items.iter().any(|p| p.get("containerPort").is_some()) {
                Some("containerPort")
            } else {
                Some("port")
            }
        }
        _ => None,
    }
}

/// Strategic merge patch. Like a JSON merge patch, except:
/// - lists with a merge key (containers, env, ports, volumes, ownerReferences, conditions ...)
///   are merged item by item on that key; items with `$patch: delete` are removed;
/// - `finalizers` (a set of strings) is unioned;
/// - `$patch: replace` on a map replaces it; `$setElementOrder/*`, `$retainKeys` and
///   `$deleteFromPrimitiveList/*` directives are honoured minimally (order and retainKeys are
///   ignored: a knowing divergence, the fields the plugin patches do not depend on them).
pub(crate) fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(pm) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if pm.get("$patch").and_then(|v| v.as_str()) == Some("replace") {
        let mut m = pm.clone();
        m.remove("$patch");
        *target = Value::Object(m);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let tm = target.as_object_mut().unwrap();
    for (k, v) in pm {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(cur), Some(del)) = (
                tm.get_mut(field).and_then(|c| c.as_array_mut()),
                v.as_array(),
            ) {
                cur.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            tm.remove(k);
            continue;
        }
        match v {
            Value::Object(_) => {
                let entry = tm.entry(k.clone()).or_insert(Value::Null);
                strategic_merge(entry, v);
            }
            Value::Array(items) => {
                let cur = tm.get(k).and_then(|c| c.as_array()).cloned();
                if k == "finalizers" {
                    let mut out = cur.unwrap_or_default();
                    for i in items {
                        if !out.contains(i) {
                            out.push(i.clone());
                        }
                    }
                    tm.insert(k.clone(), Value::Array(out));
                    continue;
                }
                let replace_all = items
                    .iter()
                    .any(|i| i.get("$patch").and_then(|p| p.as_str()) == Some("replace"));
                match (merge_key(k, items), cur) {
                    (Some(mk), Some(mut cur)) if !replace_all => {
                        for item in items {
                            let key = item.get(mk).cloned().unwrap_or(Value::Null);
                            let pos = cur.iter().position(|c| c.get(mk) == Some(&key));
                            let delete =
                                item.get("$patch").and_then(|p| p.as_str()) == Some("delete");
                            match (pos, delete) {
                                (Some(p), true) => {
                                    cur.remove(p);
                                }
                                (None, true) => {}
                                (Some(p), false) => strategic_merge(&mut cur[p], item),
                                (None, false) => {
                                    let mut fresh = Value::Null;
                                    strategic_merge(&mut fresh, item);
                                    cur.push(fresh);
                                }
                            }
                        }
                        tm.insert(k.clone(), Value::Array(cur));
                    }
                    _ => {
                        let cleaned: Vec<Value> = items
                            .iter()
                            .filter(|i| i.get("$patch").and_then(|p| p.as_str()) != Some("delete"))
                            .map(|i| match i {
                                Value::Object(m) => {
                                    let mut m = m.clone();
                                    m.remove("$patch");
                                    Value::Object(m)
                                }
                                other => other.clone(),
                            })
                            .collect();
                        tm.insert(k.clone(), Value::Array(cleaned));
                    }
                }
            }
            other => {
                tm.insert(k.clone(), other.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "app", "image": "nginx", "env": [{"name": "A", "value": "1"}]},
            {"name": "side", "image": "busybox"}]}});
        strategic_merge(
            &mut pod,
            &json!({"spec": {"containers": [
                {"name": "app", "image": "httpd", "env": [{"name": "B", "value": "2"}]},
                {"name": "side", "$patch": "delete"}]}}),
        );
        assert_eq!(pod["spec"]["containers"].as_array().unwrap().len(), 1);
        assert_eq!(pod["spec"]["containers"][0]["image"], "httpd");
        assert_eq!(
            pod["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
}
