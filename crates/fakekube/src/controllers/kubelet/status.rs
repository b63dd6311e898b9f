//! The pod status the kubelet's status manager writes: container statuses, phase (`getPhase`)
//! and conditions.

use std::time::Instant;

use serde_json::{json, Value};

use super::*;

/// A container's status as the kubelet reports it.
pub(super) fn ctr_status(c: &Ctr, pod: &Value, now: Instant, policy: &str, killing: bool) -> Value {
    let image = c.image.as_ref();
    let mut s = json!({
        "name": c.name,
        "image": image.map_or_else(|| c.spec["image"].as_str().unwrap_or("").to_string(), |i| i.display_ref().to_string()),
        "imageID": image.map_or_else(String::new, |i| i.image_id()),
        "restartCount": c.restarts,
        "lastState": {},
    });
    let latest_id = c
        .run
        .as_ref()
        .map(|r| r.id.clone())
        .or_else(|| c.term.as_ref().map(|t| t.id.clone()));
    if let Some(id) = &latest_id {
        s["containerID"] = json!(id);
    }
    let (state, last, ready, started) = if let Some(r) = &c.run {
        (
            json!({"running": {"startedAt": r.wall}}),
            c.prev.as_ref().map(Term::json),
            c.kind != Kind::Init,
            true,
        )
    } else if let Some((reason, msg)) = &c.waiting {
        let mut w = json!({ "reason": reason });
        if let Some(m) = msg {
            w["message"] = json!(m);
        }
        (
            json!({ "waiting": w }),
            c.term.as_ref().map(Term::json),
            false,
            false,
        )
    } else if let Some(t) = &c.term {
        let pending = c.restart_pending(policy, killing);
        if pending && in_backoff_since(&c.backoff, t.at, now) && now >= t.at + STATUS_LAG {
            let b = c.backoff.map_or(INITIAL_BACKOFF, |b| b.current);
            let msg = format!(
                "back-off {} restarting failed container={} pod={}_{}({})",
                go_duration(b),
                c.name,
                name(pod),
                namespace(pod),
                uid(pod)
            );
            (
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": msg}}),
                Some(t.json()),
                false,
                false,
            )
        } else if pending && t.reason == "StartError" {
            (
                json!({"waiting": {"reason": "RunContainerError", "message": t.message}}),
                Some(t.json()),
                false,
                false,
            )
        } else {
            (
                t.json(),
                c.prev.as_ref().map(Term::json),
                c.kind == Kind::Init && t.code == 0,
                false,
            )
        }
    } else {
        (
            json!({"waiting": {"reason": "ContainerCreating"}}),
            None,
            false,
            false,
        )
    };
    s["state"] = state;
    if let Some(l) = last {
        s["lastState"] = l;
    }
    s["ready"] = json!(ready);
    s["started"] = json!(started);
    if c.instances > 0 {
        s["resources"] = json!({});
    }
    let mounts: Vec<Value> = c.spec["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let mut v = json!({"name": m["name"], "mountPath": m["mountPath"]});
            if m["readOnly"] == true {
                v["readOnly"] = json!(true);
                v["recursiveReadOnly"] = json!("Disabled");
            }
            v
        })
        .collect();
    if !mounts.is_empty() {
        s["volumeMounts"] = json!(mounts);
    }
    s
}

/// The kubelet's getPhase over the statuses it reports.
pub(super) fn get_phase(
    pod: &Value,
    inits: &[Value],
    mains: &[Value],
    terminal: bool,
) -> &'static str {
    let policy = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always");
    let has = |s: &Value, k: &str| s["state"][k].is_object();
    let last_terminated = |s: &Value| s["lastState"]["terminated"].is_object();
    let mut pending_init = 0;
    let mut pending_sidecars = 0;
    let mut failed_init = 0;
    for (spec, s) in pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(inits)
    {
        if spec["restartPolicy"] == "Always" {
            if s["started"] != true {
                pending_sidecars += 1;
            }
            continue;
        }
        if has(s, "running") {
            pending_init += 1;
        } else if has(s, "terminated") {
            if s["state"]["terminated"]["exitCode"] != 0 {
                failed_init += 1;
            }
        } else if has(s, "waiting") {
            if last_terminated(s) {
                if s["lastState"]["terminated"]["exitCode"] != 0 {
                    failed_init += 1;
                }
            } else {
                pending_init += 1;
            }
        } else {
            pending_init += 1;
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in mains {
        if has(s, "running") {
            running += 1;
        } else if has(s, "terminated") {
            stopped += 1;
            if s["state"]["terminated"]["exitCode"] == 0 {
                succeeded += 1;
            }
        } else if last_terminated(s) {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || (pending_sidecars > 0 && running == 0 && stopped == 0) {
        return "Pending";
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if terminal {
            return if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

/// The pod's status as the kubelet writes it.
pub(super) fn status_of(t: &Tracked, pod: &Value, now: Instant) -> Value {
    let policy = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always");
    let killing = t.kill.is_some() || t.finished;
    let inits: Vec<Value> = t
        .ctrs
        .iter()
        .filter(|c| c.kind != Kind::Main)
        .map(|c| ctr_status(c, pod, now, policy, killing))
        .collect();
    let mains: Vec<Value> = t
        .ctrs
        .iter()
        .filter(|c| c.kind == Kind::Main)
        .map(|c| ctr_status(c, pod, now, policy, killing))
        .collect();
    let mut phase = get_phase(pod, &inits, &mains, t.finished);
    if !t.finished
        && matches!(phase, "Succeeded" | "Failed")
        && t.ctrs
            .iter()
            .any(|c| c.kind == Kind::Sidecar && c.run.is_some())
    {
        phase = "Running"; // its sidecars are being stopped
    }
    let terminal = matches!(phase, "Succeeded" | "Failed") && (t.finished || policy != "Always");
    let mut status = pod["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    status["phase"] = json!(phase);
    status["hostIP"] = json!(HOST_IP);
    status["hostIPs"] = json!([{"ip": HOST_IP}]);
    if let Some(st) = &t.start_time {
        status["startTime"] = json!(st);
    }
    if t.sandbox {
        status["podIP"] = json!(t.ip);
        status["podIPs"] = json!([{"ip": t.ip}]);
    }
    if let Some(g) = pod["metadata"]["generation"].as_i64() {
        status["observedGeneration"] = json!(g);
    }
    status["containerStatuses"] = json!(mains);
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(inits);
    } else if let Some(o) = status.as_object_mut() {
        o.remove("initContainerStatuses");
    }
    // Initialized: every regular init container completed and every sidecar started.
    let incomplete: Vec<&str> = t
        .ctrs
        .iter()
        .filter(|c| match c.kind {
            Kind::Init => !c.completed(),
            Kind::Sidecar => !c.started_once,
            Kind::Main => false,
        })
        .map(|c| c.name.as_str())
        .collect();
    // ContainersReady: sidecars, then containers.
    let unready: Vec<&str> = t
        .ctrs
        .iter()
        .filter(|c| c.kind != Kind::Init)
        .filter(|c| c.run.is_none() || terminal)
        .map(|c| c.name.as_str())
        .collect();
    let list = |names: &[&str]| format!("[{}]", names.join(" "));
    let gen = pod["metadata"]["generation"].clone();
    let cond = |ty: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let st = if ok { "True" } else { "False" };
        let old = pod["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == ty && c["status"] == st));
        let since = old
            .map(|c| c["lastTransitionTime"].clone())
            .unwrap_or_else(|| json!(util::now()));
        let mut c =
            json!({"type": ty, "status": st, "lastProbeTime": null, "lastTransitionTime": since});
        if !gen.is_null() {
            c["observedGeneration"] = gen.clone();
        }
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        if let Some(m) = message {
            c["message"] = json!(m);
        }
        c
    };
    let terminal_reason = match phase {
        "Succeeded" => "PodCompleted",
        _ => "PodFailed",
    };
    let initialized = if incomplete.is_empty() {
        cond(
            "Initialized",
            true,
            (terminal && phase == "Succeeded").then_some("PodCompleted"),
            None,
        )
    } else {
        cond(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: {}",
                list(&incomplete)
            )),
        )
    };
    let containers_ready = if terminal {
        cond("ContainersReady", false, Some(terminal_reason), None)
    } else if unready.is_empty() {
        cond("ContainersReady", true, None, None)
    } else {
        cond(
            "ContainersReady",
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: {}",
                list(&unready)
            )),
        )
    };
    let ready = if containers_ready["status"] != "True" {
        cond(
            "Ready",
            false,
            containers_ready["reason"].as_str(),
            containers_ready["message"].as_str().map(String::from),
        )
    } else {
        // status.GeneratePodReadyCondition: every readiness gate's condition True.
        let mut unmet = Vec::new();
        for g in pod["spec"]["readinessGates"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let ty = g["conditionType"].as_str().unwrap_or("");
            match pod["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
            {
                None => unmet.push(format!(
                    "corresponding condition of pod readiness gate \"{ty}\" does not exist."
                )),
                Some(c) if c["status"] != "True" => unmet.push(format!(
                    "the status of pod readiness gate \"{ty}\" is not \"True\", but {}",
                    c["status"].as_str().unwrap_or("")
                )),
                Some(_) => {}
            }
        }
        if unmet.is_empty() {
            cond("Ready", true, None, None)
        } else {
            cond(
                "Ready",
                false,
                Some("ReadinessGatesNotReady"),
                Some(unmet.join(", ")),
            )
        }
    };
    const KUBELET_OWNED: &[&str] = &[
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ];
    // The status manager's merge: others' conditions first, as they were.
    let mut conds: Vec<Value> = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| !KUBELET_OWNED.contains(&c["type"].as_str().unwrap_or("")))
        .cloned()
        .collect();
    conds.push(cond(
        "PodReadyToStartContainers",
        t.sandbox && !terminal,
        None,
        None,
    ));
    conds.push(initialized);
    conds.push(ready);
    conds.push(containers_ready);
    conds.push(cond("PodScheduled", true, None, None));
    status["conditions"] = json!(conds);
    status
}
