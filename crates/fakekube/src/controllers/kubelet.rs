//! A kubelet (plus the scheduler's binding) for one node, `fake-node`: every pod is bound
//! (spec.nodeName, PodScheduled, Event `Scheduled`), then after `ready_delay` its containers
//! start (Events Pulling/Pulled/Created/Started) and it goes Running + Ready, with the
//! conditions, containerStatuses, initContainerStatuses (sidecars, i.e. init containers with
//! restartPolicy Always, running and ready; the others terminated Completed), startTime, podIP
//! and hostIP a real kubelet reports. Failure modes (image conventions or
//! `KubeletConfig::failures`, see the module docs of `controllers`) report the waiting /
//! terminated states and Warning Events a real kubelet does.
//!
//! A pod being deleted but kept by finalizers gets its containers stopped and a terminal
//! phase; the object stays until its finalizers go (pods without finalizers are removed by the
//! store at once, with no grace period: a divergence of the store).
//!
//! Volumes, checked before a pod is bound and before its containers start:
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
//! Divergences: probes are not run (Ready follows the delay); one BackOff event per pod instead of an
//! aggregated count; restarts of a crash-looping container come every `ready_delay` instead of
//! with exponential back-off. There is one node, but a ReadWriteOnce volume behaves as on a
//! multi-node cluster, where the second pod usually lands on another node (on one node upstream
//! would share it); the kubelet's `FailedMount` timeout Events (after two minutes) are not
//! sent; one `FailedScheduling` Event per distinct message instead of a count; preemption never
//! evicts the pod holding a ReadWriteOncePod claim (it would, for a higher-priority pod); a pod
//! created already bound to the node waits in `ContainerCreating` for a missing or unbound
//! claim, without Events.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::util::{self, deleting, name, namespace, pod_active, uid};
use super::volumes::claim_names;
use super::{rt, Controllers, Failure, KubeletConfig, Reconciler, PODS, PVCS};
use crate::store::{ResKey, Store};
use crate::volumes::{access_modes, ROX, RWOP, RWX};

pub(super) const NODE: &str = "fake-node";
const HOST_IP: &str = "10.0.0.10";

#[derive(Default)]
pub(super) struct Kubelet {
    /// uid -> what we know of the pod.
    pods: HashMap<String, Tracked>,
    next_ip: u32,
    /// `<namespace>/<claim>` of a ReadWriteOnce claim -> uid of the pod its volume is attached
    /// for (the attach/detach controller's actual state of the world).
    attached: HashMap<String, String>,
}

/// What one pass knows of the pods that use claims (only those, to keep a pass cheap).
struct Snapshot {
    /// `<namespace>/<claim>` -> uids of the active pods bound to a node that use it (the
    /// scheduler's PVC reference counts).
    claim_users: HashMap<String, Vec<String>>,
    /// Active pods with claims, by uid.
    users: HashMap<String, Arc<Value>>,
}

struct Tracked {
    bound: Instant,
    ip: String,
    /// When the containers started (Running), if they did.
    started: Option<Instant>,
    /// Restarts reported so far (crash loop).
    restarts: i64,
    last_restart: Option<Instant>,
    events: Vec<&'static str>,
    /// Messages of the FailedScheduling / FailedAttachVolume Events already sent.
    said: HashSet<String>,
    /// The pod waited for a volume's attachment: its start is counted from the attachment.
    waited_for_volume: bool,
    done: bool,
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
            if deleting(pod) {
                terminate(store, pod);
                continue;
            }
            if let Some(n) = pod["spec"]["nodeName"].as_str() {
                if n != NODE {
                    continue; // bound elsewhere by a test: not ours
                }
            }
            self.sync(store, &cfg, pod, &mut snap);
        }
    }
}

/// The failure mode of a pod: the test's configuration first, then the image convention.
pub(super) fn failure_of(cfg: &KubeletConfig, pod: &Value) -> Option<Failure> {
    let n = name(pod);
    if let Some((_, f)) = cfg
        .failures
        .iter()
        .filter(|(p, _)| n.starts_with(p.as_str()))
        .max_by_key(|(p, _)| p.len())
    {
        return Some(*f);
    }
    let images: Vec<String> = ["initContainers", "containers"]
        .iter()
        .flat_map(|l| pod["spec"][*l].as_array().into_iter().flatten())
        .filter_map(|c| c["image"].as_str().map(str::to_lowercase))
        .collect();
    let has = |s: &str| images.iter().any(|i| i.contains(s));
    if has("imagepullbackoff") || has("errimagepull") {
        Some(Failure::ImagePullBackOff)
    } else if has("crashloop") {
        Some(Failure::CrashLoop)
    } else if has("notready") {
        Some(Failure::NotReady)
    } else if has("fail") {
        Some(Failure::Fail)
    } else {
        None
    }
}

impl Kubelet {
    fn sync(&mut self, store: &Store, cfg: &KubeletConfig, pod: &Arc<Value>, snap: &mut Snapshot) {
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
            self.pods.insert(
                u.clone(),
                Tracked {
                    bound: Instant::now(),
                    ip,
                    started: None,
                    restarts: 0,
                    last_restart: None,
                    events: Vec::new(),
                    said: HashSet::new(),
                    waited_for_volume: false,
                    done: false,
                },
            );
        }
        if self.pods[&u].done {
            return;
        }
        // Bind (the scheduler's part).
        let mut pod = pod.clone();
        if pod["spec"]["nodeName"].is_null() {
            if let Some(why) = unschedulable(store, &pod, snap) {
                let t = self.pods.get_mut(&u).unwrap();
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
            let t = self.pods.get_mut(&u).unwrap();
            t.bound = Instant::now();
            event(
                store,
                &pod,
                &mut t.events,
                "Scheduled",
                "Normal",
                None,
                &format!(
                    "Successfully assigned {}/{} to {NODE}",
                    namespace(&pod),
                    name(&pod)
                ),
                "default-scheduler",
            );
        }
        // Volumes are attached and mounted before anything starts.
        let started_before = self.pods[&u].started.is_some() || util::pod_phase(&pod) == "Running";
        if !started_before {
            if let Some(blocks) = self.volume_wait(store, &pod, snap) {
                let t = self.pods.get_mut(&u).unwrap();
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
                write(store, &pod, container_creating(&pod));
                return;
            }
        }
        let t = self.pods.get_mut(&u).unwrap();
        if std::mem::take(&mut t.waited_for_volume) {
            t.bound = Instant::now();
        }
        let failure = failure_of(cfg, &pod);
        let now = Instant::now();
        let due = now.duration_since(t.bound) >= cfg.ready_delay;
        let start_time = pod["status"]["startTime"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(util::now);
        let containers: Vec<Value> = pod["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let inits: Vec<Value> = pod["spec"]["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let restart_policy = pod["spec"]["restartPolicy"]
            .as_str()
            .unwrap_or("Always")
            .to_string();

        let mut status = (*pod)["status"].clone();
        if !status.is_object() {
            status = json!({});
        }
        status["hostIP"] = json!(HOST_IP);
        status["hostIPs"] = json!([{"ip": HOST_IP}]);
        if !due {
            status["phase"] = json!("Pending");
            status["conditions"] = conditions(&pod, true, false, false);
            write(store, &pod, status);
            return;
        }
        status["startTime"] = json!(start_time);
        status["podIP"] = json!(t.ip);
        status["podIPs"] = json!([{"ip": t.ip}]);
        let ts = util::now();
        let (phase, ready, init_done, statuses): (&str, bool, bool, Vec<Value>);
        match failure {
            Some(Failure::ImagePullBackOff) => {
                // First ErrImagePull, then ImagePullBackOff on the next pass.
                let reason = if t.events.contains(&"Failed") {
                    "ImagePullBackOff"
                } else {
                    "ErrImagePull"
                };
                let c0 = &containers[0];
                let img = c0["image"].as_str().unwrap_or("");
                let msg = if reason == "ErrImagePull" {
                    format!("failed to pull and unpack image \"{img}\": failed to resolve reference \"{img}\": not found")
                } else {
                    format!("Back-off pulling image \"{img}\"")
                };
                statuses = containers
                    .iter()
                    .map(|c| waiting(c, reason, &msg, 0, None))
                    .collect();
                for c in &containers {
                    let img = c["image"].as_str().unwrap_or("");
                    event(
                        store,
                        &pod,
                        &mut t.events,
                        "Pulling",
                        "Normal",
                        Some(c),
                        &format!("Pulling image \"{img}\""),
                        "kubelet",
                    );
                }
                event(
                    store,
                    &pod,
                    &mut t.events,
                    "Failed",
                    "Warning",
                    Some(c0),
                    &format!("Failed to pull image \"{img}\": {}", msg),
                    "kubelet",
                );
                if reason == "ImagePullBackOff" {
                    event(
                        store,
                        &pod,
                        &mut t.events,
                        "BackOff",
                        "Warning",
                        Some(c0),
                        &format!("Back-off pulling image \"{img}\""),
                        "kubelet",
                    );
                }
                (phase, ready, init_done) = ("Pending", false, true);
            }
            Some(Failure::CrashLoop) => {
                let every = cfg.ready_delay.max(std::time::Duration::from_millis(50));
                if t.last_restart
                    .is_none_or(|l| now.duration_since(l) >= every)
                {
                    t.restarts += 1;
                    t.last_restart = Some(now);
                }
                start_events(store, &pod, &mut t.events, &containers);
                let c0 = &containers[0];
                event(
                    store,
                    &pod,
                    &mut t.events,
                    "BackOff",
                    "Warning",
                    Some(c0),
                    &format!(
                        "Back-off restarting failed container {} in pod {}_{}({})",
                        c0["name"].as_str().unwrap_or(""),
                        name(&pod),
                        namespace(&pod),
                        uid(&pod)
                    ),
                    "kubelet",
                );
                let last = json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": ts, "finishedAt": ts, "containerID": container_id(&pod, c0)}});
                let msg = format!(
                    "back-off 10s restarting failed container={} pod={}_{}({})",
                    c0["name"].as_str().unwrap_or(""),
                    name(&pod),
                    namespace(&pod),
                    uid(&pod)
                );
                statuses = containers
                    .iter()
                    .map(|c| waiting(c, "CrashLoopBackOff", &msg, t.restarts, Some(last.clone())))
                    .collect();
                (phase, ready, init_done) = ("Running", false, true);
            }
            Some(Failure::Fail) => {
                start_events(store, &pod, &mut t.events, &containers);
                statuses = containers
                    .iter()
                    .map(|c| terminated(&pod, c, 1, "Error", &start_time))
                    .collect();
                t.done = true;
                (phase, ready, init_done) = ("Failed", false, true);
            }
            Some(Failure::NotReady) | None => {
                start_events(store, &pod, &mut t.events, &containers);
                let started = *t.started.get_or_insert(now);
                let job_like = restart_policy != "Always";
                let finished = job_like
                    && cfg
                        .job_run_time
                        .is_some_and(|d| now.duration_since(started) >= d);
                if finished {
                    statuses = containers
                        .iter()
                        .map(|c| terminated(&pod, c, 0, "Completed", &start_time))
                        .collect();
                    t.done = true;
                    (phase, ready, init_done) = ("Succeeded", false, true);
                } else {
                    let ok = failure.is_none();
                    statuses = containers
                        .iter()
                        .map(|c| running(&pod, c, ok, &start_time))
                        .collect();
                    (phase, ready, init_done) = ("Running", ok, true);
                }
            }
        }
        status["phase"] = json!(phase);
        status["conditions"] = conditions(&pod, init_done, ready, phase == "Succeeded");
        status["containerStatuses"] = json!(statuses);
        if !inits.is_empty() {
            let st: Vec<Value> = inits
                .iter()
                .map(|c| {
                    if c["restartPolicy"] == "Always" {
                        // A sidecar: started and ready (its probes are not run).
                        running(&pod, c, phase == "Running", &start_time)
                    } else {
                        terminated(&pod, c, 0, "Completed", &start_time)
                    }
                })
                .collect();
            status["initContainerStatuses"] = json!(st);
        }
        write(store, &pod, status);
    }
}

impl Kubelet {
    /// What keeps a bound pod's volumes from being ready, as (Event reason, message) pairs
    /// (none to send when the wait has no Event); None when every volume can be used.
    fn volume_wait(
        &mut self,
        store: &Store,
        pod: &Value,
        snap: &Snapshot,
    ) -> Option<Vec<(&'static str, String)>> {
        let crt = rt(store, PVCS);
        let mut waits = None::<Vec<(&'static str, String)>>;
        for c in claim_names(pod) {
            let claim = match store.get(&crt, Some(namespace(pod)), c) {
                Ok(claim) if fully_bound(&claim) => claim,
                // Only a pod created already bound gets here (the scheduler checked the rest).
                _ => {
                    waits.get_or_insert_with(Vec::new);
                    continue;
                }
            };
            let modes = access_modes(&claim);
            if modes.is_empty() || modes.iter().any(|m| *m == RWX || *m == ROX) {
                continue; // util.IsMultiAttachAllowed: ReadWriteMany / ReadOnlyMany share
            }
            let key = format!("{}/{c}", namespace(pod));
            let holder = match self.attached.get(&key) {
                Some(h) => h.clone(),
                None => {
                    // After a restart of the fake: a pod already running with it holds it.
                    let running = snap.users.values().find(|p| {
                        uid(p) != uid(pod)
                            && namespace(p) == namespace(pod)
                            && util::pod_phase(p) == "Running"
                            && claim_names(p).any(|x| x == c)
                    });
                    let h = running.map_or(uid(pod), |p| uid(p)).to_string();
                    self.attached.insert(key, h.clone());
                    h
                }
            };
            if holder != uid(pod) {
                let other = snap.users.get(&holder).map_or("", |p| name(p));
                let volume = claim["spec"]["volumeName"].as_str().unwrap_or("");
                // reportMultiAttachError, for pods in the claim's namespace.
                waits.get_or_insert_with(Vec::new).push((
                    "FailedAttachVolume",
                    format!(
                        "Multi-Attach error for volume \"{volume}\" Volume is already used by pod(s) {other}"
                    ),
                ));
            }
        }
        waits
    }
}

/// Bound as the scheduler's volume binder sees it (spec.volumeName and `bind-completed`).
fn fully_bound(claim: &Value) -> bool {
    claim["spec"]["volumeName"]
        .as_str()
        .is_some_and(|v| !v.is_empty())
        && !claim["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"].is_null()
}

/// Why the scheduler cannot place the pod because of its claims (`FitError.Error()` for one
/// node), None when it can.
fn unschedulable(store: &Store, pod: &Value, snap: &Snapshot) -> Option<String> {
    // A PreFilter rejection: UnschedulableAndUnresolvable, preemption cannot help.
    let prefilter = |m: &str| {
        format!("0/1 nodes are available: {m}. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.")
    };
    let crt = rt(store, PVCS);
    let names: Vec<&str> = claim_names(pod).collect();
    let mut claims = Vec::new();
    // VolumeRestrictions' PreFilter fetches every claim first ...
    for c in &names {
        match store.get(&crt, Some(namespace(pod)), c) {
            Ok(claim) => claims.push(claim),
            Err(_) => {
                return Some(prefilter(&format!(
                    "persistentvolumeclaim \"{c}\" not found"
                )))
            }
        }
    }
    // ... then VolumeBinding's (podHasPVCs, then the unbound immediate claims).
    if let Some(c) = claims.iter().find(|c| deleting(c)) {
        return Some(prefilter(&format!(
            "persistentvolumeclaim \"{}\" is being deleted",
            name(c)
        )));
    }
    if claims.iter().any(|c| !fully_bound(c)) {
        return Some(prefilter(
            "pod has unbound immediate PersistentVolumeClaims",
        ));
    }
    // VolumeRestrictions' Filter: a ReadWriteOncePod claim already used by a scheduled pod.
    let taken = claims.iter().any(|c| {
        access_modes(c).contains(&RWOP)
            && snap
                .claim_users
                .get(&format!("{}/{}", namespace(pod), name(c)))
                .is_some_and(|us| us.iter().any(|u| u != uid(pod)))
    });
    taken.then(|| {
        "0/1 nodes are available: 1 node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.".to_string()
    })
}

/// The scheduler's answer to an unschedulable pod: PodScheduled False (Unschedulable) with the
/// message, and a Warning FailedScheduling Event (handleSchedulingFailure).
fn unschedulable_status(store: &Store, pod: &Arc<Value>, t: &mut Tracked, why: &str) {
    let old = pod["status"]["conditions"].as_array().and_then(|cs| {
        cs.iter()
            .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
    });
    let since = old
        .map(|c| c["lastTransitionTime"].clone())
        .unwrap_or_else(|| json!(util::now()));
    let mut status = pod["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    status["phase"] = json!("Pending");
    status["conditions"] = json!([{"type": "PodScheduled", "status": "False",
        "lastProbeTime": null, "lastTransitionTime": since,
        "reason": "Unschedulable", "message": why}]);
    if t.said.insert(why.to_string()) {
        emit(
            store,
            pod,
            "FailedScheduling",
            "Warning",
            None,
            why,
            "default-scheduler",
        );
    }
    write(store, pod, status);
}

/// A kubelet's status for a bound pod whose volumes are not attached yet: containers waiting
/// in `ContainerCreating` (`PodInitializing` when it has init containers), no sandbox.
fn container_creating(pod: &Value) -> Value {
    let inits: Vec<Value> = pod["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let reason = if inits.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let waiting_for = |c: &Value| {
        json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": false,
            "started": false, "restartCount": 0, "lastState": {},
            "state": {"waiting": {"reason": reason}}})
    };
    let mut status = pod["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    status["phase"] = json!("Pending");
    status["hostIP"] = json!(HOST_IP);
    status["hostIPs"] = json!([{"ip": HOST_IP}]);
    if status["startTime"].is_null() {
        status["startTime"] = json!(util::now());
    }
    status["conditions"] = conditions_with(pod, false, inits.is_empty(), false, false);
    status["containerStatuses"] = json!(pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(waiting_for)
        .collect::<Vec<_>>());
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(inits.iter().map(waiting_for).collect::<Vec<_>>());
    }
    status
}

/// A pod kept by finalizers after its delete: the kubelet stops its containers (SIGTERM, exit
/// 0 here) and reports the terminal phase (Succeeded: every container exited 0), as kubelets
/// since 1.27 do; the object stays until its finalizers are removed. Unbound pods are left
/// as they are (nothing ran).
fn terminate(store: &Store, pod: &Arc<Value>) {
    if pod["spec"]["nodeName"] != NODE || matches!(util::pod_phase(pod), "Succeeded" | "Failed") {
        return;
    }
    let since = pod["status"]["startTime"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(util::now);
    let mut status = pod["status"].clone();
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    status["containerStatuses"] = json!(containers
        .iter()
        .map(|c| terminated(pod, c, 0, "Completed", &since))
        .collect::<Vec<_>>());
    status["phase"] = json!("Succeeded");
    status["conditions"] = conditions(pod, true, false, true);
    emit(
        store,
        pod,
        "Killing",
        "Normal",
        containers.first(),
        &format!(
            "Stopping container {}",
            containers
                .first()
                .and_then(|c| c["name"].as_str())
                .unwrap_or("")
        ),
        "kubelet",
    );
    write(store, pod, status);
}

fn write(store: &Store, pod: &Arc<Value>, status: Value) {
    util::write_status(store, PODS, pod, status);
}

fn container_id(pod: &Value, c: &Value) -> String {
    let seed = format!("{}{}", uid(pod), c["name"].as_str().unwrap_or(""));
    format!("containerd://{}", hex64(&seed))
}

/// 64 hex digits derived from `seed` (fnv-1a 64, four salted rounds): the shape of a
/// container id or an image digest.
fn hex64(seed: &str) -> String {
    (0u8..4)
        .map(|salt| {
            let mut h: u64 = 0xcbf29ce484222325;
            for b in seed.bytes().chain([salt]) {
                h ^= b as u64;
                h = h.wrapping_mul(0x100000001b3);
            }
            format!("{h:016x}")
        })
        .collect()
}

fn base(c: &Value) -> Value {
    let img = c["image"].as_str().unwrap_or("");
    let full = if img.contains('/') {
        img.to_string()
    } else {
        format!("docker.io/library/{img}")
    };
    json!({"name": c["name"], "image": img, "imageID": format!("{full}@sha256:{}", hex64(img))})
}

fn running(pod: &Value, c: &Value, ready: bool, since: &str) -> Value {
    let mut s = base(c);
    s["ready"] = json!(ready);
    s["started"] = json!(true);
    s["restartCount"] = json!(0);
    s["state"] = json!({"running": {"startedAt": since}});
    s["lastState"] = json!({});
    s["containerID"] = json!(container_id(pod, c));
    s
}

fn terminated(pod: &Value, c: &Value, code: i64, reason: &str, since: &str) -> Value {
    let mut s = base(c);
    s["ready"] = json!(false);
    s["started"] = json!(false);
    s["restartCount"] = json!(0);
    s["state"] = json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": since, "finishedAt": util::now(), "containerID": container_id(pod, c)}});
    s["lastState"] = json!({});
    s["containerID"] = json!(container_id(pod, c));
    s
}

fn waiting(c: &Value, reason: &str, message: &str, restarts: i64, last: Option<Value>) -> Value {
    let mut s = base(c);
    s["ready"] = json!(false);
    s["started"] = json!(false);
    s["restartCount"] = json!(restarts);
    s["state"] = json!({"waiting": {"reason": reason, "message": message}});
    s["lastState"] = last.unwrap_or_else(|| json!({}));
    s
}

/// PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled (timestamps
/// kept while unchanged); the sandbox is up once the pod is initialized.
fn conditions(pod: &Value, initialized: bool, ready: bool, completed: bool) -> Value {
    conditions_with(pod, initialized, initialized, ready, completed)
}

/// [`conditions`] with the sandbox (PodReadyToStartContainers) given apart.
fn conditions_with(
    pod: &Value,
    sandbox: bool,
    initialized: bool,
    ready: bool,
    completed: bool,
) -> Value {
    let cond = |ty: &str, ok: bool, reason: Option<&str>| {
        let st = if ok { "True" } else { "False" };
        let old = pod["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == ty && c["status"] == st));
        let t = old
            .map(|c| c["lastTransitionTime"].clone())
            .unwrap_or_else(|| json!(util::now()));
        let mut c =
            json!({"type": ty, "status": st, "lastProbeTime": null, "lastTransitionTime": t});
        if let Some(r) = reason.filter(|_| !ok) {
            c["reason"] = json!(r);
        }
        c
    };
    let not_ready = if completed {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    json!([
        cond("PodReadyToStartContainers", sandbox, None),
        cond("Initialized", initialized, Some("ContainersNotInitialized")),
        cond("Ready", ready, Some(not_ready)),
        cond("ContainersReady", ready, Some(not_ready)),
        cond("PodScheduled", true, None),
    ])
}

fn start_events(store: &Store, pod: &Value, seen: &mut Vec<&'static str>, containers: &[Value]) {
    if seen.contains(&"Started") {
        return;
    }
    for c in containers {
        let img = c["image"].as_str().unwrap_or("");
        let n = c["name"].as_str().unwrap_or("");
        emit(
            store,
            pod,
            "Pulled",
            "Normal",
            Some(c),
            &format!("Container image \"{img}\" already present on machine"),
            "kubelet",
        );
        emit(
            store,
            pod,
            "Created",
            "Normal",
            Some(c),
            &format!("Created container: {n}"),
            "kubelet",
        );
        emit(
            store,
            pod,
            "Started",
            "Normal",
            Some(c),
            &format!("Started container {n}"),
            "kubelet",
        );
    }
    seen.push("Started");
}

/// One Event per (pod, reason).
#[allow(clippy::too_many_arguments)]
fn event(
    store: &Store,
    pod: &Value,
    seen: &mut Vec<&'static str>,
    reason: &'static str,
    ty: &str,
    c: Option<&Value>,
    message: &str,
    component: &str,
) {
    if seen.contains(&reason) {
        return;
    }
    seen.push(reason);
    emit(store, pod, reason, ty, c, message, component);
}

/// A core/v1 Event about the pod, as the kubelet's event recorder writes it.
pub(super) fn emit(
    store: &Store,
    pod: &Value,
    reason: &str,
    ty: &str,
    c: Option<&Value>,
    message: &str,
    component: &str,
) {
    let Some(ert) = store.resource("", "events").cloned() else {
        return;
    };
    let now = util::now();
    let mut involved = json!({
        "kind": "Pod", "namespace": namespace(pod), "name": name(pod), "uid": uid(pod),
        "apiVersion": "v1", "resourceVersion": pod["metadata"]["resourceVersion"],
    });
    if let Some(c) = c {
        involved["fieldPath"] = json!(format!(
            "spec.containers{{{}}}",
            c["name"].as_str().unwrap_or("")
        ));
    }
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let ev = json!({
        "metadata": {"name": format!("{}.{:x}", name(pod), nanos)},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        // The kubelet and kube-controller-manager record through core/v1 (source set); the
        // scheduler through events.k8s.io/v1, which leaves it empty.
        "source": match component {
            "kubelet" => json!({"component": "kubelet", "host": NODE}),
            "default-scheduler" => json!({}),
            other => json!({"component": other}),
        },
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": ty,
        "eventTime": null,
        "reportingComponent": component,
        "reportingInstance": if component == "kubelet" { NODE } else { "" },
    });
    if let Err(e) = store.create(&ert, Some(namespace(pod)), ev, false) {
        tracing::debug!("event for {}: {}", name(pod), e.message);
    }
}
