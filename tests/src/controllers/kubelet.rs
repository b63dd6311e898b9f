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
//! Divergences: probes are not run (Ready follows the delay); one BackOff event per pod instead of an
//! aggregated count; restarts of a crash-looping container come every `ready_delay` instead of
//! with exponential back-off.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::util::{self, deleting, name, namespace, uid};
use super::{rt, Controllers, Failure, KubeletConfig, Reconciler, PODS};
use crate::store::{ResKey, Store};

pub const NODE: &str = "fake-node";
const HOST_IP: &str = "10.0.0.10";

#[derive(Default)]
pub struct Kubelet {
    /// uid -> what we know of the pod.
    pods: HashMap<String, Tracked>,
    next_ip: u32,
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
    done: bool,
}

impl Reconciler for Kubelet {
    const NAME: &'static str = "kubelet";

    fn watches(&self) -> &'static [ResKey] {
        &[PODS]
    }

    fn reconcile(&mut self, store: &Store, ctl: &Controllers) {
        let cfg = ctl.kubelet_settings();
        let pods = util::list_all(store, PODS);
        let live: std::collections::HashSet<&str> = pods.iter().map(|p| uid(p)).collect();
        self.pods.retain(|u, _| live.contains(u.as_str()));
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
            self.sync(store, &cfg, pod);
        }
    }
}

/// The failure mode of a pod: the test's configuration first, then the image convention.
pub fn failure_of(cfg: &KubeletConfig, pod: &Value) -> Option<Failure> {
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
    fn sync(&mut self, store: &Store, cfg: &KubeletConfig, pod: &Arc<Value>) {
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
                    done: false,
                },
            );
        }
        let t = self.pods.get_mut(&u).unwrap();
        if t.done {
            return;
        }
        // Bind (the scheduler's part).
        let mut pod = pod.clone();
        if pod["spec"]["nodeName"].is_null() {
            let mut p = (*pod).clone();
            p["spec"]["nodeName"] = json!(NODE);
            match store.update(&prt, Some(namespace(&pod)), name(&pod), p, None, false) {
                Ok(p) => pod = p,
                Err(_) => return,
            }
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

/// PodScheduled, Initialized, ContainersReady, Ready (timestamps kept while unchanged).
fn conditions(pod: &Value, initialized: bool, ready: bool, completed: bool) -> Value {
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
        cond("PodReadyToStartContainers", initialized, None),
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
pub fn emit(
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
        "source": if component == "kubelet" { json!({"component": "kubelet", "host": NODE}) } else { json!({}) },
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
