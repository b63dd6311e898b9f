//! Sessions: one ConfigMap per copy, owner of the copy pod and of any lock. This module holds
//! the session types and the lifecycle (preview / create / end / list / heartbeat).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::copy::CopyOptions;
use crate::labels;
pub use crate::model::{Progress, ProgressFn, SessionHandle};
use crate::target::TargetRef;

mod create;
mod end;
mod heartbeat;
mod query;
mod record;
mod wait;

pub use create::{create, create_or_stop, preview};
pub use end::{end, end_session, EndReport};
pub use heartbeat::{
    after_failed_renewal, confirm, heartbeat, AfterFailedRenewal, HEARTBEAT_INTERVAL,
    PROVISIONAL_LEASE, RENEW_DEADLINE, RETRY_PERIOD, RUN_LEASE,
};
pub(crate) use query::for_each_ours;
pub use query::{
    find_by_pod, find_by_target, find_unreadable_by_pod, get, list, overview, Overview, Stranded,
    Unreadable,
};
pub(crate) use record::session_from_config_map;
pub use wait::wait_copies_gone;

/// The longest `--ttl` a detached session may have: 7 days. A session is a debugging aid that
/// may hold a workload at zero; a week is long enough for any of that, and every expiry within
/// it is a time the records can always hold (RFC 3339, a four-digit year).
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// [`MAX_TTL`] as messages and `--help` say it.
pub const MAX_TTL_TEXT: &str = "7d (168h)";

/// What the copy's target container runs (README "What runs in the copy").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Runs {
    /// The target container: `kubectl exec`, `kubectl logs` and mirrord's `pod/NAME` pick it.
    pub container: String,
    /// [`labels::RUNS_PLACEHOLDER`] or [`labels::RUNS_APPLICATION`].
    pub mode: String,
    /// The image the placeholder came from (placeholder mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder_image: Option<String>,
}

impl Runs {
    /// From the copy pod's annotations: (container, mode), None on a pod that does not say.
    pub(crate) fn annotated(
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Option<(String, String)> {
        let container = annotations.get(crate::placeholder::DEFAULT_CONTAINER_ANNOTATION)?;
        let mode = annotations.get(labels::RUNS_ANNOTATION)?;
        Some((container.clone(), mode.clone()))
    }

    pub(crate) fn new(container: String, mode: String, options: &CopyOptions) -> Runs {
        let placeholder_image =
            (mode == labels::RUNS_PLACEHOLDER).then(|| options.placeholder_image().to_string());
        Runs {
            container,
            mode,
            placeholder_image,
        }
    }

    /// One line for tables: "placeholder in app", "application in app".
    pub fn summary(&self) -> String {
        format!("{} in {}", self.mode, self.container)
    }
}

/// A request to copy a target.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// Namespace of the target, where the copy is made.
    pub namespace: String,
    /// What to copy.
    pub target: TargetRef,
    /// How to copy it.
    pub options: CopyOptions,
    /// Scale the target's workload down once the copy is Ready (restored at the end), as far
    /// as `scale_to` says.
    pub scale_down: bool,
    /// With `scale_down`: to zero, or one replica fewer (`--replace-one`).
    pub scale_to: crate::ScaleTo,
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
    /// With scale-down of a workload an Argo CD Application applies: turn that Application's
    /// self-heal off for the session (otherwise only a warning).
    pub suspend_argocd: bool,
    /// Where Argo CD Applications live unless the workload's tracking id names another
    /// namespace (`argocd` by default).
    pub argocd_namespace: String,
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
    /// With `scale_down`: how far (`scaleMode`; absent in earlier records: to zero).
    #[serde(default)]
    pub scale_to: crate::ScaleTo,
    /// With `scale_down`: the counts its lock records; filled by `overview`, which lists the
    /// locks with the sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Replicas>,
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
    /// What the copy's target container runs, as its pod says; filled by `create`, and by
    /// `list` when pods are listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<Runs>,
    /// Scale-down: the workload scaled ("deployment/x"; a ReplicaSet's owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Scale-down: the KEDA ScaledObjects targeting the workload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scaled_objects: Vec<String>,
    /// Scale-down with `--suspend-argocd`: the Argo CD Application whose self-heal is off for
    /// the session, and its value before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argo_application: Option<mirrord_copy_lock::PausedApplication>,
    /// Still being created: written so by [`create`], until [`confirm`] (the copy Ready and
    /// its name handed over). Lapses [`PROVISIONAL_LEASE`] after its last heartbeat.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
    /// When [`confirm`] made it durable (absent while provisional, and in records of earlier
    /// builds). Only a confirmed session is known to have had its copy pod: `gc` ends one
    /// whose copy pod is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<DateTime<Utc>>,
    /// uid of the session ConfigMap as read: `end` deletes exactly that object.
    #[serde(skip)]
    pub record_uid: Option<String>,
}

/// The two counts of a session's scale-down, as its lock records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Replicas {
    /// The count restored when the session ends.
    pub original: i32,
    /// The count the session set while the copy lives.
    pub scaled_to: i32,
}

impl Session {
    /// When the session is over by time: a detached session at `expires`; a `run` session
    /// (no expiry) [`RUN_LEASE`] after its last heartbeat (or its creation); a provisional
    /// one (still being created) [`PROVISIONAL_LEASE`] after its last heartbeat, if that
    /// comes first. Compare with the API server's time (`mirrord_copy_lock::clock::now`),
    /// never this machine's.
    pub fn lapses_at(&self) -> DateTime<Utc> {
        let last = self.heartbeat.unwrap_or(self.created);
        let after = |lease: Duration| last + chrono::Duration::from_std(lease).unwrap_or_default();
        let by_time = self.expires.unwrap_or_else(|| after(RUN_LEASE));
        match self.provisional {
            true => by_time.min(after(PROVISIONAL_LEASE)),
            false => by_time,
        }
    }

    /// The session as [`confirm`] makes it at `now`: no longer provisional, confirmed at
    /// `now`, and a detached session's expiry its TTL (`expires - created`) from `now`. Pure:
    /// the caller shows this, then confirms it.
    pub fn as_confirmed(&self, now: DateTime<Utc>) -> Session {
        let expires = self.expires.map(|e| {
            let ttl = e - self.created;
            now.checked_add_signed(ttl).unwrap_or(e).max(e)
        });
        Session {
            provisional: false,
            confirmed: Some(now),
            expires,
            ..self.clone()
        }
    }

    /// Over by time at `now`: `gc` ends it, and a takeover may take its lock.
    pub fn has_lapsed(&self, now: DateTime<Utc>) -> bool {
        self.lapses_at() <= now
    }

    /// Its copy pod is gone (deleted by hand, being deleted, evicted, or lost with its node:
    /// a bare pod is not recreated) while the session was confirmed, so the pod did exist:
    /// the session copies nothing any more, but may still hold its workload at zero. `gc`
    /// ends it (restoring first); `status` marks it. Judged from [`Session::copy_phase`] as
    /// `list` / `overview` fill it (`None`: not listed).
    pub fn copy_gone(&self) -> bool {
        self.confirmed.is_some() && copy_phase_gone(self.copy_phase.as_deref())
    }
}

/// A copy pod's shown phase that means it is gone: not listed, being deleted, or evicted.
pub(crate) fn copy_phase_gone(phase: Option<&str>) -> bool {
    matches!(phase, None | Some("Terminating") | Some("Evicted"))
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
            scale_to: Default::default(),
            replicas: None,
            owner: "o".into(),
            host: None,
            created,
            expires,
            heartbeat,
            interference: None,
            options: CopyOptions::default(),
            copy_phase: None,
            runs: None,
            workload: None,
            scaled_objects: Vec::new(),
            argo_application: None,
            provisional: false,
            confirmed: None,
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
        // Provisional: its lease after the last heartbeat, before a far expiry.
        let creating = |ago| Session {
            provisional: true,
            ..session(Some(now + minute * 600), Some(now - ago), now - minute * 10)
        };
        assert!(!creating(minute / 2).has_lapsed(now));
        assert!(creating(minute * 2).has_lapsed(now));
        let confirmed = creating(minute * 2).as_confirmed(now);
        assert!(!confirmed.has_lapsed(now));
        assert_eq!(confirmed.confirmed, Some(now));
        // The TTL counts from the confirmation.
        assert_eq!(confirmed.expires, Some(now + minute * 610));
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
