//! The types every layer passes around: the session's handle (what the copy pod and the lock
//! point at) and the progress reports of long operations. A leaf: it uses no other module of
//! the crate, so copy rules, sessions and scale-down can all depend on it without a cycle.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::{Deserialize, Serialize};

/// The session ConfigMap, as the copy pod and the lock reference it (their ownerReferences).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHandle {
    /// The session id.
    pub id: String,
    /// Namespace of the session and its objects.
    pub namespace: String,
    /// Name of the session ConfigMap.
    pub config_map: String,
    /// uid of the session ConfigMap, for ownerReferences.
    pub uid: String,
}

impl SessionHandle {
    /// The controller ownerReference the copy pod and the lock carry: no workload controller
    /// adopts an object that already has a controller, and the garbage collector deletes
    /// both with the session (blockOwnerDeletion: a foreground delete of the session waits for
    /// them; clusters enforcing OwnerReferencesPermissionEnforcement want `update` on
    /// configmaps/finalizers for it, which plugin-manifest/role.yaml grants).
    pub(crate) fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: self.config_map.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// What `create` and `end` report as they go, for spinners and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "camelCase")]
pub enum Progress {
    /// The target was found; `object` is e.g. "Deployment default/x".
    Resolved {
        /// The target as given.
        target: String,
        /// The object it names.
        object: String,
    },
    /// The session ConfigMap was created.
    SessionCreated {
        /// The new session's id.
        session: String,
        /// Its ConfigMap's name.
        config_map: String,
    },
    /// The scale-down mutex for `workload` is ours.
    LockAcquired {
        /// The workload, e.g. "deployment/x".
        workload: String,
        /// The lock ConfigMap's name.
        lock: String,
    },
    /// The copy pod was created.
    CopyCreated {
        /// The copy pod's name.
        pod: String,
    },
    /// Still waiting for the copy pod to become Ready.
    Waiting {
        /// The copy pod's name.
        pod: String,
        /// What it is waiting on, from the pod's status.
        reason: String,
    },
    /// Waiting for the original pod `pod` to stop so the copy can mount `claims`.
    Releasing {
        /// The original pod that still holds the claims.
        pod: String,
        /// The PersistentVolumeClaims the copy mounts.
        claims: Vec<String>,
    },
    /// Deleted copy pods that are still terminating (their containers stopping).
    Terminating {
        /// The pods still there.
        pods: Vec<String>,
    },
    /// The copy pod's containers are running and ready.
    Ready {
        /// The copy pod's name.
        pod: String,
    },
    /// The workload was scaled to zero (a CronJob: suspended), or with `--replace-one` to one
    /// replica fewer.
    ScaledDown {
        /// The workload, e.g. "deployment/x".
        workload: String,
        /// Its replica count before.
        from: i32,
        /// The count set.
        to: i32,
    },
    /// The workload was scaled back (a CronJob: resumed).
    Restored {
        /// The workload, e.g. "deployment/x".
        workload: String,
        /// The replica count restored.
        to: i32,
    },
    /// A KEDA ScaledObject paused for the session was put back.
    Unpaused {
        /// Its name, in the session's namespace.
        scaled_object: String,
    },
    /// An object was deleted, e.g. "pod/x" or "configmap/mirrord-copy-session-y".
    Deleted {
        /// The deleted object.
        object: String,
    },
    /// Something the user should know about; the operation went on.
    Warning(String),
    /// Any other step worth telling, e.g. a KEDA ScaledObject unpaused.
    Info(String),
}

/// Progress callback.
pub type ProgressFn = dyn Fn(Progress) + Send + Sync;
