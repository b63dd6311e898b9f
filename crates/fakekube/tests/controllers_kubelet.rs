//! The simulated kubelet: pods run as the pod spec and the image say, with the status, Events
//! and timing a real kubelet reports. Every expectation here was first tried on the
//! real-cluster kit (single node, Kubernetes v1.36.2, containerd 1.6 + runc,
//! namespaces `fk-probe-*`); the comments say what it showed and which component does it.

use std::sync::Arc;
use std::time::Duration;

use fakekube::images::{Image, Program};
use fakekube::store::Store;
use fakekube::{FakeCluster, ServerOptions};
use serde_json::{json, Value};

fn pod(store: &Store, name: &str) -> Option<Arc<Value>> {
    let rt = store.resource("", "pods").unwrap().clone();
    store.get(&rt, Some("default"), name).ok()
}

/// A pod with one container `app` running `image` (`command`: empty for the image's own), and
/// `extra` merged into its spec.
fn create_pod(store: &Store, name: &str, image: &str, command: &[&str], extra: Value) {
    let mut c = json!({"name": "app", "image": image});
    if !command.is_empty() {
        c["command"] = json!(command);
    }
    let mut p = json!({"metadata": {"name": name}, "spec": {"containers": [c]}});
    if let Some(m) = extra.as_object() {
        for (k, v) in m {
            p["spec"][k] = v.clone();
        }
    }
    store
        .create(
            store.resource("", "pods").unwrap(),
            Some("default"),
            p,
            false,
        )
        .unwrap();
}

fn events_for(store: &Store, name: &str) -> Vec<Arc<Value>> {
    let rt = store.resource("", "events").unwrap().clone();
    let n = name.to_string();
    store
        .list(&rt, Some("default"), &move |e| {
            e["involvedObject"]["name"] == n.as_str()
        })
        .0
}

fn reasons(store: &Store, name: &str) -> Vec<String> {
    events_for(store, name)
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect()
}

/// The Event with this reason and message about the pod, if any.
fn event(store: &Store, pod: &str, reason: &str, message: &str) -> Option<Arc<Value>> {
    events_for(store, pod)
        .into_iter()
        .find(|e| e["reason"] == reason && e["message"] == message)
}

async fn within<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn eventually<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    within(5, what, f).await
}

fn cond(p: &Value, ty: &str) -> Value {
    p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
        .cloned()
        .unwrap_or(Value::Null)
}

fn status(p: &Value, ty: &str) -> String {
    cond(p, ty)["status"].as_str().unwrap_or("").to_string()
}

fn cs(p: &Value) -> Value {
    p["status"]["containerStatuses"][0].clone()
}

fn waiting_reason(p: &Value) -> String {
    cs(p)["state"]["waiting"]["reason"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

async fn start() -> FakeCluster {
    FakeCluster::start(ServerOptions::default()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_then_running_and_ready_with_init_containers_and_sidecars() {
    let fake = start().await;
    fake.controllers()
        .kubelet_config
        .lock()
        .unwrap()
        .ready_delay = Duration::from_millis(400);
    let store = fake.store();
    create_pod(
        &store,
        "web",
        "ghcr.io/example/py-serv:1.0",
        &[],
        json!({"initContainers": [
            {"name": "proxy", "image": "ghcr.io/example/worker:3", "restartPolicy": "Always"},
            {"name": "setup", "image": "busybox", "command": ["sh", "-c", "sleep 0.3"]}]}),
    );
    // Right after scheduling the kubelet reports the containers waiting (PodInitializing with
    // init containers), PodReadyToStartContainers False, no podIP yet.
    let p = eventually("creating", || {
        pod(&store, "web").filter(|p| p["status"]["containerStatuses"].is_array())
    })
    .await;
    assert_eq!(p["spec"]["nodeName"], "fake-node");
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(status(&p, "PodReadyToStartContainers"), "False");
    assert_eq!(waiting_reason(&p), "PodInitializing");
    assert!(p["status"]["podIP"].is_null());
    // okinit on the real cluster: the sidecar starts, the init container runs to completion,
    // then the containers; Initialized flips when the last init container completes.
    let p = eventually("init running", || {
        pod(&store, "web")
            .filter(|p| p["status"]["initContainerStatuses"][1]["state"]["running"].is_object())
    })
    .await;
    assert_eq!(p["status"]["phase"], "Pending");
    let setup = &p["status"]["initContainerStatuses"][1];
    assert_eq!(
        setup["ready"], false,
        "a running init container is not ready"
    );
    assert_eq!(setup["started"], true);
    let c = cond(&p, "Initialized");
    assert_eq!(c["status"], "False");
    assert_eq!(c["reason"], "ContainersNotInitialized");
    assert_eq!(c["message"], "containers with incomplete status: [setup]");
    let p = eventually("ready", || {
        pod(&store, "web")
            .filter(|p| p["status"]["phase"] == "Running" && status(p, "Ready") == "True")
    })
    .await;
    for c in [
        "PodReadyToStartContainers",
        "PodScheduled",
        "Initialized",
        "ContainersReady",
        "Ready",
    ] {
        assert_eq!(status(&p, c), "True", "{c}");
    }
    let s = &p["status"];
    assert!(s["startTime"].is_string() && s["podIP"].is_string() && s["hostIP"].is_string());
    let c = cs(&p);
    assert_eq!(c["ready"], true);
    assert_eq!(c["started"], true);
    assert!(c["state"]["running"]["startedAt"].is_string());
    assert_eq!(c["image"], "ghcr.io/example/py-serv:1.0");
    assert_eq!(
        c["imageID"],
        "ghcr.io/example/py-serv@sha256:446f9ea426a958ca6ef60d31f978bdcbce2a3309af5a6cd449af779eac5d40a7"
    );
    assert!(c["containerID"]
        .as_str()
        .unwrap()
        .starts_with("containerd://"));
    let inits = s["initContainerStatuses"].as_array().unwrap();
    assert_eq!(inits[0]["name"], "proxy");
    assert_eq!(inits[0]["ready"], true);
    assert!(inits[0]["state"]["running"].is_object());
    // a completed init container: ready true, started false (as the real kubelet reports it)
    assert_eq!(inits[1]["state"]["terminated"]["reason"], "Completed");
    assert_eq!(inits[1]["ready"], true);
    assert_eq!(inits[1]["started"], false);
    // `busybox` runs as the first of its image's tags, as containerd reports it
    assert_eq!(inits[1]["image"], "docker.io/library/busybox:1.35");
    // kubelet 1.36's Event texts; init containers' fieldPath is spec.initContainers{NAME}
    assert!(event(&store, "web", "Started", "Container started").is_some());
    assert!(event(&store, "web", "Created", "Container created").is_some());
    let pulled = event(
        &store,
        "web",
        "Pulled",
        "Container image \"ghcr.io/example/worker:3\" already present on machine and can be accessed by the pod",
    )
    .unwrap();
    assert_eq!(
        pulled["involvedObject"]["fieldPath"],
        "spec.initContainers{proxy}"
    );
    assert_eq!(pulled["source"]["component"], "kubelet");
    assert_eq!(pulled["involvedObject"]["uid"], p["metadata"]["uid"]);
    // busybox has pull policy Always (tag latest): pulled every time
    assert!(event(&store, "web", "Pulling", "Pulling image \"busybox\"").is_some());
    assert!(event(
        &store,
        "web",
        "Pulled",
        "Successfully pulled image \"busybox\" in 25ms (25ms including waiting). Image size: 1037190 bytes."
    )
    .is_some());
    assert!(reasons(&store, "web").contains(&"Scheduled".to_string()));
}

/// `image: ghcr.io/example/missing:1` on the kit: ErrImagePull, Events Pulling / Failed x2,
/// then (13 s later there, the pod worker's retry) ImagePullBackOff with BackOff and
/// `Error: ImagePullBackOff`. Pending throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_the_registry_does_not_hold_fails_to_pull() {
    let fake = start().await;
    let store = fake.store();
    create_pod(&store, "pull", "ghcr.io/example/missing:1", &[], json!({}));
    create_pod(&store, "x", "x:1", &[], json!({}));
    let p = eventually("ErrImagePull", || {
        pod(&store, "pull").filter(|p| waiting_reason(p) == "ErrImagePull")
    })
    .await;
    assert_eq!(
        cs(&p)["state"]["waiting"]["message"],
        "rpc error: code = NotFound desc = failed to pull and unpack image \"ghcr.io/example/missing:1\": failed to resolve reference \"ghcr.io/example/missing:1\": ghcr.io/example/missing:1: not found"
    );
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(cs(&p)["imageID"], "");
    assert_eq!(cs(&p)["image"], "ghcr.io/example/missing:1");
    let ready = cond(&p, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["message"], "containers with unready status: [app]");
    assert!(event(
        &store,
        "pull",
        "Pulling",
        "Pulling image \"ghcr.io/example/missing:1\""
    )
    .is_some());
    let failed = event(&store, "pull", "Failed", "Failed to pull image \"ghcr.io/example/missing:1\": rpc error: code = NotFound desc = failed to pull and unpack image \"ghcr.io/example/missing:1\": failed to resolve reference \"ghcr.io/example/missing:1\": ghcr.io/example/missing:1: not found").unwrap();
    assert_eq!(failed["type"], "Warning");
    assert!(event(&store, "pull", "Failed", "Error: ErrImagePull").is_some());
    // A short name is normalized in the message (the brief's `docker.io/library/x:1`).
    let x = eventually("x ErrImagePull", || {
        pod(&store, "x").filter(|p| waiting_reason(p) == "ErrImagePull")
    })
    .await;
    assert_eq!(
        cs(&x)["state"]["waiting"]["message"],
        "rpc error: code = NotFound desc = failed to pull and unpack image \"docker.io/library/x:1\": failed to resolve reference \"docker.io/library/x:1\": docker.io/library/x:1: not found"
    );
    let p = within(15, "ImagePullBackOff", || {
        pod(&store, "pull").filter(|p| waiting_reason(p) == "ImagePullBackOff")
    })
    .await;
    assert_eq!(
        cs(&p)["state"]["waiting"]["message"],
        "Back-off pulling image \"ghcr.io/example/missing:1\": ErrImagePull: rpc error: code = NotFound desc = failed to pull and unpack image \"ghcr.io/example/missing:1\": failed to resolve reference \"ghcr.io/example/missing:1\": ghcr.io/example/missing:1: not found"
    );
    assert_eq!(p["status"]["phase"], "Pending");
    // the pull's BackOff is a Normal Event
    let b = event(
        &store,
        "pull",
        "BackOff",
        "Back-off pulling image \"ghcr.io/example/missing:1\"",
    )
    .unwrap();
    assert_eq!(b["type"], "Normal");
    assert!(event(&store, "pull", "Failed", "Error: ImagePullBackOff").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_never_pull_and_pushed_images_run() {
    let fake = start().await;
    let store = fake.store();
    // `image: BusyBox` on the kit: InvalidImageName, Warning InspectFailed
    create_pod(&store, "upper", "BusyBox", &[], json!({}));
    let p = eventually("InvalidImageName", || {
        pod(&store, "upper").filter(|p| waiting_reason(p) == "InvalidImageName")
    })
    .await;
    let msg = "Failed to apply default image tag \"BusyBox\": couldn't parse image name \"BusyBox\": invalid reference format: repository name (library/BusyBox) must be lowercase";
    assert_eq!(cs(&p)["state"]["waiting"]["message"], msg);
    assert!(event(&store, "upper", "InspectFailed", msg).is_some());
    assert!(event(&store, "upper", "Failed", "Error: InvalidImageName").is_some());
    // imagePullPolicy Never and an image not on the node
    let mut c =
        json!({"name": "app", "image": "ghcr.io/example/missing:2", "imagePullPolicy": "Never"});
    store
        .create(
            store.resource("", "pods").unwrap(),
            Some("default"),
            json!({"metadata": {"name": "never"}, "spec": {"containers": [c.take()]}}),
            false,
        )
        .unwrap();
    let p = eventually("ErrImageNeverPull", || {
        pod(&store, "never").filter(|p| waiting_reason(p) == "ErrImageNeverPull")
    })
    .await;
    assert_eq!(
        cs(&p)["state"]["waiting"]["message"],
        "Container image \"ghcr.io/example/missing:2\" is not present with pull policy of Never"
    );
    // An image a test pushes runs like any other: its entrypoint is a script in the subset.
    fake.images().push(
        Image::new(["ghcr.io/example/app:1"])
            .busybox()
            .entrypoint(["/usr/local/bin/app"])
            .file("/usr/local/bin/app", Program::Script("sleep 3600".into())),
    );
    create_pod(&store, "pushed", "ghcr.io/example/app:1", &[], json!({}));
    let p = eventually("pushed runs", || {
        pod(&store, "pushed").filter(|p| status(p, "Ready") == "True")
    })
    .await;
    assert_eq!(cs(&p)["image"], "ghcr.io/example/app:1");
    // IfNotPresent and not on the node yet: pulled once
    assert!(event(
        &store,
        "pushed",
        "Pulling",
        "Pulling image \"ghcr.io/example/app:1\""
    )
    .is_some());
    // a program the model does not know runs until killed, and the kubelet says so
    create_pod(
        &store,
        "nc",
        "busybox",
        &["nc", "-l", "-p", "80"],
        json!({}),
    );
    eventually("nc runs", || {
        pod(&store, "nc").filter(|p| status(p, "Ready") == "True")
    })
    .await;
    let note = events_for(&store, "nc")
        .into_iter()
        .find(|e| e["reason"] == "UnmodelledProcess")
        .unwrap();
    assert!(note["message"]
        .as_str()
        .unwrap()
        .contains("busybox nc is not modelled"));
    // ... also when the script reaches it later
    create_pod(
        &store,
        "later",
        "busybox",
        &["sh", "-c", "sleep 0.3; nc -l -p 80"],
        json!({}),
    );
    eventually("later's note", || {
        events_for(&store, "later")
            .into_iter()
            .find(|e| e["reason"] == "UnmodelledProcess")
    })
    .await;
}

/// busybox with `sh -c "echo boom; exit 1"` on the kit: Running+Ready for a moment,
/// terminated Error, restarted at once (restartCount 1), then CrashLoopBackOff "back-off 10s"
/// ~1 s after the second exit with a Warning BackOff Event; the next restart ~10 s later
/// (flowcontrol.Backoff in the kubelet's doBackOff: 10 s, 20 s, 40 s ... 300 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_container_restarts_with_back_off() {
    let fake = start().await;
    let store = fake.store();
    let mut watch = store.subscribe();
    create_pod(
        &store,
        "crash",
        "busybox",
        &["sh", "-c", "echo boom; exit 1"],
        json!({}),
    );
    let t0 = std::time::Instant::now();
    let p = within(4, "CrashLoopBackOff", || {
        pod(&store, "crash").filter(|p| waiting_reason(p) == "CrashLoopBackOff")
    })
    .await;
    let c = cs(&p);
    assert_eq!(c["restartCount"], 1);
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(c["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(c["ready"], false);
    let uid = p["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        c["state"]["waiting"]["message"],
        format!("back-off 10s restarting failed container=app pod=crash_default({uid})")
    );
    assert_eq!(p["status"]["phase"], "Running");
    assert_eq!(cond(&p, "Ready")["reason"], "ContainersNotReady");
    // What a watcher saw: Running and Ready first (no probes), then terminated Error.
    let mut seen = Vec::new();
    while let Ok(ev) = watch.try_recv() {
        if ev.resource == ("", "pods") && ev.name == "crash" {
            let c = cs(&ev.object);
            let st = c["state"]
                .as_object()
                .and_then(|o| o.keys().next().cloned())
                .unwrap_or_default();
            let rc = c["restartCount"].as_i64().unwrap_or(0);
            seen.push((st, status(&ev.object, "Ready"), rc));
        }
    }
    let first_run = seen
        .iter()
        .position(|s| s.0 == "running")
        .expect("seen running");
    assert_eq!(seen[first_run].1, "True", "{seen:?}");
    assert_eq!(
        seen[first_run + 1],
        ("terminated".to_string(), "False".to_string(), 0),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|s| s.0 == "running" && s.2 == 1),
        "{seen:?}"
    );
    let b = event(
        &store,
        "crash",
        "BackOff",
        &format!("Back-off restarting failed container app in pod crash_default({uid})"),
    )
    .unwrap();
    assert_eq!(b["type"], "Warning");
    assert_eq!(b["involvedObject"]["fieldPath"], "spec.containers{app}");
    // The second restart waits out the 10 s back-off.
    let p = within(15, "restart 2", || {
        pod(&store, "crash").filter(|p| cs(p)["restartCount"] == 2)
    })
    .await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(10),
        "restarted after {waited:?}"
    );
    // then back-off 20s
    let p2 = within(4, "back-off 20s", || {
        pod(&store, "crash").filter(|p| {
            cs(p)["state"]["waiting"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("back-off 20s"))
        })
    })
    .await;
    let _ = (p, p2);
    let started = events_for(&store, "crash")
        .into_iter()
        .find(|e| e["reason"] == "Started")
        .unwrap();
    assert!(started["count"].as_i64().unwrap() >= 3, "{started}");
}

/// `image: registry.k8s.io/pause:3.10, command: ["sleep", "infinity"]` on the kit: runc cannot
/// find sleep; lastState StartError exit 128 (startedAt the zero time), waiting
/// RunContainerError, Warning Failed "Error: ...", then the same back-off as a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_executable_is_a_start_error_and_crash_loops() {
    let fake = start().await;
    let store = fake.store();
    create_pod(
        &store,
        "nosleep",
        "registry.k8s.io/pause:3.10",
        &["sleep", "infinity"],
        json!({}),
    );
    let msg = "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"sleep\": executable file not found in $PATH: unknown";
    let p = eventually("RunContainerError", || {
        pod(&store, "nosleep").filter(|p| waiting_reason(p) == "RunContainerError")
    })
    .await;
    let c = cs(&p);
    assert_eq!(c["state"]["waiting"]["message"], msg);
    let last = &c["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 128);
    assert_eq!(last["reason"], "StartError");
    assert_eq!(last["message"], msg);
    assert_eq!(last["startedAt"], "1970-01-01T00:00:00Z");
    assert_eq!(c["image"], "registry.k8s.io/pause:3.10");
    assert!(event(&store, "nosleep", "Failed", &format!("Error: {msg}")).is_some());
    let p = within(5, "CrashLoopBackOff", || {
        pod(&store, "nosleep").filter(|p| waiting_reason(p) == "CrashLoopBackOff")
    })
    .await;
    assert_eq!(cs(&p)["restartCount"], 1);
    assert_eq!(cs(&p)["lastState"]["terminated"]["reason"], "StartError");
    // restartPolicy Never: terminated StartError, phase Failed (starterr-never)
    create_pod(
        &store,
        "once",
        "registry.k8s.io/pause:3.10",
        &["sleep", "1"],
        json!({"restartPolicy": "Never"}),
    );
    let p = eventually("Failed", || {
        pod(&store, "once").filter(|p| p["status"]["phase"] == "Failed")
    })
    .await;
    assert_eq!(cs(&p)["state"]["terminated"]["reason"], "StartError");
    assert_eq!(cs(&p)["restartCount"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_decides_what_follows_an_exit() {
    let fake = start().await;
    let store = fake.store();
    // `once`: sh -c "sleep 1", Never: Succeeded, Completed exit 0; PodCompleted conditions
    create_pod(
        &store,
        "once",
        "busybox",
        &["sh", "-c", "sleep 1"],
        json!({"restartPolicy": "Never"}),
    );
    // `failnever`: exit 2, Never: Failed, Error exit 2; PodFailed conditions
    create_pod(
        &store,
        "failnever",
        "busybox",
        &["sh", "-c", "exit 2"],
        json!({"restartPolicy": "Never"}),
    );
    create_pod(
        &store,
        "okonfailure",
        "busybox",
        &["true"],
        json!({"restartPolicy": "OnFailure"}),
    );
    create_pod(
        &store,
        "badonfailure",
        "busybox",
        &["false"],
        json!({"restartPolicy": "OnFailure"}),
    );
    // `shonly`: busybox's CMD sh exits 0 at once; Always restarts it (Completed, then back-off)
    create_pod(&store, "shonly", "busybox", &[], json!({}));
    let p = eventually("once running", || {
        pod(&store, "once").filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    assert_eq!(
        status(&p, "Ready"),
        "True",
        "Ready the moment it runs: no probes"
    );
    let p = eventually("once succeeded", || {
        pod(&store, "once").filter(|p| p["status"]["phase"] == "Succeeded")
    })
    .await;
    let t = &cs(&p)["state"]["terminated"];
    assert_eq!(
        (t["exitCode"].as_i64(), t["reason"].as_str()),
        (Some(0), Some("Completed"))
    );
    assert_eq!(cond(&p, "Ready")["reason"], "PodCompleted");
    assert_eq!(cond(&p, "ContainersReady")["reason"], "PodCompleted");
    assert_eq!(cond(&p, "Initialized")["reason"], "PodCompleted");
    assert_eq!(status(&p, "PodReadyToStartContainers"), "False");
    let p = eventually("failnever failed", || {
        pod(&store, "failnever").filter(|p| p["status"]["phase"] == "Failed")
    })
    .await;
    assert_eq!(cs(&p)["state"]["terminated"]["exitCode"], 2);
    assert_eq!(cs(&p)["state"]["terminated"]["reason"], "Error");
    assert_eq!(cond(&p, "Ready")["reason"], "PodFailed");
    eventually("okonfailure succeeded", || {
        pod(&store, "okonfailure").filter(|p| p["status"]["phase"] == "Succeeded")
    })
    .await;
    let p = eventually("badonfailure restarts", || {
        pod(&store, "badonfailure").filter(|p| cs(p)["restartCount"] == 1)
    })
    .await;
    assert_eq!(p["status"]["phase"], "Running");
    let p = eventually("shonly restarts", || {
        pod(&store, "shonly").filter(|p| waiting_reason(p) == "CrashLoopBackOff")
    })
    .await;
    assert_eq!(cs(&p)["lastState"]["terminated"]["reason"], "Completed");
    assert_eq!(p["status"]["phase"], "Running");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in ["once", "failnever", "okonfailure"] {
        assert_eq!(cs(&pod(&store, n).unwrap())["restartCount"], 0, "{n}");
    }
}

/// `initfail` on the kit: an init container exiting 3 restarts with back-off (pod Pending,
/// kubectl's Init:Error / Init:CrashLoopBackOff), the containers wait in PodInitializing; with
/// restartPolicy Never the pod Fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_init_container_holds_the_pod() {
    let fake = start().await;
    let store = fake.store();
    let inits = json!({"initContainers": [{"name": "i", "image": "busybox", "command": ["sh", "-c", "exit 3"]}]});
    create_pod(
        &store,
        "initfail",
        "busybox",
        &["sleep", "3600"],
        inits.clone(),
    );
    let mut never = inits.clone();
    never["restartPolicy"] = json!("Never");
    create_pod(&store, "initnever", "busybox", &["sleep", "3600"], never);
    let p = within(4, "init CrashLoopBackOff", || {
        pod(&store, "initfail").filter(|p| {
            p["status"]["initContainerStatuses"][0]["state"]["waiting"]["reason"]
                == "CrashLoopBackOff"
        })
    })
    .await;
    assert_eq!(p["status"]["phase"], "Pending");
    let i = &p["status"]["initContainerStatuses"][0];
    assert_eq!(i["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(i["restartCount"], 1);
    assert_eq!(waiting_reason(&p), "PodInitializing");
    assert_eq!(
        cond(&p, "Initialized")["message"],
        "containers with incomplete status: [i]"
    );
    assert!(events_for(&store, "initfail")
        .iter()
        .any(|e| e["reason"] == "BackOff"
            && e["involvedObject"]["fieldPath"] == "spec.initContainers{i}"));
    let p = eventually("initnever failed", || {
        pod(&store, "initnever").filter(|p| p["status"]["phase"] == "Failed")
    })
    .await;
    assert_eq!(
        p["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );
    assert_eq!(waiting_reason(&p), "PodInitializing");
}

/// mirrord-copy's pattern (okinit / standalone on the kit): an init container copies busybox
/// into an emptyDir, and an image without a shell runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_copied_into_an_empty_dir_runs_in_the_next_container() {
    let fake = start().await;
    let store = fake.store();
    let spec = json!({
        "initContainers": [{"name": "setup", "image": "busybox", "command": ["cp", "/bin/busybox", "/.mirrord-copy/busybox"],
            "volumeMounts": [{"name": "tools", "mountPath": "/.mirrord-copy"}]}],
        "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
            "command": ["/.mirrord-copy/busybox", "sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
            "volumeMounts": [{"name": "tools", "mountPath": "/.mirrord-copy"}]}],
        "volumes": [{"name": "tools", "emptyDir": {}}]});
    store
        .create(
            store.resource("", "pods").unwrap(),
            Some("default"),
            json!({"metadata": {"name": "copied"}, "spec": spec.clone()}),
            false,
        )
        .unwrap();
    let p = eventually("copied runs", || {
        pod(&store, "copied").filter(|p| status(p, "Ready") == "True")
    })
    .await;
    assert_eq!(cs(&p)["volumeMounts"][0]["mountPath"], "/.mirrord-copy");
    // Without the init container nothing is there: a start error.
    let mut bare = spec.clone();
    bare.as_object_mut().unwrap().remove("initContainers");
    store
        .create(
            store.resource("", "pods").unwrap(),
            Some("default"),
            json!({"metadata": {"name": "bare"}, "spec": bare}),
            false,
        )
        .unwrap();
    let p = eventually("bare fails", || {
        pod(&store, "bare").filter(|p| waiting_reason(p) == "RunContainerError")
    })
    .await;
    assert!(cs(&p)["state"]["waiting"]["message"].as_str().unwrap().ends_with(
        "exec: \"/.mirrord-copy/busybox\": stat /.mirrord-copy/busybox: no such file or directory: unknown"
    ));
}

/// `gate` / `web-b` on the kit: ContainersReady True, Ready False with ReadinessGatesNotReady
/// and status.GeneratePodReadyCondition's messages; Ready once another component sets the
/// condition True, which the kubelet keeps (first, as the status manager merges).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_gates_hold_ready() {
    let fake = start().await;
    let store = fake.store();
    create_pod(
        &store,
        "gate",
        "busybox",
        &["sleep", "3600"],
        json!({"readinessGates": [{"conditionType": "example.com/ready"}]}),
    );
    let p = eventually("containers ready", || {
        pod(&store, "gate").filter(|p| status(p, "ContainersReady") == "True")
    })
    .await;
    let r = cond(&p, "Ready");
    assert_eq!(r["status"], "False");
    assert_eq!(r["reason"], "ReadinessGatesNotReady");
    assert_eq!(
        r["message"],
        "corresponding condition of pod readiness gate \"example.com/ready\" does not exist."
    );
    assert_eq!(p["status"]["phase"], "Running");
    let rt = store.resource("", "pods").unwrap().clone();
    let set_gate = |st: &str| {
        let mut o = (*pod(&store, "gate").unwrap()).clone();
        let mut cs: Vec<Value> = o["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["type"] != "example.com/ready")
            .cloned()
            .collect();
        cs.push(json!({"type": "example.com/ready", "status": st}));
        o["status"]["conditions"] = json!(cs);
        store
            .update(&rt, Some("default"), "gate", o, Some("status"), false)
            .unwrap();
    };
    set_gate("False");
    let p = eventually("gate false", || {
        pod(&store, "gate").filter(|p| cond(p, "Ready")["message"] == "the status of pod readiness gate \"example.com/ready\" is not \"True\", but False")
    })
    .await;
    assert_eq!(p["status"]["conditions"][0]["type"], "example.com/ready");
    set_gate("True");
    let p = eventually("ready", || {
        pod(&store, "gate").filter(|p| status(p, "Ready") == "True")
    })
    .await;
    assert_eq!(p["status"]["conditions"][0]["type"], "example.com/ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_kept_by_a_finalizer_is_stopped() {
    let fake = start().await;
    let store = fake.store();
    let rt = store.resource("", "pods").unwrap().clone();
    store
        .create(
            &rt,
            Some("default"),
            json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}}),
            false,
        )
        .unwrap();
    eventually("running", || {
        pod(&store, "held").filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    store
        .delete(&rt, Some("default"), "held", &Default::default())
        .unwrap();
    // pause exits 0 on SIGTERM: Succeeded; the kubelet's grace-0 delete leaves it to the
    // finalizer
    let p = eventually("stopped", || {
        pod(&store, "held").filter(|p| {
            p["status"]["phase"] == "Succeeded" && p["metadata"]["deletionGracePeriodSeconds"] == 0
        })
    })
    .await;
    assert!(p["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(status(&p, "Ready"), "False");
    assert!(event(&store, "held", "Killing", "Stopping container app").is_some());
    let mut o = (*p).clone();
    o["metadata"]["finalizers"] = json!([]);
    store
        .update(&rt, Some("default"), "held", o, None, false)
        .unwrap();
    assert!(pod(&store, "held").is_none());
}

fn create_claim(store: &Store, name: &str, mode: &str) -> Arc<Value> {
    store
        .create(
            store.resource("", "persistentvolumeclaims").unwrap(),
            Some("default"),
            json!({"metadata": {"name": name},
                "spec": {"accessModes": [mode], "resources": {"requests": {"storage": "1Gi"}}}}),
            false,
        )
        .unwrap()
}

fn claim_volume(claim: &str) -> Value {
    json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]})
}

fn ready(store: &Store, name: &str) -> Option<Arc<Value>> {
    pod(store, name).filter(|p| p["status"]["phase"] == "Running" && status(p, "Ready") == "True")
}

/// The Warning Event with this reason about the pod, if any.
fn warning(store: &Store, pod: &str, reason: &str) -> Option<Arc<Value>> {
    events_for(store, pod)
        .into_iter()
        .find(|e| e["type"] == "Warning" && e["reason"] == reason)
}

const PG: &str = "postgres:16";
const WEB: &str = "ghcr.io/example/py-serv:1.0";

/// A pod whose claim does not exist is not scheduled (the scheduler's VolumeBinding), with the
/// FailedScheduling Event and condition kube-scheduler writes; it starts once the claim exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_a_missing_claim_stays_unscheduled_until_the_claim_exists() {
    let fake = start().await;
    let store = fake.store();
    create_pod(&store, "db-copy", PG, &[], claim_volume("data-db-0"));
    let ev = eventually("FailedScheduling", || {
        warning(&store, "db-copy", "FailedScheduling")
    })
    .await;
    let msg = "0/1 nodes are available: persistentvolumeclaim \"data-db-0\" not found. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";
    assert_eq!(ev["message"], msg);
    assert_eq!(ev["reportingComponent"], "default-scheduler");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let p = pod(&store, "db-copy").unwrap();
    assert!(p["spec"]["nodeName"].is_null(), "{p}");
    assert_eq!(p["status"]["phase"], "Pending");
    let sched = &p["status"]["conditions"][0];
    assert_eq!(sched["type"], "PodScheduled");
    assert_eq!(sched["status"], "False");
    assert_eq!(sched["reason"], "Unschedulable");
    assert_eq!(sched["message"], msg);
    assert!(p["status"]["containerStatuses"].is_null());
    assert!(!reasons(&store, "db-copy").contains(&"Scheduled".to_string()));

    create_claim(&store, "data-db-0", "ReadWriteOnce");
    let p = eventually("ready", || ready(&store, "db-copy")).await;
    assert_eq!(p["spec"]["nodeName"], "fake-node");
    assert_eq!(status(&p, "PodScheduled"), "True");
}

/// A ReadWriteOnce claim in use by a running pod: a second pod is scheduled but its volume
/// cannot be attached (Multi-Attach, as on a multi-node cluster): ContainerCreating, never
/// Ready, until the first pod is gone (postgres exits 0 on SIGTERM: at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_pod_on_a_read_write_once_claim_waits_for_the_first() {
    let fake = start().await;
    let store = fake.store();
    let claim = create_claim(&store, "data-db-0", "ReadWriteOnce");
    create_pod(&store, "db-0", PG, &[], claim_volume("data-db-0"));
    eventually("db-0 ready", || ready(&store, "db-0")).await;
    create_pod(&store, "db-copy", PG, &[], claim_volume("data-db-0"));
    let ev = eventually("FailedAttachVolume", || {
        warning(&store, "db-copy", "FailedAttachVolume")
    })
    .await;
    assert_eq!(
        ev["message"],
        format!(
            "Multi-Attach error for volume \"pvc-{}\" Volume is already used by pod(s) db-0",
            claim["metadata"]["uid"].as_str().unwrap()
        )
    );
    assert_eq!(ev["source"]["component"], "attachdetach-controller");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let p = pod(&store, "db-copy").unwrap();
    assert_eq!(p["spec"]["nodeName"], "fake-node");
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(status(&p, "PodScheduled"), "True");
    assert_eq!(status(&p, "PodReadyToStartContainers"), "False");
    assert_eq!(status(&p, "Ready"), "False");
    let c = cs(&p);
    assert_eq!(c["state"]["waiting"]["reason"], "ContainerCreating");
    assert_eq!(c["ready"], false);
    assert!(p["status"]["podIP"].is_null());
    assert!(!reasons(&store, "db-copy").contains(&"Started".to_string()));
    assert!(ready(&store, "db-0").is_some());

    let rt = store.resource("", "pods").unwrap().clone();
    store
        .delete(&rt, Some("default"), "db-0", &Default::default())
        .unwrap();
    let p = eventually("db-copy ready", || ready(&store, "db-copy")).await;
    assert!(p["status"]["podIP"].is_string());
}

/// ReadWriteOncePod: the scheduler's VolumeRestrictions keeps a second pod unscheduled while
/// another pod uses the claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_write_once_pod_claim_keeps_a_second_pod_unscheduled() {
    let fake = start().await;
    let store = fake.store();
    create_claim(&store, "solo", "ReadWriteOncePod");
    create_pod(&store, "first", WEB, &[], claim_volume("solo"));
    eventually("first ready", || ready(&store, "first")).await;
    create_pod(&store, "second", WEB, &[], claim_volume("solo"));
    let ev = eventually("FailedScheduling", || {
        warning(&store, "second", "FailedScheduling")
    })
    .await;
    assert_eq!(
        ev["message"],
        "0/1 nodes are available: 1 node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let p = pod(&store, "second").unwrap();
    assert!(p["spec"]["nodeName"].is_null());
    assert_eq!(status(&p, "PodScheduled"), "False");
    let rt = store.resource("", "pods").unwrap().clone();
    store
        .delete(&rt, Some("default"), "first", &Default::default())
        .unwrap();
    eventually("second ready", || ready(&store, "second")).await;
}

/// ReadWriteMany (and ReadOnlyMany) claims are shared: both pods run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_write_many_claims_are_shared() {
    let fake = start().await;
    let store = fake.store();
    create_claim(&store, "shared", "ReadWriteMany");
    create_claim(&store, "reference", "ReadOnlyMany");
    let both = json!({"volumes": [
        {"name": "data", "persistentVolumeClaim": {"claimName": "shared"}},
        {"name": "ref", "persistentVolumeClaim": {"claimName": "reference", "readOnly": true}}]});
    create_pod(&store, "a", WEB, &[], both.clone());
    eventually("a ready", || ready(&store, "a")).await;
    create_pod(&store, "b", WEB, &[], both);
    eventually("b ready", || ready(&store, "b")).await;
    assert!(ready(&store, "a").is_some());
    assert!(warning(&store, "b", "FailedAttachVolume").is_none());
}

/// `jobside` on the kit (restartPolicy Never, a `sleep 3600` sidecar, grace 4 s): once the
/// container completed, the pod stayed Running while the kubelet stopped the sidecar (Killing
/// "Stopping container side", SIGKILL at the deadline: 137), then Succeeded (sidecars do not
/// count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_are_stopped_when_the_containers_are_done() {
    let fake = start().await;
    let store = fake.store();
    create_pod(
        &store,
        "jobside",
        "busybox",
        &["sh", "-c", "sleep 1"],
        json!({"restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
            "initContainers": [{"name": "side", "image": "busybox", "restartPolicy": "Always", "command": ["sleep", "3600"]}]}),
    );
    let p = eventually("main done", || {
        pod(&store, "jobside").filter(|p| cs(p)["state"]["terminated"].is_object())
    })
    .await;
    assert_eq!(p["status"]["phase"], "Running");
    assert!(p["status"]["initContainerStatuses"][0]["state"]["running"].is_object());
    assert!(event(&store, "jobside", "Killing", "Stopping container side").is_some());
    let p = eventually("succeeded", || {
        pod(&store, "jobside").filter(|p| p["status"]["phase"] == "Succeeded")
    })
    .await;
    let side = &p["status"]["initContainerStatuses"][0]["state"]["terminated"];
    assert_eq!(side["exitCode"], 137);
    assert_eq!(status(&p, "PodReadyToStartContainers"), "False");
}
