//! Breadcrumbs a teammate without the plugin can follow: while a workload is scaled down, an
//! annotation says in words who holds it, why, until when, and the commands that put it back;
//! and a Kubernetes Event on the workload records each scale-down, restore and interference,
//! so `kubectl describe` tells the story. Events are best-effort: one that cannot be written
//! (no `create events` right, say) is a warning, never a failure.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Event;
use kube::api::Api;
use serde_json::json;

use super::workload::{ScaleKind, ScaleTarget};
use crate::model::{Progress, ProgressFn};
use mirrord_copy_lock::rfc3339;

/// Workload annotation while scaled down: the story in words, with the way back.
pub(crate) const NOTE_ANNOTATION: &str = "mirrord-copy.io/note";

/// Event reason: a session scaled the workload down.
pub(crate) const SCALED_DOWN: &str = "MirrordCopyScaledDown";
/// Event reason: the workload was put back.
pub(crate) const RESTORED: &str = "MirrordCopyRestored";
/// Event reason: someone else changed the count of a workload a session holds.
pub(crate) const INTERFERENCE: &str = "MirrordCopyInterference";

/// Who holds a workload at zero, for the note and the Event.
pub(crate) struct Story<'a> {
    pub target: &'a ScaleTarget,
    pub holder: &'a str,
    pub session: &'a str,
    pub copy_pod: &'a str,
    pub original_replicas: i32,
    /// The count the session set (0, or one less with `--replace-one`).
    pub scaled_to: i32,
    pub expires: Option<DateTime<Utc>>,
}

/// The plain kubectl command that puts the count back, for someone without the plugin.
fn plain_command(target: &ScaleTarget, replicas: i32) -> String {
    match target.kind {
        ScaleKind::CronJob => format!(
            "kubectl patch cronjob/{} -n {} --type merge -p '{{\"spec\":{{\"suspend\":false}}}}'",
            target.name, target.namespace
        ),
        kind => format!(
            "kubectl scale {}/{} -n {} --replicas={replicas}",
            kind.lower(),
            target.name,
            target.namespace
        ),
    }
}

impl Story<'_> {
    fn until(&self) -> String {
        match self.expires {
            Some(at) => format!("until {}", rfc3339(at)),
            None => "while its `run` command runs".into(),
        }
    }

    /// What the workload's annotation says while it is held.
    pub(crate) fn note(&self) -> String {
        let was = match self.target.kind {
            ScaleKind::CronJob => "Suspended".to_string(),
            _ => format!(
                "Scaled to {} from {}",
                self.scaled_to, self.original_replicas
            ),
        };
        let copy = match self.scaled_to {
            0 => String::new(),
            _ => " in place of one replica".to_string(),
        };
        format!(
            "{was} by kubectl mirrord-copy for {} (session {}, copy pod {}{copy}), {}. \
             To put it back: `kubectl mirrord-copy gc -n {}`; without the plugin: `{}`.",
            self.holder,
            self.session,
            self.copy_pod,
            self.until(),
            self.target.namespace,
            plain_command(self.target, self.original_replicas),
        )
    }
}

/// The Event message of a restore.
pub(crate) fn restored(target: &ScaleTarget, session: &str, to: i32) -> String {
    match target.kind {
        ScaleKind::CronJob => format!("Resumed by kubectl mirrord-copy (session {session} ended)"),
        _ => format!("Restored to {to} replicas by kubectl mirrord-copy (session {session} ended)"),
    }
}

/// The Event for `reason` on the workload, as client-go's recorder names and fills it.
fn event(
    target: &ScaleTarget,
    reason: &str,
    type_: &str,
    message: &str,
    now: DateTime<Utc>,
) -> Event {
    let at = rfc3339(now);
    let micro = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let component = mirrord_copy_lock::FIELD_MANAGER;
    let uid = (!target.uid.is_empty()).then_some(target.uid.as_str());
    serde_json::from_value(json!({
        "metadata": {
            // client-go: "<object>.<unix nanoseconds in hex>".
            "name": format!("{}.{:x}", target.name, now.timestamp_nanos_opt().unwrap_or_default()),
            "namespace": target.namespace,
        },
        "involvedObject": {
            "apiVersion": target.kind.resource().api_version,
            "kind": target.kind.api_kind(),
            "name": target.name,
            "namespace": target.namespace,
            "uid": uid,
        },
        "reason": reason,
        "message": message,
        "type": type_,
        "count": 1,
        "firstTimestamp": at,
        "lastTimestamp": at,
        "eventTime": micro,
        "action": reason.trim_start_matches("MirrordCopy"),
        "reportingComponent": component,
        "reportingInstance": component,
        "source": {"component": component},
    }))
    .expect("an Event")
}

/// Record an Event on the workload; a failure is a warning, never the command's error.
pub(crate) async fn record(
    client: &kube::Client,
    target: &ScaleTarget,
    reason: &str,
    type_: &str,
    message: &str,
    on_progress: &ProgressFn,
) {
    let events: Api<Event> = Api::namespaced(client.clone(), &target.namespace);
    let now = mirrord_copy_lock::clock::now();
    let made = events
        .create(
            &mirrord_copy_lock::post_params(),
            &event(target, reason, type_, message, now),
        )
        .await;
    if let Err(e) = made {
        on_progress(Progress::Warning(format!(
            "could not record Event {reason} on {} ({}); the workload's annotation {NOTE_ANNOTATION} still says it",
            target.describe(),
            mirrord_copy_lock::kube_error_text(&e)
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: ScaleKind) -> ScaleTarget {
        ScaleTarget {
            kind,
            name: "web".into(),
            namespace: "shop".into(),
            uid: "u1".into(),
        }
    }

    #[test]
    fn the_note_names_holder_session_copy_expiry_and_both_ways_back() {
        let t = target(ScaleKind::Deployment);
        let at = DateTime::parse_from_rfc3339("2026-12-07T05:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let story = Story {
            target: &t,
            holder: "alice (alice@laptop)",
            session: "abc123",
            copy_pod: "web-copy-x7k2p",
            original_replicas: 3,
            scaled_to: 0,
            expires: Some(at),
        };
        let note = story.note();
        for part in [
            "Scaled to 0 from 3",
            "alice (alice@laptop)",
            "session abc123",
            "copy pod web-copy-x7k2p",
            "until 2026-12-07T05:00:00Z",
            "`kubectl mirrord-copy gc -n shop`",
            "`kubectl scale deployment/web -n shop --replicas=3`",
        ] {
            assert!(note.contains(part), "{part:?} in {note}");
        }
    }

    #[test]
    fn a_replaced_replica_is_told_with_the_same_way_back() {
        let t = target(ScaleKind::StatefulSet);
        let story = Story {
            target: &t,
            holder: "h",
            session: "s",
            copy_pod: "web-copy-x",
            original_replicas: 3,
            scaled_to: 2,
            expires: None,
        };
        let note = story.note();
        for part in [
            "Scaled to 2 from 3",
            "copy pod web-copy-x in place of one replica",
            "`kubectl scale statefulset/web -n shop --replicas=3`",
        ] {
            assert!(note.contains(part), "{part:?} in {note}");
        }
    }

    #[test]
    fn a_cronjob_is_resumed_not_scaled() {
        let t = target(ScaleKind::CronJob);
        let story = Story {
            target: &t,
            holder: "h",
            session: "s",
            copy_pod: "p",
            original_replicas: 1,
            scaled_to: 0,
            expires: None,
        };
        let note = story.note();
        assert!(note.starts_with("Suspended"), "{note}");
        assert!(
            note.contains(r#"-p '{"spec":{"suspend":false}}'"#),
            "{note}"
        );
        assert!(note.contains("while its `run` command runs"), "{note}");
    }

    #[test]
    fn events_are_named_and_filled_as_client_go_does() {
        let t = target(ScaleKind::Deployment);
        let now = Utc::now();
        let e = event(&t, SCALED_DOWN, "Normal", "m", now);
        let name = e.metadata.name.unwrap();
        assert!(name.starts_with("web."), "{name}");
        assert_eq!(e.involved_object.kind.as_deref(), Some("Deployment"));
        assert_eq!(e.involved_object.api_version.as_deref(), Some("apps/v1"));
        assert_eq!(e.involved_object.uid.as_deref(), Some("u1"));
        assert_eq!(e.reason.as_deref(), Some(SCALED_DOWN));
    }
}
