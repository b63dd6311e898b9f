//! `metav1.Status` errors exactly as kube-apiserver words them.
//!
//! Every constructor mirrors a message recorded in `tests/fixtures/k8s-api-transcripts/`
//! (configmap-crud, forbidden, scale-subresource, pod-create); keep them byte-identical.

use serde_json::{json, Value};

use crate::registry::ResourceType;

/// An API error as the server sends it: an HTTP status plus a `Status` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status, also the Status body's `code`.
    pub code: u16,
    /// The Status `reason`, e.g. "NotFound".
    pub reason: String,
    /// The Status `message`, worded as the real server words it.
    pub message: String,
    /// The Status `details` (name, kind, causes), when there are any.
    pub details: Option<Value>,
}

/// One entry of `details.causes` on a 422 Invalid.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

impl ApiError {
    /// An error with `code`, `reason` and `message` and no details.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// `configmaps "a" not found`; details carry the group (if any) and plural as `kind`.
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.qualified()),
        )
        .with_details(details(rt, name))
    }

    /// `namespaces "tx-nope" not found`, returned when creating into a missing namespace.
    pub fn namespace_not_found(namespace: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("namespaces \"{namespace}\" not found"),
        )
        .with_details(json!({"name": namespace, "kind": "namespaces"}))
    }

    /// 409 AlreadyExists for a create of `name`.
    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.qualified()),
        )
        .with_details(details(rt, name))
    }

    /// Optimistic-concurrency failure on update/patch with a stale resourceVersion.
    pub fn conflict_modified(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                rt.qualified()
            ),
        )
        .with_details(details(rt, name))
    }

    /// Delete precondition failures name the *Kind* (`ConfigMap "a"`), unlike the others.
    pub fn precondition_uid(rt: &ResourceType, name: &str, want: &str, have: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the UID in the precondition ({want}) does not match the UID in record ({have}). The object might have been deleted and then recreated",
                qualified_kind(rt)
            ),
        )
        .with_details(kind_details(rt, name))
    }

    /// 409 Conflict: a resourceVersion precondition (`want`) did not match the stored one (`have`).
    pub fn precondition_rv(rt: &ResourceType, name: &str, want: &str, have: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the ResourceVersion in the precondition ({want}) does not match the ResourceVersion in record ({have}). The object might have been modified",
                qualified_kind(rt)
            ),
        )
        .with_details(kind_details(rt, name))
    }

    /// `ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: ...`
    pub fn invalid(rt: &ResourceType, name: &str, causes: Vec<Cause>) -> Self {
        let summary = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect::<Vec<_>>();
        let joined = if summary.len() == 1 {
            summary[0].clone()
        } else {
            format!("[{}]", summary.join(", "))
        };
        let mut d = kind_details(rt, name);
        d["causes"] = Value::Array(
            causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect(),
        );
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {joined}", qualified_kind(rt)),
        )
        .with_details(d)
    }

    /// 422 for invalid DeleteOptions (e.g. an unknown propagationPolicy).
    pub fn invalid_options(message: impl Into<String>) -> Self {
        Self::new(
            422,
            "Invalid",
            format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: {}",
                message.into()
            ),
        )
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 403 as the RBAC authorizer words it. `subresource` is e.g. `scale`; `name` is empty for
    /// collection verbs; `namespace` None means cluster scope.
    pub fn forbidden(
        rt: &ResourceType,
        name: &str,
        user: &str,
        verb: &str,
        subresource: Option<&str>,
        namespace: Option<&str>,
    ) -> Self {
        let subject = if name.is_empty() {
            rt.qualified()
        } else {
            format!("{} \"{name}\"", rt.qualified())
        };
        let resource = match subresource {
            Some(s) => format!("{}/{s}", rt.plural),
            None => rt.plural.to_string(),
        };
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        let mut d = json!({"kind": rt.plural});
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
        if !name.is_empty() {
            d["name"] = json!(name);
        }
        Self::new(
            403,
            "Forbidden",
            format!(
                "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
                rt.group
            ),
        )
        .with_details(d)
    }

    /// 401 Unauthorized: no or an unknown bearer token.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// The 410 a watch or a continue token from a compacted resourceVersion gets.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` body to send.
    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

/// `ConfigMap` for core, `Deployment.apps` otherwise (GroupKind.String(), as NewInvalid and
/// precondition conflicts word it).
fn qualified_kind(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.kind.to_string()
    } else {
        format!("{}.{}", rt.kind, rt.group)
    }
}

fn details(rt: &ResourceType, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": rt.plural});
    if !rt.group.is_empty() {
        d["group"] = json!(rt.group);
    }
    d
}

/// Precondition and validation failures name the Kind (`"kind": "ConfigMap"`) in details.
fn kind_details(rt: &ResourceType, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": rt.kind});
    if !rt.group.is_empty() {
        d["group"] = json!(rt.group);
    }
    d
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} {})", self.message, self.code, self.reason)
    }
}

impl std::error::Error for ApiError {}
