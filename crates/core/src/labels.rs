//! Every name the plugin writes on the cluster: label and annotation keys and values, ConfigMap
//! data keys and object-name prefixes. DESIGN.md ("Names on the cluster") makes this file the
//! one place to look them up; nothing else spells these strings. The names the lock writes
//! itself (its labels, name prefix and data keys) are spelled once, in `mirrord_copy_lock`,
//! the lower crate, and re-exported here.

use std::collections::BTreeMap;

// ---- labels on everything we create ----
pub use mirrord_copy_lock::{
    LABEL_MANAGED_BY as MANAGED_BY_LABEL, LABEL_ROLE as ROLE_LABEL, LABEL_SESSION as SESSION_LABEL,
    MANAGED_BY as MANAGED_BY_VALUE,
};

/// What an object we created is, as the value of [`ROLE_LABEL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A session's ConfigMap.
    Session,
    /// A copy pod.
    Copy,
    /// A scale-down lock ConfigMap.
    Lock,
}

impl Role {
    /// The label value.
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
pub(crate) fn session_role_selector(session_id: &str, role: Role) -> String {
    format!("{},{SESSION_LABEL}={session_id}", role_selector(role))
}

// ---- object names ----
/// Prefix of every session ConfigMap's name (then the session id).
pub(crate) const SESSION_CONFIG_MAP_PREFIX: &str = "mirrord-copy-session-";
pub use mirrord_copy_lock::LOCK_NAME_PREFIX as LOCK_CONFIG_MAP_PREFIX;

/// Name of a session's ConfigMap.
pub fn session_config_map_name(session_id: &str) -> String {
    format!("{SESSION_CONFIG_MAP_PREFIX}{session_id}")
}

// ---- session ConfigMap data keys ----
/// Format version written to [`DATA_VERSION`].
pub const SESSION_VERSION: &str = "1";
/// Session data key: format version of the record.
pub const DATA_VERSION: &str = "version";
/// Session data key: the target as the user gave it, normalised.
pub const DATA_TARGET: &str = "target";
/// Session data key: the copy pod's name.
pub const DATA_COPY_POD: &str = "copyPod";
/// Session data key: `"true"` when the session scales its workload down.
pub const DATA_SCALE_DOWN: &str = "scaleDown";
/// Session data key: how far it scales (`scale-down` or `replace-one`, [`crate::ScaleTo`]);
/// absent in records of earlier builds and of sessions that scale nothing: scale-down.
pub const DATA_SCALE_MODE: &str = "scaleMode";
/// Session data key: the Kubernetes user who made the session.
pub const DATA_OWNER: &str = "owner";
/// `localuser@hostname` of the machine that made the session (beside the Kubernetes user in `owner`).
pub(crate) const DATA_HOST: &str = "host";
/// Session data key: when the session was made (RFC 3339).
pub const DATA_CREATED: &str = "created";
/// Session data key: when gc may end the session (RFC 3339); absent without a TTL.
pub const DATA_EXPIRES: &str = "expires";
/// Session data key: the copy options, as JSON.
pub const DATA_OPTIONS: &str = "options";
/// Session data key: the workload scaled down (`kind/name`).
pub const DATA_WORKLOAD: &str = "workload";
/// Scale-down: the KEDA ScaledObjects targeting the workload (comma-separated), recorded before
/// any is paused, so ending the session knows which to put back without listing them.
pub const DATA_SCALED_OBJECTS: &str = "scaledObjects";
/// Scale-down with `--suspend-argocd`: the Argo CD Application whose self-heal is off for the
/// session (`namespace/name`) and its `selfHeal` before (`true`, `false`, `unset`), recorded
/// before it is paused; the lock records the same.
pub(crate) use mirrord_copy_lock::keys::{
    ARGO_APPLICATION as DATA_ARGO_APPLICATION, ARGO_SELF_HEAL_BEFORE as DATA_ARGO_SELF_HEAL_BEFORE,
};
/// Session data key: when the process holding the session last renewed it (at first, `created`).
pub const DATA_HEARTBEAT: &str = "heartbeat";
/// Session data key: `"true"` while the session is provisional: written so by `create`, removed
/// by `session::confirm` once the copy is Ready and its name handed over. A provisional session
/// lapses [`crate::session::PROVISIONAL_LEASE`] after its last heartbeat, whatever its
/// `expires`: a create that died leaves nothing alive for its whole TTL.
pub const DATA_PROVISIONAL: &str = "provisional";
/// Session data key: when the session was confirmed (RFC 3339); absent while provisional, and
/// in records of earlier builds.
pub const DATA_CONFIRMED: &str = "confirmed";
/// Someone else scaled the workload during the session (recorded by `run`'s heartbeat).
pub(crate) const DATA_INTERFERENCE: &str = "interference";

// ---- copy pod annotations ----
/// Copy pod annotation: the target it was copied from.
pub(crate) const ORIGINAL_TARGET_ANNOTATION: &str = "mirrord-copy.io/original-target";
/// Copy pod annotation: who made it.
pub(crate) const CREATED_BY_ANNOTATION: &str = "mirrord-copy.io/created-by";
/// Copy pod annotation: when it was made.
pub(crate) const CREATED_AT_ANNOTATION: &str = "mirrord-copy.io/created-at";
/// Copy pod annotation: the copy options, as JSON.
pub(crate) const OPTIONS_ANNOTATION: &str = "mirrord-copy.io/options";
/// Copy pod annotation: what its target container runs, [`RUNS_PLACEHOLDER`] or
/// [`RUNS_APPLICATION`]; the container is the one `kubectl.kubernetes.io/default-container` names.
pub const RUNS_ANNOTATION: &str = "mirrord-copy.io/runs";
/// [`RUNS_ANNOTATION`]: the target container runs the placeholder (crate::placeholder).
pub const RUNS_PLACEHOLDER: &str = "placeholder";
/// [`RUNS_ANNOTATION`]: the target container runs the application's own command.
pub const RUNS_APPLICATION: &str = "application";

// ---- lock ConfigMap data keys (written by crates/lock; listed here so everything is in one place) ----
pub use mirrord_copy_lock::keys::{
    COPY_POD as LOCK_COPY_POD, HOLDER as LOCK_HOLDER, HOLDER_SESSION as LOCK_HOLDER_SESSION,
    LEASE_EXPIRES as LOCK_LEASE_EXPIRES, ORIGINAL_REPLICAS as LOCK_ORIGINAL_REPLICAS,
    SCALED_OBJECTS as LOCK_SCALED_OBJECTS, SINCE as LOCK_SINCE,
    WORKLOAD_KIND as LOCK_WORKLOAD_KIND, WORKLOAD_NAME as LOCK_WORKLOAD_NAME,
    WORKLOAD_UID as LOCK_WORKLOAD_UID,
};

// ---- on the workload while scaled down ----
/// Workload annotation while scaled down: the count to restore.
pub const ORIGINAL_REPLICAS_ANNOTATION: &str = "mirrord-copy.io/original-replicas";
/// Workload annotation while scaled down: the id of the session that did it.
pub const SCALED_DOWN_BY_ANNOTATION: &str = "mirrord-copy.io/scaled-down-by";
/// Workload annotation while scaled down: the count the session set (0, or one less than
/// the original with `--replace-one`); absent in an earlier build's record: 0.
pub const SCALED_TO_ANNOTATION: &str = "mirrord-copy.io/scaled-to";
/// Keeps a lock ConfigMap until the workload is restored (written by crates/lock).
pub use mirrord_copy_lock::FINALIZER as LOCK_FINALIZER;

// ---- guardrail ----
/// Annotation on a workload or namespace that may forbid scale-down.
pub(crate) const GUARDRAIL_ANNOTATION: &str = "mirrord-copy.io/scale-down";
/// Value of [`GUARDRAIL_ANNOTATION`] that forbids scale-down.
pub(crate) const GUARDRAIL_FORBIDDEN: &str = "forbidden";

// ---- KEDA ----
/// KEDA's annotation pausing a ScaledObject at a replica count.
pub(crate) const KEDA_PAUSED_REPLICAS_ANNOTATION: &str = "autoscaling.keda.sh/paused-replicas";

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
