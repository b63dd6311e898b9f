//! Sessions: one ConfigMap per copy, owner of the copy pod and of any lock. This module holds
//! the session types and the lifecycle (preview / create / end / list / heartbeat).

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::{Deserialize, Serialize};

use crate::copy::CopyOptions;
use crate::target::TargetRef;

mod lifecycle;
mod query;
mod record;
mod wait;

pub use lifecycle::{
    create, end, end_session, heartbeat, preview, EndReport, HEARTBEAT_INTERVAL, RENEW_DEADLINE,
    RETRY_PERIOD, RUN_LEASE,
};
pub(crate) use query::for_each_ours;
pub use query::{find_by_pod, find_by_target, get, list, overview, Overview, Stranded};
pub(crate) use record::session_from_config_map;

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
    /// The copy pod is Ready.
    Ready {
        /// The copy pod's name.
        pod: String,
    },
    /// The workload was scaled to zero (a CronJob: suspended).
    ScaledDown {
        /// The workload, e.g. "deployment/x".
        workload: String,
        /// Its replica count before.
        from: i32,
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

/// A request to copy a target.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// Namespace of the target, where the copy is made.
    pub namespace: String,
    /// What to copy.
    pub target: TargetRef,
    /// How to copy it.
    pub options: CopyOptions,
    /// Scale the target's workload to zero once the copy is Ready (restored at the end).
    pub scale_down: bool,
    /// Detached sessions expire after this; `None` for `run` sessions (kept alive by heartbeat).
    pub ttl: Option<Duration>,
    /// The Kubernetes user (SelfSubjectReview), or `user@host` where the cluster cannot say.
    pub owner: String,
    /// `localuser@hostname` of this machine, recorded beside the owner.
    pub host: String,
    /// Wait for the copy pod to be Ready before returning (scale-down always waits).
    pub wait: bool,
    /// How long to wait for the copy (and for a previous copy to go).
    pub timeout: Duration,
    /// Return the caller's live detached session of the same target and options, if any, instead of a new one.
    pub reuse: bool,
    /// With scale-down of a workload a Flux Kustomization applies: annotate it
    /// `kustomize.toolkit.fluxcd.io/reconcile: disabled` for the session.
    pub suspend_flux: bool,
}

/// A live session, as read back from its ConfigMap (and, from `list`, its copy pod).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// The session id.
    pub id: String,
    /// Namespace of the session and its copy pod.
    pub namespace: String,
    /// Canonical target string, e.g. "deployment/x" or "deployment/x/container/c".
    pub target: String,
    /// Name of the copy pod.
    pub copy_pod: String,
    /// Whether the session scaled its workload down.
    pub scale_down: bool,
    /// The Kubernetes user who made it.
    pub owner: String,
    /// `localuser@hostname` that made it (absent in records from before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// When gc may end it; `None` for a `run` session (see [`Session::lapses_at`]).
    pub expires: Option<DateTime<Utc>>,
    /// Last renewal by `run`'s heartbeat (absent in records that never had one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<DateTime<Utc>>,
    /// Someone else scaled the workload during the session ("Deployment ns/x was scaled to 2
    /// by kubectl at ..."), as `run`'s heartbeat last saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interference: Option<String>,
    /// The options the copy was made with.
    pub options: CopyOptions,
    /// The copy pod's phase; filled by `list` when pods are listed.
    pub copy_phase: Option<String>,
    /// Scale-down: the workload scaled ("deployment/x"; a ReplicaSet's owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Scale-down: the KEDA ScaledObjects targeting the workload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scaled_objects: Vec<String>,
    /// uid of the session ConfigMap as read: `end` deletes exactly that object.
    #[serde(skip)]
    pub record_uid: Option<String>,
}

impl Session {
    /// When the session is over by time: a detached session at `expires`; a `run` session
    /// (no expiry) [`RUN_LEASE`] after its last heartbeat (or its creation). Compare with the
    /// API server's time (`mirrord_copy_lock::clock::now`), never this machine's.
    pub fn lapses_at(&self) -> DateTime<Utc> {
        self.expires.unwrap_or_else(|| {
            self.heartbeat.unwrap_or(self.created)
                + chrono::Duration::from_std(RUN_LEASE).unwrap_or_default()
        })
    }

    /// Over by time at `now`: `gc` ends it, and a takeover may take its lock.
    pub fn has_lapsed(&self, now: DateTime<Utc>) -> bool {
        self.lapses_at() <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lapse_rules() {
        let now = mirrord_copy_lock::clock::now();
        let minute = chrono::Duration::seconds(60);
        let session = |expires, heartbeat, created| Session {
            id: "i".into(),
            namespace: "n".into(),
            target: "deployment/x".into(),
            copy_pod: "x-copy-aaaaa".into(),
            scale_down: false,
            owner: "o".into(),
            host: None,
            created,
            expires,
            heartbeat,
            interference: None,
            options: CopyOptions::default(),
            copy_phase: None,
            workload: None,
            scaled_objects: Vec::new(),
            record_uid: None,
        };
        assert!(session(Some(now - minute), None, now).has_lapsed(now));
        assert!(!session(Some(now + minute), None, now).has_lapsed(now));
        // run sessions: by heartbeat, falling back to creation.
        let beat = |ago| session(None, Some(now - ago), now - minute * 10);
        assert!(!beat(minute / 2).has_lapsed(now));
        assert!(beat(minute * 2).has_lapsed(now));
        assert!(session(None, None, now - minute * 2).has_lapsed(now));
        assert_eq!(beat(minute).lapses_at(), now);
    }

    #[test]
    fn progress_serializes_every_variant() {
        let all = [
            Progress::CopyCreated { pod: "p".into() },
            Progress::Warning("w".into()),
            Progress::Info("i".into()),
        ];
        for p in all {
            let json = serde_json::to_value(&p).unwrap();
            assert_eq!(serde_json::from_value::<Progress>(json).unwrap(), p);
        }
        assert_eq!(
            serde_json::to_value(Progress::Warning("w".into())).unwrap(),
            serde_json::json!({"event": "warning", "data": "w"})
        );
    }
}
