//! PersistentVolumeClaims: what kube-apiserver checks on a claim (pkg/apis/core/validation
//! `ValidatePersistentVolumeClaimSpec`, run on create and again on every update), and the
//! access-mode helpers the StatefulSet controller, the binder and the kubelet share.
//!
//! Divergences: storage quantities are not parsed (`"abc"` or `"0"` are accepted; upstream
//! answers `quantities must match the regular expression ...` / `must be greater than zero`);
//! `selector`, `storageClassName`, `dataSource(Ref)` are not validated; the spec is not made
//! immutable on update (upstream: `spec is immutable after creation except resources.requests
//! and volumeAttributesClassName for bound claims`, followed by a diff of the specs).

use serde_json::Value;

use crate::api_error::{ApiError, Cause};
use crate::registry::ResourceType;

pub(crate) const RWO: &str = "ReadWriteOnce";
pub(crate) const ROX: &str = "ReadOnlyMany";
pub(crate) const RWX: &str = "ReadWriteMany";
pub(crate) const RWOP: &str = "ReadWriteOncePod";

/// `supportedAccessModes` as `sets.List` renders it in the NotSupported message (sorted).
const SUPPORTED_ACCESS_MODES: [&str; 4] = [ROX, RWX, RWO, RWOP];
/// `supportedVolumeModes`, sorted.
const SUPPORTED_VOLUME_MODES: [&str; 2] = ["Block", "Filesystem"];

pub(crate) fn is_claim_type(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "persistentvolumeclaims"
}

/// The claim's `spec.accessModes`.
pub(crate) fn access_modes(claim: &Value) -> Vec<&str> {
    claim["spec"]["accessModes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// `helper.GetAccessModesAsString`: `RWO,ROX,RWX,RWOP`, in that order, for the modes present.
pub(crate) fn access_modes_short(modes: &[&str]) -> String {
    [(RWO, "RWO"), (ROX, "ROX"), (RWX, "RWX"), (RWOP, "RWOP")]
        .iter()
        .filter(|(m, _)| modes.contains(m))
        .map(|(_, s)| *s)
        .collect::<Vec<_>>()
        .join(",")
}

fn quoted(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ValidatePersistentVolumeClaimSpec` for the fields checked here, in upstream's order.
pub(crate) fn claim_spec_causes(spec: &Value, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let modes: Vec<&Value> = spec["accessModes"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    if modes.is_empty() {
        causes.push(Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value: at least 1 access mode is required".into(),
            field: format!("{path}.accessModes"),
        });
    }
    let (mut rwop, mut other) = (false, false);
    for m in &modes {
        let s = m.as_str().unwrap_or("");
        if !SUPPORTED_ACCESS_MODES.contains(&s) {
            causes.push(Cause {
                reason: "FieldValueNotSupported".into(),
                message: format!(
                    "Unsupported value: {s:?}: supported values: {}",
                    quoted(&SUPPORTED_ACCESS_MODES)
                ),
                field: format!("{path}.accessModes"),
            });
        } else if s == RWOP {
            rwop = true;
        } else {
            other = true;
        }
    }
    if rwop && other {
        causes.push(Cause {
            reason: "FieldValueForbidden".into(),
            message: "Forbidden: may not use ReadWriteOncePod with other access modes".into(),
            field: format!("{path}.accessModes"),
        });
    }
    if spec["resources"]["requests"]["storage"].is_null() {
        causes.push(Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
            field: format!("{path}.resources[storage]"),
        });
    }
    if let Some(m) = spec["volumeMode"].as_str() {
        if !SUPPORTED_VOLUME_MODES.contains(&m) {
            causes.push(Cause {
                reason: "FieldValueNotSupported".into(),
                message: format!(
                    "Unsupported value: {m:?}: supported values: {}",
                    quoted(&SUPPORTED_VOLUME_MODES)
                ),
                field: format!("{path}.volumeMode"),
            });
        }
    }
    causes
}

/// Adds a claim's spec errors to what `validation::validate_object` answered (`base`):
/// ValidatePersistentVolumeClaim reports the metadata errors first, then the spec's, in one
/// 422. Other types pass `base` through.
pub(crate) fn validate(
    rt: &ResourceType,
    name: &str,
    obj: &Value,
    base: Result<(), ApiError>,
) -> Result<(), ApiError> {
    if !is_claim_type(rt) {
        return base;
    }
    let extra = claim_spec_causes(&obj["spec"], "spec");
    if extra.is_empty() {
        return base;
    }
    let mut causes = match base {
        Ok(()) => Vec::new(),
        Err(e) if e.code == 422 => e
            .details
            .as_ref()
            .and_then(|d| d["causes"].as_array())
            .into_iter()
            .flatten()
            .map(|c| Cause {
                reason: c["reason"].as_str().unwrap_or("").into(),
                message: c["message"].as_str().unwrap_or("").into(),
                field: c["field"].as_str().unwrap_or("").into(),
            })
            .collect(),
        Err(e) => return Err(e),
    };
    causes.extend(extra);
    Err(ApiError::invalid(rt, name, causes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pvc_type() -> ResourceType {
        crate::registry::builtin()
            .into_iter()
            .find(|t| t.plural == "persistentvolumeclaims")
            .unwrap()
    }

    #[test]
    fn missing_access_modes_and_storage_are_one_invalid() {
        let err = validate(&pvc_type(), "data", &json!({"spec": {}}), Ok(())).unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "PersistentVolumeClaim \"data\" is invalid: [spec.accessModes: Required value: at least 1 access mode is required, spec.resources[storage]: Required value]"
        );
    }

    #[test]
    fn unsupported_and_mixed_modes() {
        let spec = json!({"accessModes": ["ReadWriteOncePod", "ReadWriteOnce", "Sometimes"],
            "resources": {"requests": {"storage": "1Gi"}}});
        let causes = claim_spec_causes(&spec, "spec");
        let msgs: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(msgs, [
            "spec.accessModes: Unsupported value: \"Sometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
            "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes",
        ]);
        assert_eq!(access_modes_short(&[RWOP, RWO]), "RWO,RWOP");
    }
}
