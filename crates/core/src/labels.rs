//! Every name the plugin writes on the cluster: label and annotation keys and values, ConfigMap
//! data keys and object-name prefixes. DESIGN.md ("Names on the cluster") makes this file the
//! one place to look them up; nothing else spells these strings. The names the lock writes
//! itself (its labels, name prefix and data keys) are spelled once, in `mirrord_copy_lock`,
//! the lower crate, and re-exported here.

use std::collections::BTreeMap;

/// Prefix of all our own keys.
pub const PREFIX: &str = "mirrord-copy.io/";

// ---- labels on everything we create ----
pub use mirrord_copy_lock::{
    LABEL_MANAGED_BY as MANAGED_BY_LABEL, LABEL_ROLE as ROLE_LABEL, LABEL_SESSION as SESSION_LABEL,
    MANAGED_BY as MANAGED_BY_VALUE,
};

/// What an object we created is, as the value of [`ROLE_LABEL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Session,
    Copy,
    Lock,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Session => "session",
            Role::Copy => "copy",
            Role::Lock => mirrord_copy_lock::ROLE_LOCK,
        }
    }
}

/// The labels every object of a session carries.
pub fn managed_labels(session_id: &str, role: Role) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
        (SESSION_LABEL.to_string(), session_id.to_string()),
        (ROLE_LABEL.to_string(), role.as_str().to_string()),
    ])
}

/// Label selector for every object of `role` we manage, across sessions.
pub fn role_selector(role: Role) -> String {
    format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{ROLE_LABEL}={}",
        role.as_str()
    )
}

/// Label selector for the objects of one session with `role`.
pub fn session_role_selector(session_id: &str, role: Role) -> String {
    format!("{},{SESSION_LABEL}={session_id}", role_selector(role))
}

// ---- object names ----
pub const SESSION_CONFIG_MAP_PREFIX: &str = "mirrord-copy-session-";
pub use mirrord_copy_lock::LOCK_NAME_PREFIX as LOCK_CONFIG_MAP_PREFIX;

/// Name of a session's ConfigMap.
pub fn session_config_map_name(session_id: &str) -> String {
    format!("{SESSION_CONFIG_MAP_PREFIX}{session_id}")
}

// ---- session ConfigMap data keys ----
pub const SESSION_VERSION: &str = "1";
pub const DATA_VERSION: &str = "version";
pub const DATA_TARGET: &str = "target";
pub const DATA_COPY_POD: &str = "copyPod";
pub const DATA_SCALE_DOWN: &str = "scaleDown";
pub const DATA_OWNER: &str = "owner";
/// `localuser@hostname` of the machine that made the session (beside the Kubernetes user in `owner`).
pub const DATA_HOST: &str = "host";
pub const DATA_CREATED: &str = "created";
pub const DATA_EXPIRES: &str = "expires";
pub const DATA_OPTIONS: &str = "options";
pub const DATA_WORKLOAD: &str = "workload";
/// Scale-down: the KEDA ScaledObjects targeting the workload (comma-separated), recorded before
/// any is paused, so ending the session knows which to put back without listing them.
pub const DATA_SCALED_OBJECTS: &str = "scaledObjects";
pub const DATA_HEARTBEAT: &str = "heartbeat";
/// Someone else scaled the workload during the session (recorded by `run`'s heartbeat).
pub const DATA_INTERFERENCE: &str = "interference";

// ---- copy pod annotations ----
pub const ORIGINAL_TARGET_ANNOTATION: &str = "mirrord-copy.io/original-target";
pub const CREATED_BY_ANNOTATION: &str = "mirrord-copy.io/created-by";
pub const CREATED_AT_ANNOTATION: &str = "mirrord-copy.io/created-at";
pub const OPTIONS_ANNOTATION: &str = "mirrord-copy.io/options";

// ---- lock ConfigMap data keys (written by crates/lock; listed here so everything is in one place) ----
pub use mirrord_copy_lock::keys::{
    COPY_POD as LOCK_COPY_POD, HOLDER as LOCK_HOLDER, HOLDER_SESSION as LOCK_HOLDER_SESSION,
    LEASE_EXPIRES as LOCK_LEASE_EXPIRES, ORIGINAL_REPLICAS as LOCK_ORIGINAL_REPLICAS,
    SCALED_OBJECTS as LOCK_SCALED_OBJECTS, SINCE as LOCK_SINCE,
    WORKLOAD_KIND as LOCK_WORKLOAD_KIND, WORKLOAD_NAME as LOCK_WORKLOAD_NAME,
    WORKLOAD_UID as LOCK_WORKLOAD_UID,
};

// ---- on the workload while scaled down ----
pub const ORIGINAL_REPLICAS_ANNOTATION: &str = "mirrord-copy.io/original-replicas";
pub const SCALED_DOWN_BY_ANNOTATION: &str = "mirrord-copy.io/scaled-down-by";
/// Keeps a lock ConfigMap until the workload is restored (written by crates/lock).
pub use mirrord_copy_lock::FINALIZER as LOCK_FINALIZER;

// ---- guardrail ----
pub const GUARDRAIL_ANNOTATION: &str = "mirrord-copy.io/scale-down";
pub const GUARDRAIL_FORBIDDEN: &str = "forbidden";

// ---- KEDA ----
pub const KEDA_PAUSED_REPLICAS_ANNOTATION: &str = "autoscaling.keda.sh/paused-replicas";

/// Pod labels that tie a pod to a controller. A copy carrying one of them could be adopted
/// (and then deleted) by the workload's controller, so `copy_labels` drops exactly these.
pub const CONTROLLER_LABELS: &[&str] = &[
    "pod-template-hash",
    "rollouts-pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_labels_carry_session_and_role() {
        let labels = managed_labels("abc123defg", Role::Copy);
        assert_eq!(labels[MANAGED_BY_LABEL], "kubectl-mirrord-copy");
        assert_eq!(labels[SESSION_LABEL], "abc123defg");
        assert_eq!(labels[ROLE_LABEL], "copy");
        assert_eq!(
            session_role_selector("s1", Role::Session),
            "app.kubernetes.io/managed-by=kubectl-mirrord-copy,mirrord-copy.io/role=session,mirrord-copy.io/session=s1"
        );
        assert_eq!(session_config_map_name("s1"), "mirrord-copy-session-s1");
    }
}
