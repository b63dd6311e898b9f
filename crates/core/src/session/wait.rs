//! Waiting for the copy pod's containers to be ready, and explaining why they were not.
//!
//! The wait ends at `ContainersReady`, not `Ready`: a copy kept out of its Services' endpoints
//! has a readiness gate that keeps `Ready` False for good (crate::placeholder), and without
//! probes the two conditions are otherwise the same.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::{Api, ResourceExt};

use super::{Progress, ProgressFn};
use crate::error::{is_not_found, Error};

/// Container waiting reasons that will not fix themselves in time for a debugging session.
/// `ErrImagePull` is not one: it is the first failed pull, which a registry blip also causes;
/// the kubelet retries, and says `ImagePullBackOff` once a retry failed too. (Watching sees
/// every state; a poll used to skip past the first.)
const FATAL_WAITING_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "PreStartHookError",
    "PostStartHookError",
];

/// Where a copy pod stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PodState {
    Ready,
    /// Not ready yet; the summary says why ("app: ContainerCreating").
    Pending(String),
    /// It will not become Ready; the reasons say why.
    Failed(Vec<String>),
}

/// Classify a pod (pure).
pub(crate) fn pod_state(pod: &Pod) -> PodState {
    if pod.metadata.deletion_timestamp.is_some() {
        return PodState::Failed(vec!["the copy pod is being deleted".into()]);
    }
    let Some(status) = &pod.status else {
        return PodState::Pending("Pending".into());
    };
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    let mut fatal = Vec::new();
    let mut waiting = Vec::new();
    for cs in statuses {
        match container_problem(cs) {
            Some((reason, true)) => fatal.push(reason),
            Some((reason, false)) => waiting.push(reason),
            None => {}
        }
    }
    let phase = status.phase.as_deref().unwrap_or("Pending");
    match phase {
        "Failed" => {
            let mut reasons = fatal;
            let pod_reason = [status.reason.as_deref(), status.message.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            if !pod_reason.is_empty() {
                reasons.push(pod_reason);
            }
            if reasons.is_empty() {
                reasons.push("the pod failed (phase Failed)".into());
            }
            return PodState::Failed(reasons);
        }
        "Succeeded" => {
            return PodState::Failed(vec![
                "the copy's containers ran to completion (phase Succeeded) before it was Ready"
                    .into(),
            ])
        }
        _ => {}
    }
    if !fatal.is_empty() {
        return PodState::Failed(fatal);
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| (c.type_ == "ContainersReady" || c.type_ == "Ready") && c.status == "True");
    if ready {
        return PodState::Ready;
    }
    if !waiting.is_empty() {
        return PodState::Pending(waiting.join(", "));
    }
    let unscheduled = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(c) = unscheduled {
        let reason = c.reason.as_deref().unwrap_or("Unschedulable");
        return PodState::Pending(match c.message.as_deref() {
            Some(message) => format!("{reason}: {message}"),
            None => reason.to_string(),
        });
    }
    PodState::Pending(phase.to_string())
}

/// A container's problem, if any: (description, fatal?).
fn container_problem(cs: &ContainerStatus) -> Option<(String, bool)> {
    let state = cs.state.as_ref()?;
    if let Some(w) = &state.waiting {
        let reason = w.reason.as_deref().unwrap_or("Waiting");
        let fatal = FATAL_WAITING_REASONS.contains(&reason);
        let text = match (fatal, w.message.as_deref()) {
            (true, Some(message)) => format!("container {}: {reason}: {message}", cs.name),
            _ => format!("{}: {reason}", cs.name),
        };
        return Some((text, fatal));
    }
    if let Some(t) = &state.terminated {
        if t.exit_code != 0 {
            let reason = t.reason.as_deref().unwrap_or("Error");
            let mut text = format!(
                "container {}: terminated: {reason} (exit code {})",
                cs.name, t.exit_code
            );
            if let Some(message) = &t.message {
                text.push_str(&format!(": {message}"));
            }
            return Some((text, true));
        }
    }
    None
}

/// Restarts of the pod's containers so far, and the last crash's description.
fn restarts(pod: &Pod) -> (i32, Option<String>) {
    let statuses = pod
        .status
        .iter()
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .chain(&s.container_statuses)
        })
        .flatten();
    let mut total = 0;
    let mut last = None;
    for cs in statuses {
        total += cs.restart_count;
        let crash = cs.last_state.as_ref().and_then(|l| l.terminated.as_ref());
        if let (true, Some(t)) = (cs.restart_count > 0, crash) {
            last = Some(format!(
                "container {} restarted {} time(s), last exit: {} (exit code {})",
                cs.name,
                cs.restart_count,
                t.reason.as_deref().unwrap_or("Error"),
                t.exit_code
            ));
        }
    }
    (total, last)
}

/// Watch the copy pod until Ready. On a fatal state: `CopyFailed` with reasons and recent
/// events; after `timeout`: `Timeout` with the last state and events. `known`: the pod as the
/// POST that created it returned it, so the watch starts from its resourceVersion without a
/// GET (one round trip fewer).
///
/// `stays_up`: once ready, keep watching that long for a crash. A probe-less container is
/// ready the moment its process starts, so an application that exits a second later would
/// otherwise pass for a good copy (the kubelet restarts it after).
pub(crate) async fn wait_ready(
    client: &kube::Client,
    namespace: &str,
    pod_name: &str,
    known: Option<Pod>,
    timeout: Duration,
    stays_up: Option<Duration>,
    on_progress: &ProgressFn,
) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut tracker = StateTracker {
        pod_name,
        last_reason: String::new(),
        on_progress,
        up_since: None,
    };
    let settled =
        tokio::time::timeout(timeout, watch_until_settled(&api, &mut tracker, known)).await;
    let settled = match (settled, stays_up) {
        (Ok(Ok(pod)), Some(window)) => {
            (on_progress)(Progress::Waiting {
                pod: pod_name.to_string(),
                reason: format!(
                    "running; watching {}s for the application to crash (--keep-command)",
                    window.as_secs()
                ),
            });
            tracker.up_since = Some(restarts(&pod).0);
            // Watching until the window closes is the good outcome.
            match tokio::time::timeout(window, watch_until_settled(&api, &mut tracker, Some(pod)))
                .await
            {
                Err(_stayed_up) => Ok(Ok(())),
                Ok(result) => Ok(result.map(|_| ())),
            }
        }
        (settled, _) => settled.map(|r| r.map(|_| ())),
    };
    let reasons = match settled {
        Ok(Ok(())) => {
            (on_progress)(Progress::Ready {
                pod: pod_name.to_string(),
            });
            return Ok(());
        }
        Ok(Err(Settled::Failed(reasons))) => reasons,
        Ok(Err(Settled::Error(e))) => return Err(e),
        Err(_elapsed) => {
            let events = recent_events(client, namespace, pod_name).await;
            let mut message = format!(
                "copy pod {pod_name} did not become Ready within {}s (last state: {})",
                timeout.as_secs(),
                tracker.last_reason
            );
            if !events.is_empty() {
                message.push_str("; recent events: ");
                message.push_str(&events.join("; "));
            }
            return Err(Error::Timeout(message));
        }
    };
    Err(Error::CopyFailed {
        pod: pod_name.to_string(),
        reasons,
        events: recent_events(client, namespace, pod_name).await,
        removed: false,
    })
}

/// Why watching stopped short of Ready.
enum Settled {
    Failed(Vec<String>),
    Error(Error),
}

/// Turns each observed pod into progress, and Ready or Failed into the end of the wait.
struct StateTracker<'a> {
    pod_name: &'a str,
    last_reason: String,
    on_progress: &'a ProgressFn,
    /// Watching a ready copy for a crash: the restarts counted when it was ready. Then no
    /// state ends the watch but a failure, and a restart is one.
    up_since: Option<i32>,
}

impl StateTracker<'_> {
    /// `Ok(true)` once ready; `Err` once it never will be.
    fn observe(&mut self, pod: &Pod) -> Result<bool, Settled> {
        let state = pod_state(pod);
        if let Some(base) = self.up_since {
            return match (state, restarts(pod)) {
                (PodState::Failed(reasons), _) => Err(Settled::Failed(reasons)),
                (_, (now, Some(crash))) if now > base => Err(Settled::Failed(vec![crash])),
                _ => Ok(false),
            };
        }
        match state {
            PodState::Ready => Ok(true),
            PodState::Failed(reasons) => Err(Settled::Failed(reasons)),
            PodState::Pending(reason) => {
                self.pending(reason);
                Ok(false)
            }
        }
    }

    /// Report a new reason for waiting (once per change).
    fn pending(&mut self, reason: String) {
        if reason != self.last_reason {
            (self.on_progress)(Progress::Waiting {
                pod: self.pod_name.to_string(),
                reason: reason.clone(),
            });
            self.last_reason = reason;
        }
    }
}

/// The pause between attempts of a wait's GET/LIST and WATCH after a blip: 100 ms, doubling to
/// 2 s, back to 100 ms once the server answers again. The caller's deadline bounds the wait.
struct Pause(Duration);

impl Pause {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(2);

    fn new() -> Pause {
        Pause(Pause::FIRST)
    }

    async fn sleep(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Pause::MAX);
    }

    fn reset(&mut self) {
        self.0 = Pause::FIRST;
    }
}

/// GET the pod, then WATCH it (fieldSelector metadata.name, as `kubectl wait` does) from that
/// resourceVersion. A closed watch, a 410 Expired or an API server blip goes back to the GET,
/// so nothing between the two is missed; the caller bounds the whole wait.
async fn watch_until_settled(
    api: &Api<Pod>,
    tracker: &mut StateTracker<'_>,
    mut known: Option<Pod>,
) -> Result<Pod, Settled> {
    let deleted = || Settled::Failed(vec!["the copy pod was deleted".into()]);
    let mut pause = Pause::new();
    loop {
        let fetched = match known.take() {
            Some(pod) => Ok(pod),
            None => api.get(tracker.pod_name).await,
        };
        let pod = match fetched {
            Ok(pod) => pod,
            Err(e) if is_not_found(&e) => return Err(deleted()),
            // A blip (overloaded or restarting API server) is not the copy's failure: retry
            // until the deadline.
            Err(e) if is_transient(&e) => {
                tracker.pending(format!(
                    "API server: {}",
                    mirrord_copy_lock::kube_error_text(&e)
                ));
                pause.sleep().await;
                continue;
            }
            Err(e) => return Err(Settled::Error(Error::from_kube(e, "get", "pods"))),
        };
        if tracker.observe(&pod)? {
            return Ok(pod);
        }
        let params = WatchParams::default()
            .fields(&format!("metadata.name={}", tracker.pod_name))
            .timeout(290);
        let version = pod.resource_version().unwrap_or_default();
        let mut events = match api.watch(&params, &version).await {
            Ok(stream) => stream.boxed(),
            Err(e) if is_transient(&e) => {
                pause.sleep().await;
                continue;
            }
            Err(e) => return Err(Settled::Error(Error::from_kube(e, "watch", "pods"))),
        };
        // Until the stream ends or breaks; then GET again.
        loop {
            match events.try_next().await {
                Ok(Some(WatchEvent::Added(pod) | WatchEvent::Modified(pod))) => {
                    pause.reset();
                    if tracker.observe(&pod)? {
                        return Ok(pod);
                    }
                }
                Ok(Some(WatchEvent::Deleted(_))) => return Err(deleted()),
                Ok(Some(WatchEvent::Bookmark(_))) => {}
                // The server's timeoutSeconds: reconnect at once.
                Ok(None) => break,
                // 410 Expired, or a broken connection: start over from a fresh GET, not in a
                // tight loop.
                Ok(Some(WatchEvent::Error(_))) | Err(_) => {
                    pause.sleep().await;
                    break;
                }
            }
        }
    }
}

/// Wait until pod `pod_name` no longer exists (the StatefulSet controller deletes `<sts>-0`
/// last when scaling to zero, and a volume is released only once its pod is gone). GET, then
/// WATCH from that resourceVersion until DELETED; a blip goes back to the GET.
pub(crate) async fn wait_gone(
    client: &kube::Client,
    namespace: &str,
    pod_name: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let gone = async {
        let mut pause = Pause::new();
        loop {
            let version = match api.get(pod_name).await {
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) if is_transient(&e) => None,
                Err(e) => return Err(Error::from_kube(e, "get", "pods")),
                Ok(pod) => pod.resource_version(),
            };
            if let Some(version) = version {
                let params = WatchParams::default()
                    .fields(&format!("metadata.name={pod_name}"))
                    .timeout(290);
                match api.watch(&params, &version).await {
                    Ok(stream) => {
                        let mut events = stream.boxed();
                        while let Ok(Some(event)) = events.try_next().await {
                            match event {
                                WatchEvent::Deleted(_) => return Ok(()),
                                WatchEvent::Error(_) => break,
                                _ => pause.reset(),
                            }
                        }
                    }
                    Err(e) if is_transient(&e) => {}
                    Err(e) => return Err(Error::from_kube(e, "watch", "pods")),
                }
            }
            pause.sleep().await;
        }
    };
    match tokio::time::timeout(timeout, gone).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout(format!(
            "pod {pod_name} was still running {}s after its workload was scaled to zero, so its volume claims are not free for the copy",
            timeout.as_secs()
        ))),
    }
}

/// Wait until no copy pod of `sessions` is left in `namespace`: deletion is graceful, so a
/// deleted pod stays Terminating until its containers stop (at once for the placeholder,
/// up to the grace period for a container that ignores SIGTERM). One LIST by label, then a
/// WATCH from its resourceVersion while any is left; `on_waiting` hears the pods still there.
pub async fn wait_copies_gone(
    client: &kube::Client,
    namespace: &str,
    sessions: &[String],
    timeout: Duration,
    on_waiting: &(dyn Fn(&[String]) + Send + Sync),
) -> Result<(), Error> {
    if sessions.is_empty() {
        return Ok(());
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!(
        "{},{} in ({})",
        crate::labels::role_selector(crate::labels::Role::Copy),
        crate::labels::SESSION_LABEL,
        sessions.join(",")
    );
    let mut left: Vec<String> = Vec::new();
    let gone = async {
        let mut pause = Pause::new();
        loop {
            let list = match api.list(&ListParams::default().labels(&selector)).await {
                Ok(list) => list,
                Err(e) if is_transient(&e) => {
                    pause.sleep().await;
                    continue;
                }
                Err(e) => return Err(Error::from_kube(e, "list", "pods")),
            };
            left = list.items.iter().map(|p| p.name_any()).collect();
            if left.is_empty() {
                return Ok(());
            }
            on_waiting(&left);
            let version = list.metadata.resource_version.unwrap_or_default();
            let params = WatchParams::default().labels(&selector).timeout(290);
            if let Ok(stream) = api.watch(&params, &version).await {
                let mut events = stream.boxed();
                while let Ok(Some(event)) = events.try_next().await {
                    match event {
                        WatchEvent::Deleted(pod) => {
                            left.retain(|n| *n != pod.name_any());
                            if left.is_empty() {
                                return Ok(());
                            }
                        }
                        WatchEvent::Error(_) => break,
                        _ => {}
                    }
                }
            }
            // The watch ended or broke: list again, not in a tight loop.
            pause.sleep().await;
        }
    };
    match tokio::time::timeout(timeout, gone).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout(format!(
            "pod(s) {} still terminating {}s after they were deleted (a container that ignores SIGTERM holds its pod for the grace period); `kubectl get pod -n {namespace}` shows them",
            left.join(", "),
            timeout.as_secs()
        ))),
    }
}

/// Errors worth retrying: throttling, server errors, and requests that got no answer.
fn is_transient(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// The pod's most recent events, oldest first, as "Warning Failed: message". Diagnostics
/// only: if they cannot be read, there are none.
pub(crate) async fn recent_events(
    client: &kube::Client,
    namespace: &str,
    pod_name: &str,
) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let lp = ListParams::default()
        .fields(&format!("involvedObject.name={pod_name}"))
        .limit(100);
    let Ok(list) = api.list(&lp).await else {
        return Vec::new();
    };
    let mut events: Vec<Event> = list
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref().is_none_or(|k| k == "Pod"))
        .collect();
    events.sort_by_key(|e| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or(e.event_time.as_ref().map(|t| t.0))
            .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
    });
    let skip = events.len().saturating_sub(10);
    events
        .iter()
        .skip(skip)
        .map(|e| {
            format!(
                "{} {}: {}",
                e.type_.as_deref().unwrap_or("Normal"),
                e.reason.as_deref().unwrap_or(""),
                e.message.as_deref().unwrap_or("").trim()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).unwrap()
    }

    #[test]
    fn ready_condition_means_ready() {
        let p = pod(
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                "state": {"running": {}}}]}),
        );
        assert_eq!(pod_state(&p), PodState::Ready);
    }

    #[test]
    fn fatal_waiting_reasons_fail() {
        for reason in ["CrashLoopBackOff", "ImagePullBackOff", "InvalidImageName"] {
            let p = pod(json!({"phase": "Pending",
                "containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": false, "restartCount": 3,
                    "state": {"waiting": {"reason": reason, "message": "boom"}}}]}));
            match pod_state(&p) {
                PodState::Failed(r) => assert_eq!(r, [format!("container app: {reason}: boom")]),
                other => panic!("{reason}: {other:?}"),
            }
        }
    }

    #[test]
    fn terminated_with_error_and_failed_phase_fail() {
        let p = pod(json!({"phase": "Running",
            "containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}));
        assert!(matches!(pod_state(&p), PodState::Failed(r) if r[0].contains("exit code 1")));
        let p = pod(json!({"phase": "Failed", "reason": "Evicted", "message": "low memory"}));
        assert_eq!(
            pod_state(&p),
            PodState::Failed(vec!["Evicted: low memory".into()])
        );
        let p = pod(json!({"phase": "Succeeded"}));
        assert!(matches!(pod_state(&p), PodState::Failed(_)));
    }

    #[test]
    fn a_first_failed_pull_is_retried_not_fatal() {
        let p = pod(json!({"phase": "Pending",
            "containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ErrImagePull", "message": "registry timeout"}}}]}));
        assert_eq!(pod_state(&p), PodState::Pending("app: ErrImagePull".into()));
    }

    #[test]
    fn pending_states_explain_themselves() {
        assert_eq!(
            pod_state(&pod(json!({}))),
            PodState::Pending("Pending".into())
        );
        let p = pod(json!({"phase": "Pending",
            "containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert_eq!(
            pod_state(&p),
            PodState::Pending("app: ContainerCreating".into())
        );
        let p = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/3 nodes are available"}]}),
        );
        assert_eq!(
            pod_state(&p),
            PodState::Pending("Unschedulable: 0/3 nodes are available".into())
        );
    }
}
