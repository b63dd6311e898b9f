//! A kubelet (plus the scheduler's binding and the pod garbage collector's part) for one node,
//! `fake-node`. Every pod is bound (spec.nodeName, PodScheduled, Event `Scheduled`); `ready_delay`
//! later its sandbox is up (podIP, PodReadyToStartContainers) and its containers start, each
//! from what the pod spec and the image say, through the process model of [`crate::process`]:
//! nothing a test writes anywhere else decides a pod's fate.
//!
//! ## Images ([`crate::images::Registry`], `FakeCluster::images()`)
//! `imagePullPolicy` Always pulls at every start (Events `Pulling`, `Pulled` "Successfully pulled
//! image ... Image size: N bytes."); IfNotPresent starts a preloaded (the kit's) or already
//! pulled image at once (`Pulled` "Container image ... already present on machine and can be
//! accessed by the pod"); Never needs it present (else waiting `ErrImageNeverPull`). An image the
//! registry does not hold: waiting `ErrImagePull` (`rpc error: code = NotFound desc = failed to
//! pull and unpack image "N": failed to resolve reference "N": N: not found`, N normalized),
//! Events `Pulling`, Warning `Failed` (the pull's message, then `Error: ErrImagePull`); 10 s
//! later (the pod worker's retry) `ImagePullBackOff` (`Back-off pulling image "X": ErrImagePull:
//! ...`, Normal `BackOff`, Warning `Failed` `Error: ImagePullBackOff`) for the pull back-off (10 s,
//! doubling to 300 s), then a new pull. The pod stays Pending. A malformed reference:
//! `InvalidImageName` (Warning `InspectFailed`). Those are the real cluster's texts.
//!
//! ## Containers
//! Init containers run one after the other, each until it exits 0 (a failing one restarts per
//! restartPolicy, with back-off; with Never the pod Fails); a sidecar (an init container with
//! restartPolicy Always) starts, and the next init container starts once it has; then all
//! containers start. Events `Created` "Container created", `Started` "Container started"
//! (fieldPath `spec.containers{c}` / `spec.initContainers{c}`). A container is Ready the moment
//! it runs (probes are not run: a divergence, see below). When its process exits it is
//! `terminated` (exit code, `Completed`/`Error`); restartPolicy decides: Never leaves it (the pod
//! Succeeds when every container exited 0, else Fails), OnFailure restarts it on a non-zero
//! code, Always (and every sidecar) always. Restarts follow the kubelet's back-off (`doBackOff`,
//! flowcontrol.Backoff): the first restart is immediate (~150 ms), later ones wait 10 s, 20 s,
//! 40 s ... up to 300 s (reset when the container ran 600 s); while it waits the state is
//! `waiting` `CrashLoopBackOff` ("back-off 10s restarting failed container=C pod=N_NS(UID)"),
//! shown one second after the exit, with `lastState.terminated` and a growing restartCount, and
//! a Warning `BackOff` Event "Back-off restarting failed container C in pod N_NS(UID)". A
//! start error (argv\[0\] missing, see [`crate::process`]) is `lastState.terminated` exit 128
//! `StartError` (startedAt 1970-01-01T00:00:00Z) with waiting `RunContainerError`, a Warning
//! `Failed` `Error: <message>`, and the same back-off. Events repeat as the real recorder's do:
//! one Event per message, its `count` and `lastTimestamp` bumped.
//!
//! ## Pod status
//! phase by the kubelet's `getPhase`; conditions PodReadyToStartContainers, Initialized ("containers
//! with incomplete status: [i]"), Ready, ContainersReady ("containers with unready status: [c]";
//! `PodCompleted`/`PodFailed` once terminal), PodScheduled, after any condition another component
//! wrote (kept, as the status manager merges them). Ready needs ContainersReady and every
//! `spec.readinessGates[].conditionType` condition True, else `ReadinessGatesNotReady`:
//! `corresponding condition of pod readiness gate "X" does not exist.` or `the status of pod
//! readiness gate "X" is not "True", but False`. A running container reports the image as
//! containerd does (see [`crate::images`]).
//!
//! ## Deletion
//! A pod deleted with a grace period (see `Store::delete`) keeps running until the kubelet has
//! stopped it: Events `Killing` "Stopping container C", SIGTERM to every running container
//! (sidecars after the others have stopped) through the process model; those that exit on it
//! end at once, the others are killed at the deadline (exit 137, `Error`). Once nothing runs the
//! kubelet writes the terminal phase (Succeeded when every container exited 0, else Failed) and
//! deletes the pod with grace 0, or leaves it to its finalizers. The kill keeps the deadline it
//! started with: a later delete shortening the grace period changes only the object (as the
//! kit's kubelet did). A pod whose regular containers
//! are done (restartPolicy Never/OnFailure) has its sidecars stopped the same way, then turns
//! terminal. A pod bound to another node and being deleted is removed at once (the pod garbage
//! collector's orphan rule, without its 40 s quarantine).
//!
//! ## Volumes
//! Checked before a pod is bound and before its containers start:
//! - the scheduler's VolumeRestrictions/VolumeBinding PreFilter: a claim that does not exist,
//!   is being deleted, or is not bound yet keeps the pod Pending and unscheduled (PodScheduled
//!   False, reason Unschedulable) with a Warning `FailedScheduling` Event worded as
//!   `FitError.Error()` words it for one node, e.g. `0/1 nodes are available:
//!   persistentvolumeclaim "data-db-0" not found. preemption: 0/1 nodes are available: 1
//!   Preemption is not helpful for scheduling.`; the pod is bound once the claim is there;
//! - VolumeRestrictions' Filter: a ReadWriteOncePod claim used by another scheduled, active pod
//!   keeps the pod unscheduled the same way (`1 node has pod using PersistentVolumeClaim with
//!   the same name and ReadWriteOncePod access mode`, then `1 No preemption victims found for
//!   incoming pod`: the pods have the same priority);
//! - the attach/detach controller: a ReadWriteOnce claim whose volume another active pod holds
//!   gets a Warning `FailedAttachVolume` `Multi-Attach error for volume "pvc-<uid>" Volume is
//!   already used by pod(s) <name>` and the pod stays Pending in `ContainerCreating` (no pod IP,
//!   PodReadyToStartContainers False) until that pod is deleted or terminal, then starts.
//!   ReadWriteMany and ReadOnlyMany claims are shared freely.
//!
//! ## Divergences
//! Probes are not run: a container with a readinessProbe is Ready when it starts, a
//! startupProbe never holds `started` back, a failing livenessProbe never restarts anything.
//! Sandbox creation and the pull take `ready_delay` together (the real ones ~0.5-1.5 s). The
//! real kubelet shows a crashed container `terminated` until its next sync (seen at ~1 s, and
//! sometimes until the back-off expired) and its back-off jitters by a few seconds; its
//! `ErrImagePull` -> `ImagePullBackOff` alternation follows its pod worker's 10-15 s retries.
//! `env` from `valueFrom`/`envFrom` is not resolved (empty for `$(VAR)`), and a missing
//! ConfigMap or Secret (env or volume) does not hold the container in
//! `CreateContainerConfigError`/`ContainerCreating`; container logs are not kept. There is one
//! node, but a ReadWriteOnce volume behaves as on a multi-node cluster, where the second pod
//! usually lands on another node (on one node upstream would share it); the kubelet's
//! `FailedMount` timeout Events (after two minutes) are not sent; one `FailedScheduling` Event
//! per distinct message instead of a count; preemption never evicts the pod holding a
//! ReadWriteOncePod claim (it would, for a higher-priority pod); a pod created already bound to
//! the node waits in `ContainerCreating` for a missing or unbound claim, without Events.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::util::{self, deleting, name, namespace, pod_active, uid};
use super::volumes::claim_names;
use super::{rt, Controllers, KubeletConfig, Reconciler, PODS, PVCS};
use crate::images::{normalize, Image, Registry};
use crate::process::{self, Mount, StartError, VolumeKind, Volumes};
use crate::store::{DeleteOptions, ResKey, Store};

mod attach_detach;
mod events;
mod scheduler;
mod status;

use events::{emit, Recorder};
use scheduler::{unschedulable, unschedulable_status};
use status::status_of;

pub(super) const NODE: &str = "fake-node";
const HOST_IP: &str = "10.0.0.10";

/// flowcontrol.Backoff of the kubelet's container restarts and image pulls.
const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A container that exited outside its back-off restarts this soon (the real one: ~150 ms).
const RESTART_LAG: Duration = Duration::from_millis(150);
/// A crashed container is shown `terminated` this long before `CrashLoopBackOff`.
const STATUS_LAG: Duration = Duration::from_secs(1);
/// The pod worker retries a failed sync (an image pull) after this.
const SYNC_RETRY: Duration = Duration::from_secs(10);
/// The status manager deletes a stopped pod this long after its terminal status (the kit:
/// ~0.5 s).
const REMOVE_LAG: Duration = Duration::from_millis(500);
/// What a start error reports as its start time.
const ZERO_TIME: &str = "1970-01-01T00:00:00Z";

#[derive(Default)]
pub(super) struct Kubelet {
    /// uid -> what we know of the pod.
    pods: HashMap<String, Tracked>,
    next_ip: u32,
    /// `<namespace>/<claim>` of a ReadWriteOnce claim -> uid of the pod its volume is attached
    /// for (the attach/detach controller's actual state of the world).
    attached: HashMap<String, String>,
    /// Digests of the images pulled onto the node (besides the preloaded ones).
    pulled: HashSet<String>,
}

/// What one pass knows of the pods that use claims (only those, to keep a pass cheap).
struct Snapshot {
    /// `<namespace>/<claim>` -> uids of the active pods bound to a node that use it (the
    /// scheduler's PVC reference counts).
    claim_users: HashMap<String, Vec<String>>,
    /// Active pods with claims, by uid.
    users: HashMap<String, Arc<Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Init,
    Sidecar,
    Main,
}

/// flowcontrol.Backoff's entry for one container.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    current: Duration,
    last_update: Instant,
}

fn expired(event: Instant, b: &Backoff) -> bool {
    event.saturating_duration_since(b.last_update) > 2 * MAX_BACKOFF
}

/// `IsInBackOffSince(key, eventTime)`.
fn in_backoff_since(b: &Option<Backoff>, event: Instant, now: Instant) -> bool {
    b.as_ref()
        .is_some_and(|b| !expired(event, b) && now.saturating_duration_since(event) < b.current)
}

/// `Next(key, eventTime)`.
fn next_backoff(b: &mut Option<Backoff>, event: Instant, now: Instant) {
    match b {
        Some(x) if !expired(event, x) => {
            x.current = (x.current * 2).min(MAX_BACKOFF);
            x.last_update = now;
        }
        _ => {
            *b = Some(Backoff {
                current: INITIAL_BACKOFF,
                last_update: now,
            })
        }
    }
}

/// A Go duration as the kubelet prints it: `10s`, `1m20s`, `5m0s`.
fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The RFC 3339 wall time of an instant (seconds).
fn wall(at: Instant) -> String {
    let ago = Instant::now().saturating_duration_since(at);
    let t = chrono::Utc::now() - chrono::Duration::from_std(ago).unwrap_or_default();
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One ended container instance.
#[derive(Debug, Clone)]
struct Term {
    code: i32,
    reason: &'static str,
    message: Option<String>,
    started: String,
    finished: String,
    at: Instant,
    id: String,
}

impl Term {
    fn json(&self) -> Value {
        let mut t = json!({"exitCode": self.code, "reason": self.reason, "startedAt": self.started,
            "finishedAt": self.finished, "containerID": self.id});
        if let Some(m) = &self.message {
            t["message"] = json!(m);
        }
        json!({ "terminated": t })
    }
}

#[derive(Debug)]
struct Run {
    since: Instant,
    wall: String,
    proc: process::Process,
    id: String,
    signalled: bool,
    /// The kubelet has reported it running: its exit can be seen from the next pass on (the
    /// real PLEG notices an exit after the start was reported, so a container that exits at
    /// once is seen Running, and Ready, first: `boom2` on the kit was Running+Ready for
    /// 0.19 s).
    shown: bool,
}

/// One container of a pod, as the runtime and the kubelet know it.
#[derive(Debug)]
struct Ctr {
    name: String,
    kind: Kind,
    spec: Value,
    restarts: i64,
    /// Instances created so far (a start error counts: containerd created it).
    instances: u32,
    /// A process started at least once.
    started_once: bool,
    run: Option<Run>,
    /// The latest instance's end.
    term: Option<Term>,
    /// The one before (`lastState` while `term` is the state).
    prev: Option<Term>,
    /// Waiting with no instance to show (creating, or the image cannot be had).
    waiting: Option<(&'static str, Option<String>)>,
    backoff: Option<Backoff>,
    /// The instance whose BackOff Event was sent.
    backoff_said: u32,
    pull_failures: u32,
    /// After a failed pull: from when the syncs show ImagePullBackOff, and the pull's error.
    pull_backoff: Option<(Instant, String)>,
    /// Do not try to pull or create before this.
    next_try: Option<Instant>,
    image: Option<Arc<Image>>,
}

impl Ctr {
    fn new(spec: &Value, kind: Kind, has_inits: bool) -> Ctr {
        Ctr {
            name: spec["name"].as_str().unwrap_or("").to_string(),
            kind,
            spec: spec.clone(),
            restarts: 0,
            instances: 0,
            started_once: false,
            run: None,
            term: None,
            prev: None,
            waiting: Some((
                if has_inits {
                    "PodInitializing"
                } else {
                    "ContainerCreating"
                },
                None,
            )),
            backoff: None,
            backoff_said: 0,
            pull_failures: 0,
            pull_backoff: None,
            next_try: None,
            image: None,
        }
    }

    fn field_path(&self) -> String {
        let list = if self.kind == Kind::Main {
            "containers"
        } else {
            "initContainers"
        };
        format!("spec.{list}{{{}}}", self.name)
    }

    /// An init container that exited 0.
    fn completed(&self) -> bool {
        self.run.is_none()
            && self.waiting.is_none()
            && self.term.as_ref().is_some_and(|t| t.code == 0)
    }

    fn should_restart(&self, policy: &str, code: i32) -> bool {
        match self.kind {
            Kind::Sidecar => true,
            Kind::Init => code != 0 && policy != "Never",
            Kind::Main => match policy {
                "Never" => false,
                "OnFailure" => code != 0,
                _ => true,
            },
        }
    }

    /// Ended and will be started again.
    fn restart_pending(&self, policy: &str, killing: bool) -> bool {
        !killing
            && self.run.is_none()
            && self
                .term
                .as_ref()
                .is_some_and(|t| self.should_restart(policy, t.code))
    }

    /// Ended for good (it will not run again).
    fn done(&self, policy: &str) -> bool {
        self.run.is_none()
            && self.waiting.is_none()
            && self
                .term
                .as_ref()
                .is_some_and(|t| !self.should_restart(policy, t.code))
    }

    fn end(&mut self, at: Instant, code: i32) {
        if let Some(r) = self.run.take() {
            self.term = Some(Term {
                code,
                reason: if code == 0 { "Completed" } else { "Error" },
                message: None,
                started: r.wall,
                finished: wall(at),
                at,
                id: r.id,
            });
        }
    }

    /// Let the process run until `now`.
    fn step(&mut self, now: Instant) {
        if let Some(r) = &mut self.run {
            if !r.shown {
                return;
            }
            if let Some((at, code)) = r.proc.advance(now.saturating_duration_since(r.since)) {
                let at = r.since + at;
                self.end(at, code);
            }
        }
    }
}

/// A termination in progress (a graceful delete, or the end of a finished pod's sidecars).
#[derive(Debug)]
struct Kill {
    deadline: Instant,
    announced: bool,
}

struct Tracked {
    bound: Instant,
    ip: String,
    /// The sandbox is up: podIP, containers may start.
    sandbox: bool,
    start_time: Option<String>,
    ctrs: Vec<Ctr>,
    volumes: Volumes,
    recorder: Recorder,
    /// Messages of the FailedScheduling / FailedAttachVolume Events already sent.
    said: HashSet<String>,
    /// The pod waited for a volume's attachment: its start is counted from the attachment.
    waited_for_volume: bool,
    kill: Option<Kill>,
    /// Terminal: nothing runs or starts any more.
    finished: bool,
    /// When it turned terminal.
    finished_at: Option<Instant>,
    /// The kubelet's own final delete was sent.
    deleted: bool,
}

/// What a pass over one pod works with.
struct PodEnv<'a> {
    store: &'a Store,
    pod: &'a Value,
    images: &'a Registry,
    pulled: &'a mut HashSet<String>,
    now: Instant,
    policy: String,
}

impl PodEnv<'_> {
    fn record(&self, rec: &mut Recorder, reason: &str, ty: &str, c: &Ctr, message: &str) {
        rec.record(
            self.store,
            self.pod,
            reason,
            ty,
            Some(&c.field_path()),
            message,
            "kubelet",
        );
    }
}

impl Reconciler for Kubelet {
    const NAME: &'static str = "kubelet";

    fn watches(&self) -> &'static [ResKey] {
        &[PODS, PVCS]
    }

    fn reconcile(&mut self, store: &Store, ctl: &Controllers) {
        let cfg = ctl.kubelet_settings();
        let pods = util::list_all(store, PODS);
        let live: HashSet<&str> = pods.iter().map(|p| uid(p)).collect();
        self.pods.retain(|u, _| live.contains(u.as_str()));
        let mut snap = Snapshot {
            claim_users: HashMap::new(),
            users: HashMap::new(),
        };
        for p in pods.iter().filter(|p| pod_active(p)) {
            if claim_names(p).next().is_none() {
                continue;
            }
            snap.users.insert(uid(p).to_string(), p.clone());
            if p["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
            {
                for c in claim_names(p) {
                    snap.claim_users
                        .entry(format!("{}/{c}", namespace(p)))
                        .or_default()
                        .push(uid(p).to_string());
                }
            }
        }
        // A volume is detached once the pod it was attached for is gone, deleted or terminal.
        self.attached.retain(|_, u| snap.users.contains_key(u));
        for pod in &pods {
            if let Some(n) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                if n != NODE {
                    // Bound elsewhere by a test: not ours. Being deleted: the pod GC's orphan
                    // rule (no such node) removes it.
                    if deleting(pod) {
                        delete_now(store, pod);
                    }
                    continue;
                }
            }
            self.sync(store, &cfg, &ctl.images, pod, &mut snap);
        }
    }
}

/// The kubelet's (or pod GC's) delete with grace 0, for this uid only.
fn delete_now(store: &Store, pod: &Value) {
    let opts = DeleteOptions {
        uid: Some(uid(pod).to_string()),
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    let _ = store.delete(&rt(store, PODS), Some(namespace(pod)), name(pod), &opts);
}

impl Kubelet {
    fn sync(
        &mut self,
        store: &Store,
        cfg: &KubeletConfig,
        images: &Registry,
        pod: &Arc<Value>,
        snap: &mut Snapshot,
    ) {
        let prt = rt(store, PODS);
        let u = uid(pod).to_string();
        if !self.pods.contains_key(&u) {
            if matches!(util::pod_phase(pod), "Succeeded" | "Failed") {
                return; // finished before we saw it (e.g. after a restart of the fake)
            }
            self.next_ip += 1;
            let ip = format!(
                "10.244.{}.{}",
                (self.next_ip / 250) % 250,
                self.next_ip % 250 + 2
            );
            let has_inits = pod["spec"]["initContainers"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            let mut ctrs = Vec::new();
            for c in pod["spec"]["initContainers"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let kind = if c["restartPolicy"] == "Always" {
                    Kind::Sidecar
                } else {
                    Kind::Init
                };
                ctrs.push(Ctr::new(c, kind, has_inits));
            }
            for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
                ctrs.push(Ctr::new(c, Kind::Main, has_inits));
            }
            self.pods.insert(
                u.clone(),
                Tracked {
                    bound: Instant::now(),
                    ip,
                    sandbox: false,
                    start_time: None,
                    ctrs,
                    volumes: Volumes::default(),
                    recorder: Recorder::default(),
                    said: HashSet::new(),
                    waited_for_volume: false,
                    kill: None,
                    finished: false,
                    finished_at: None,
                    deleted: false,
                },
            );
        }
        let t = self.pods.get_mut(&u).unwrap();
        if t.deleted || (t.finished && !deleting(pod)) {
            return;
        }
        // Bind (the scheduler's part).
        let mut pod = pod.clone();
        if pod["spec"]["nodeName"].is_null() {
            if deleting(&pod) {
                return; // the store removes unbound pods at once; kept by finalizers: nothing ran
            }
            if let Some(why) = unschedulable(store, &pod, snap) {
                unschedulable_status(store, &pod, t, &why);
                return;
            }
            let mut p = (*pod).clone();
            p["spec"]["nodeName"] = json!(NODE);
            match store.update(&prt, Some(namespace(&pod)), name(&pod), p, None, false) {
                Ok(p) => pod = p,
                Err(_) => return,
            }
            for c in claim_names(&pod) {
                snap.claim_users
                    .entry(format!("{}/{c}", namespace(&pod)))
                    .or_default()
                    .push(u.clone());
            }
            t.bound = Instant::now();
            let msg = format!(
                "Successfully assigned {}/{} to {NODE}",
                namespace(&pod),
                name(&pod)
            );
            t.recorder.record(
                store,
                &pod,
                "Scheduled",
                "Normal",
                None,
                &msg,
                "default-scheduler",
            );
        }
        if t.start_time.is_none() {
            t.start_time = Some(
                pod["status"]["startTime"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(util::now),
            );
        }
        let now = Instant::now();
        if !t.sandbox {
            if deleting(&pod) {
                // Nothing ran: the sandbox is torn down and the pod removed.
                t.deleted = true;
                delete_now(store, &pod);
                return;
            }
            // Volumes are attached and mounted before anything starts.
            let blocks = self.volume_wait(store, &pod, snap);
            let t = self.pods.get_mut(&u).unwrap();
            if let Some(blocks) = blocks {
                t.waited_for_volume = true;
                for (reason, msg) in blocks {
                    if t.said.insert(msg.clone()) {
                        emit(
                            store,
                            &pod,
                            reason,
                            "Warning",
                            None,
                            &msg,
                            "attachdetach-controller",
                        );
                    }
                }
                write(store, &pod, status_of(t, &pod, now));
                return;
            }
            if std::mem::take(&mut t.waited_for_volume) {
                t.bound = now;
            }
            if now.saturating_duration_since(t.bound) < cfg.ready_delay {
                write(store, &pod, status_of(t, &pod, now));
                return;
            }
            t.sandbox = true;
        }
        let t = self.pods.get_mut(&u).unwrap();
        let mut env = PodEnv {
            store,
            pod: &pod,
            images,
            pulled: &mut self.pulled,
            now,
            policy: pod["spec"]["restartPolicy"]
                .as_str()
                .unwrap_or("Always")
                .to_string(),
        };
        for c in &mut t.ctrs {
            c.step(now);
        }
        let mut remove = false;
        if deleting(&pod) && !t.finished {
            let grace = pod["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0)
                .max(0) as u64;
            if kill_step(t, &mut env, Duration::from_secs(grace)) {
                t.finished = true;
                t.finished_at = Some(now);
            }
        } else if !t.finished {
            run_step(t, &mut env);
            if t.kill.is_some() || pod_done(t, &env.policy) {
                // The regular containers are done: stop the sidecars, then the pod is terminal.
                let grace = pod["spec"]["terminationGracePeriodSeconds"]
                    .as_i64()
                    .unwrap_or(30)
                    .max(0) as u64;
                if kill_step(t, &mut env, Duration::from_secs(grace)) {
                    t.finished = true;
                    t.finished_at = Some(now);
                }
            }
        } else {
            remove = t.finished_at.is_none_or(|f| now >= f + REMOVE_LAG);
        }
        // What the process model had to assume while the processes ran (see crate::process).
        for c in &mut t.ctrs {
            let notes = c
                .run
                .as_mut()
                .map(|r| r.proc.take_notes())
                .unwrap_or_default();
            for note in notes {
                env.record(
                    &mut t.recorder,
                    "UnmodelledProcess",
                    "Normal",
                    c,
                    &format!("fake kubelet: {note}"),
                );
            }
        }
        let status = status_of(t, &pod, now);
        let stored = pod["status"] == status
            || util::write_status_returning(store, PODS, &pod, status).is_some();
        if stored {
            for r in t.ctrs.iter_mut().filter_map(|c| c.run.as_mut()) {
                r.shown = true;
            }
        }
        if remove && deleting(&pod) && stored {
            // The status manager deletes the pod once its terminal status is stored.
            t.deleted = true;
            delete_now(store, &pod);
        }
    }
}

/// Whether the regular containers are all done for good (or an init container failed with
/// restartPolicy Never): the pod is finishing.
fn pod_done(t: &Tracked, policy: &str) -> bool {
    let init_failed = policy == "Never"
        && t.ctrs.iter().any(|c| {
            c.kind == Kind::Init && c.run.is_none() && c.term.as_ref().is_some_and(|x| x.code != 0)
        });
    if init_failed {
        return true;
    }
    let mains: Vec<&Ctr> = t.ctrs.iter().filter(|c| c.kind == Kind::Main).collect();
    !mains.is_empty() && mains.iter().all(|c| c.done(policy))
}

/// Start what should run, restart what ended, in the kubelet's order.
fn run_step(t: &mut Tracked, env: &mut PodEnv) {
    let mut inits_done = true;
    for c in t.ctrs.iter_mut().filter(|c| c.kind != Kind::Main) {
        match c.kind {
            Kind::Sidecar => {
                drive(c, &mut t.recorder, &t.volumes, env);
                if !c.started_once {
                    inits_done = false;
                    break;
                }
            }
            _ => {
                if c.completed() {
                    continue;
                }
                if env.policy == "Never"
                    && c.run.is_none()
                    && c.term.as_ref().is_some_and(|x| x.code != 0)
                {
                    inits_done = false; // failed for good: the pod Fails
                    break;
                }
                drive(c, &mut t.recorder, &t.volumes, env);
                c.step(env.now);
                inits_done = c.completed();
                if !inits_done {
                    break;
                }
            }
        }
    }
    if inits_done {
        for c in t.ctrs.iter_mut().filter(|c| c.kind == Kind::Main) {
            drive(c, &mut t.recorder, &t.volumes, env);
        }
    }
    for c in &mut t.ctrs {
        c.step(env.now);
    }
}

/// Start, restart or leave one container.
fn drive(c: &mut Ctr, rec: &mut Recorder, volumes: &Volumes, env: &mut PodEnv) {
    if c.run.is_some() {
        return;
    }
    if let (Some(t), None) = (&c.term, &c.waiting) {
        if !c.should_restart(&env.policy, t.code) {
            return;
        }
        let at = t.at;
        if in_backoff_since(&c.backoff, at, env.now) {
            if c.backoff_said != c.instances {
                c.backoff_said = c.instances;
                let msg = format!(
                    "Back-off restarting failed container {} in pod {}_{}({})",
                    c.name,
                    name(env.pod),
                    namespace(env.pod),
                    uid(env.pod)
                );
                env.record(rec, "BackOff", "Warning", c, &msg);
            }
            return;
        }
        if env.now < at + RESTART_LAG {
            return;
        }
        next_backoff(&mut c.backoff, at, env.now);
    }
    if c.pull_backoff
        .as_ref()
        .is_some_and(|(from, _)| env.now >= *from)
    {
        if let Some((_, err)) = c.pull_backoff.take() {
            let image = c.spec["image"].as_str().unwrap_or("").to_string();
            let msg = format!("Back-off pulling image \"{image}\": ErrImagePull: {err}");
            env.record(
                rec,
                "BackOff",
                "Normal",
                c,
                &format!("Back-off pulling image \"{image}\""),
            );
            env.record(rec, "Failed", "Warning", c, "Error: ImagePullBackOff");
            c.waiting = Some(("ImagePullBackOff", Some(msg)));
        }
    }
    if c.next_try.is_some_and(|n| env.now < n) {
        return;
    }
    start_container(c, rec, volumes, env);
}

/// `imagePullPolicy` as the API server defaults it.
fn pull_policy(c: &Value) -> String {
    if let Some(p) = c["imagePullPolicy"].as_str() {
        return p.to_string();
    }
    let image = c["image"].as_str().unwrap_or("");
    let tag = image.rsplit('/').next().unwrap_or("");
    if !tag.contains(':') || tag.ends_with(":latest") {
        "Always".into()
    } else {
        "IfNotPresent".into()
    }
}

/// Pull (or find) the image, create the container and start its process.
fn start_container(c: &mut Ctr, rec: &mut Recorder, volumes: &Volumes, env: &mut PodEnv) {
    let now = env.now;
    let spec_image = c.spec["image"].as_str().unwrap_or("").to_string();
    let normalized = match normalize(&spec_image) {
        Ok(n) => n,
        Err(e) => {
            if c.waiting.as_ref().map(|w| w.0) != Some("InvalidImageName") {
                env.record(rec, "InspectFailed", "Warning", c, &e.0);
                env.record(rec, "Failed", "Warning", c, "Error: InvalidImageName");
            }
            c.waiting = Some(("InvalidImageName", Some(e.0)));
            c.next_try = Some(now + SYNC_RETRY);
            return;
        }
    };
    let policy = pull_policy(&c.spec);
    let found = env.images.get(&normalized);
    let present = found
        .as_ref()
        .is_some_and(|i| i.preloaded || env.pulled.contains(&i.digest));
    let image = match (policy.as_str(), found) {
        ("Never" | "IfNotPresent", Some(i)) if present => {
            let msg = format!(
                "Container image \"{spec_image}\" already present on machine and can be accessed by the pod"
            );
            env.record(rec, "Pulled", "Normal", c, &msg);
            i
        }
        ("Never", _) => {
            let msg = format!(
                "Container image \"{spec_image}\" is not present with pull policy of Never"
            );
            if c.waiting.as_ref().map(|w| w.0) != Some("ErrImageNeverPull") {
                env.record(rec, "ErrImageNeverPull", "Warning", c, &msg);
                env.record(rec, "Failed", "Warning", c, "Error: ErrImageNeverPull");
            }
            c.waiting = Some(("ErrImageNeverPull", Some(msg)));
            c.next_try = Some(now + SYNC_RETRY);
            return;
        }
        (_, found) => {
            env.record(
                rec,
                "Pulling",
                "Normal",
                c,
                &format!("Pulling image \"{spec_image}\""),
            );
            let Some(i) = found else {
                // containerd's resolver: the registry has no such manifest.
                let err = format!(
                    "rpc error: code = NotFound desc = failed to pull and unpack image \"{normalized}\": failed to resolve reference \"{normalized}\": {normalized}: not found"
                );
                env.record(
                    rec,
                    "Failed",
                    "Warning",
                    c,
                    &format!("Failed to pull image \"{spec_image}\": {err}"),
                );
                env.record(rec, "Failed", "Warning", c, "Error: ErrImagePull");
                c.pull_failures += 1;
                let backoff = (INITIAL_BACKOFF * 2u32.saturating_pow(c.pull_failures - 1).min(64))
                    .min(MAX_BACKOFF);
                c.waiting = Some(("ErrImagePull", Some(err.clone())));
                c.next_try = Some(now + SYNC_RETRY + backoff);
                c.image = None;
                // what the next syncs show, until the next pull
                c.pull_backoff = Some((now + SYNC_RETRY, err));
                return;
            };
            let msg = format!(
                "Successfully pulled image \"{spec_image}\" in 25ms (25ms including waiting). Image size: {} bytes.",
                i.size
            );
            env.record(rec, "Pulled", "Normal", c, &msg);
            env.pulled.insert(i.digest.clone());
            i
        }
    };
    c.pull_failures = 0;
    c.pull_backoff = None;
    c.image = Some(image.clone());
    // Create.
    let restarting = c.instances > 0;
    let id = format!(
        "containerd://{}",
        crate::images::hex64(&format!("{}{}{}", uid(env.pod), c.name, c.instances))
    );
    let spec = process_spec(&c.spec, env.pod);
    let started = process::start(&image, &spec, volumes);
    if let Err(StartError::NoCommand) = started {
        let msg = format!(
            "failed to generate container \"{}\" spec: failed to generate spec: no command specified",
            id.trim_start_matches("containerd://")
        );
        if c.waiting.as_ref().map(|w| w.0) != Some("CreateContainerError") {
            env.record(rec, "Failed", "Warning", c, &format!("Error: {msg}"));
        }
        c.waiting = Some(("CreateContainerError", Some(msg)));
        c.next_try = Some(now + SYNC_RETRY);
        return;
    }
    c.instances += 1;
    if restarting {
        c.restarts += 1;
        c.prev = c.term.take();
    }
    c.waiting = None;
    c.next_try = None;
    env.record(rec, "Created", "Normal", c, "Container created");
    match started {
        Err(e) => {
            let msg = e.message();
            env.record(rec, "Failed", "Warning", c, &format!("Error: {msg}"));
            c.term = Some(Term {
                code: 128,
                reason: "StartError",
                message: Some(msg),
                started: ZERO_TIME.into(),
                finished: util::now(),
                at: now,
                id,
            });
        }
        Ok(mut p) => {
            for note in p.take_notes() {
                env.record(
                    rec,
                    "UnmodelledProcess",
                    "Normal",
                    c,
                    &format!("fake kubelet: {note}"),
                );
            }
            env.record(rec, "Started", "Normal", c, "Container started");
            c.started_once = true;
            c.run = Some(Run {
                since: now,
                wall: util::now(),
                proc: p,
                id,
                signalled: false,
                shown: false,
            });
        }
    }
}

/// What the runtime gets from the container spec (see [`crate::process::Spec`]).
fn process_spec(c: &Value, pod: &Value) -> process::Spec {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    let env = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect();
    let volumes: HashMap<&str, &Value> = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v["name"].as_str()?, v)))
        .collect();
    let mounts = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let vname = m["name"].as_str()?;
            let v = volumes.get(vname)?;
            let kind = if v["emptyDir"].is_object() {
                VolumeKind::EmptyDir
            } else {
                VolumeKind::Other(
                    v.as_object()?
                        .keys()
                        .find(|k| *k != "name")
                        .cloned()
                        .unwrap_or_else(|| "unknown".into()),
                )
            };
            Some(Mount {
                path: m["mountPath"].as_str()?.to_string(),
                volume: vname.to_string(),
                kind,
                sub_path: m["subPath"].as_str().unwrap_or("").to_string(),
            })
        })
        .collect();
    process::Spec {
        command: strings(&c["command"]),
        args: strings(&c["args"]),
        env,
        working_dir: c["workingDir"].as_str().unwrap_or("").to_string(),
        stdin: c["stdin"] == true,
        mounts,
    }
}

/// Stop every running container: SIGTERM (sidecars once the others are stopped), SIGKILL at
/// the deadline. True once nothing runs.
fn kill_step(t: &mut Tracked, env: &mut PodEnv, grace: Duration) -> bool {
    let now = env.now;
    // The deadline is the one the kill started with: a later delete that shortens the grace
    // period changes the object, not the kill in progress (the kit's `shorten2`: deleted with
    // 30 s, shortened to 3 s 2 s later, SIGKILLed 30 s after the first delete).
    let k = t.kill.get_or_insert(Kill {
        deadline: now + grace,
        announced: false,
    });
    let deadline = k.deadline;
    if !k.announced {
        k.announced = true;
        for c in t.ctrs.iter().filter(|c| c.run.is_some()) {
            env.record(
                &mut t.recorder,
                "Killing",
                "Normal",
                c,
                &format!("Stopping container {}", c.name),
            );
        }
    }
    for sidecars in [false, true] {
        if sidecars
            && t.ctrs
                .iter()
                .any(|c| c.kind != Kind::Sidecar && c.run.is_some())
        {
            break;
        }
        for c in t
            .ctrs
            .iter_mut()
            .filter(|c| (c.kind == Kind::Sidecar) == sidecars)
        {
            if let Some(r) = &mut c.run {
                if !r.signalled {
                    r.signalled = true;
                    r.proc.sigterm(now.saturating_duration_since(r.since));
                }
            }
            c.step(now.min(deadline));
        }
    }
    if now >= deadline {
        for c in &mut t.ctrs {
            c.step(deadline);
            c.end(deadline, 137);
        }
    }
    t.ctrs.iter().all(|c| c.run.is_none())
}

fn write(store: &Store, pod: &Arc<Value>, status: Value) {
    util::write_status(store, PODS, pod, status);
}
