//! The simulated kubelet: Pending -> Running -> Ready with the status a real kubelet reports,
//! failure modes by image convention and by configuration, and its Events.

use std::sync::Arc;
use std::time::Duration;

use fakekube::controllers::Failure;
use fakekube::store::Store;
use fakekube::{FakeCluster, ServerOptions};
use serde_json::{json, Value};

fn pod(store: &Store, name: &str) -> Option<Arc<Value>> {
    let rt = store.resource("", "pods").unwrap().clone();
    store.get(&rt, Some("default"), name).ok()
}

fn create_pod(store: &Store, name: &str, image: &str, extra: Value) {
    let mut p = json!({"metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": image}]}});
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

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn cond(p: &Value, ty: &str) -> String {
    p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == ty)
        .unwrap()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_then_running_and_ready_with_sidecars() {
    let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
    fake.controllers()
        .kubelet_config
        .lock()
        .unwrap()
        .ready_delay = Duration::from_millis(400);
    let store = fake.store();
    create_pod(
        &store,
        "web",
        "nginx",
        json!({"initContainers": [
        {"name": "proxy", "image": "envoy", "restartPolicy": "Always"},
        {"name": "setup", "image": "busybox"}]}),
    );
    let p = eventually("scheduled", || {
        pod(&store, "web").filter(|p| p["spec"]["nodeName"] == "fake-node")
    })
    .await;
    assert_eq!(p["status"]["phase"], "Pending");
    let p = eventually("ready", || {
        pod(&store, "web").filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    for c in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert_eq!(cond(&p, c), "True", "{c}");
    }
    let s = &p["status"];
    assert!(s["startTime"].is_string() && s["podIP"].is_string() && s["hostIP"].is_string());
    let cs = &s["containerStatuses"][0];
    assert_eq!(cs["ready"], true);
    assert!(cs["state"]["running"]["startedAt"].is_string());
    let inits = s["initContainerStatuses"].as_array().unwrap();
    assert_eq!(inits[0]["name"], "proxy");
    assert_eq!(inits[0]["ready"], true);
    assert!(inits[0]["state"]["running"].is_object());
    assert_eq!(inits[1]["state"]["terminated"]["reason"], "Completed");
    let r = reasons(&store, "web");
    for want in ["Scheduled", "Pulled", "Created", "Started"] {
        assert!(r.contains(&want.to_string()), "{want} in {r:?}");
    }
    let ev = events_for(&store, "web")
        .into_iter()
        .find(|e| e["reason"] == "Started")
        .unwrap();
    assert_eq!(ev["involvedObject"]["kind"], "Pod");
    assert_eq!(ev["involvedObject"]["uid"], p["metadata"]["uid"]);
    assert_eq!(ev["source"]["component"], "kubelet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_conventions_give_the_failure_states() {
    let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
    let store = fake.store();
    create_pod(
        &store,
        "pull",
        "registry.example/app:imagepullbackoff",
        json!({}),
    );
    create_pod(&store, "crash", "example/crashloop:1", json!({}));
    create_pod(
        &store,
        "broken",
        "example/fail:1",
        json!({"restartPolicy": "Never"}),
    );
    let p = eventually("ImagePullBackOff", || {
        pod(&store, "pull").filter(|p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff"
        })
    })
    .await;
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(cond(&p, "Ready"), "False");
    let r = reasons(&store, "pull");
    assert!(
        r.contains(&"Failed".into()) && r.contains(&"BackOff".into()),
        "{r:?}"
    );
    assert!(events_for(&store, "pull")
        .iter()
        .any(|e| e["type"] == "Warning" && e["reason"] == "Failed"));

    let p = eventually("restarts grow", || {
        pod(&store, "crash").filter(|p| {
            p["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .unwrap_or(0)
                >= 2
        })
    })
    .await;
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1);
    assert!(reasons(&store, "crash").contains(&"BackOff".into()));

    let p = eventually("failed", || {
        pod(&store, "broken").filter(|p| p["status"]["phase"] == "Failed")
    })
    .await;
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_chosen_from_a_test_and_job_pods_succeed() {
    let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
    let store = fake.store();
    fake.controllers()
        .set_pod_failure("stuck-", Some(Failure::ImagePullBackOff));
    fake.controllers()
        .set_pod_failure("slow-", Some(Failure::NotReady));
    create_pod(&store, "stuck-1", "nginx", json!({}));
    create_pod(&store, "slow-1", "nginx", json!({}));
    eventually("stuck", || {
        pod(&store, "stuck-1").filter(|p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff"
        })
    })
    .await;
    let p = eventually("running", || {
        pod(&store, "slow-1").filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    assert_eq!(cond(&p, "Ready"), "False");
    fake.controllers()
        .kubelet_config
        .lock()
        .unwrap()
        .job_run_time = Some(Duration::from_millis(100));
    create_pod(&store, "once", "busybox", json!({"restartPolicy": "Never"}));
    create_pod(&store, "server", "busybox", json!({}));
    let p = eventually("succeeded", || {
        pod(&store, "once").filter(|p| p["status"]["phase"] == "Succeeded")
    })
    .await;
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        0
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pod(&store, "server").unwrap()["status"]["phase"], "Running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_kept_by_a_finalizer_is_stopped() {
    let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
    let store = fake.store();
    let rt = store.resource("", "pods").unwrap().clone();
    store
        .create(
            &rt,
            Some("default"),
            json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]},
                "spec": {"containers": [{"name": "app", "image": "nginx"}]}}),
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
    let p = eventually("stopped", || {
        pod(&store, "held").filter(|p| p["status"]["phase"] == "Succeeded")
    })
    .await;
    assert!(p["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(cond(&p, "Ready"), "False");
    assert!(reasons(&store, "held").contains(&"Killing".into()));
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
    pod(store, name).filter(|p| p["status"]["phase"] == "Running" && cond(p, "Ready") == "True")
}

/// The Warning Event with this reason about the pod, if any.
fn warning(store: &Store, pod: &str, reason: &str) -> Option<Arc<Value>> {
    events_for(store, pod)
        .into_iter()
        .find(|e| e["type"] == "Warning" && e["reason"] == reason)
}

/// A pod whose claim does not exist is not scheduled (the scheduler's VolumeBinding), with the
/// FailedScheduling Event and condition kube-scheduler writes; it starts once the claim exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_a_missing_claim_stays_unscheduled_until_the_claim_exists() {
    let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
    let store = fake.store();
    create_pod(&store, "db-copy", "postgres", claim_volume("data-db-0"));
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
    assert_eq!(cond(&p, "PodScheduled"), "True");
}

/// A ReadWriteOnce claim in use by a running pod: a second pod is scheduled but its volume
/// cannot be attached (Multi-Attach, as on a multi-node cluster): ContainerCreating, never
/// Ready, until the first pod is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_pod_on_a_read_write_once_claim_waits_for_the_first() {
    let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
    let store = fake.store();
    let claim = create_claim(&store, "data-db-0", "ReadWriteOnce");
    create_pod(&store, "db-0", "postgres", claim_volume("data-db-0"));
    eventually("db-0 ready", || ready(&store, "db-0")).await;
    create_pod(&store, "db-copy", "postgres", claim_volume("data-db-0"));
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
    assert_eq!(cond(&p, "PodScheduled"), "True");
    assert_eq!(cond(&p, "PodReadyToStartContainers"), "False");
    assert_eq!(cond(&p, "Ready"), "False");
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["state"]["waiting"]["reason"], "ContainerCreating");
    assert_eq!(cs["ready"], false);
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
    let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
    let store = fake.store();
    create_claim(&store, "solo", "ReadWriteOncePod");
    create_pod(&store, "first", "nginx", claim_volume("solo"));
    eventually("first ready", || ready(&store, "first")).await;
    create_pod(&store, "second", "nginx", claim_volume("solo"));
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
    assert_eq!(cond(&p, "PodScheduled"), "False");
    let rt = store.resource("", "pods").unwrap().clone();
    store
        .delete(&rt, Some("default"), "first", &Default::default())
        .unwrap();
    eventually("second ready", || ready(&store, "second")).await;
}

/// ReadWriteMany (and ReadOnlyMany) claims are shared: both pods run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_write_many_claims_are_shared() {
    let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
    let store = fake.store();
    create_claim(&store, "shared", "ReadWriteMany");
    create_claim(&store, "reference", "ReadOnlyMany");
    let both = json!({"volumes": [
        {"name": "data", "persistentVolumeClaim": {"claimName": "shared"}},
        {"name": "ref", "persistentVolumeClaim": {"claimName": "reference", "readOnly": true}}]});
    create_pod(&store, "a", "nginx", both.clone());
    eventually("a ready", || ready(&store, "a")).await;
    create_pod(&store, "b", "nginx", both);
    eventually("b ready", || ready(&store, "b")).await;
    assert!(ready(&store, "a").is_some());
    assert!(warning(&store, "b", "FailedAttachVolume").is_none());
}
