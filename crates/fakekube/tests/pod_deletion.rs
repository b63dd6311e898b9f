//! Graceful pod deletion, as kube-apiserver's pod strategy (CheckGracefulDelete, BeforeDelete)
//! and the kubelet do it. Each case was tried on the real-cluster kit first (v1.36.2,
//! namespace fk-probe-2, watching the pod): the comments quote what it showed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{admin, plain_cluster};
use fakekube::store::{EventType, Store};
use serde_json::{json, Value};

const NS: &str = "/api/v1/namespaces/default";

fn pod(store: &Store, name: &str) -> Option<Arc<Value>> {
    let rt = store.resource("", "pods").unwrap().clone();
    store.get(&rt, Some("default"), name).ok()
}

async fn within<T>(secs: f64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
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

async fn create(port: u16, name: &str, spec: Value) {
    let r = admin(
        port,
        "POST",
        &format!("{NS}/pods"),
        Some(json!({"metadata": {"name": name}, "spec": spec})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

fn one(image: &str, command: &[&str], grace: i64) -> Value {
    let mut c = json!({"name": "c", "image": image});
    if !command.is_empty() {
        c["command"] = json!(command);
    }
    json!({"terminationGracePeriodSeconds": grace, "containers": [c]})
}

fn running(store: &Store, name: &str) -> Option<Arc<Value>> {
    pod(store, name).filter(|p| {
        p["status"]["phase"] == "Running"
            && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
    })
}

fn terminated(p: &Value) -> Value {
    p["status"]["containerStatuses"][0]["state"]["terminated"].clone()
}

/// What happened to one pod, from the store's event stream.
struct Watch(tokio::sync::broadcast::Receiver<fakekube::store::StoreEvent>);

impl Watch {
    fn new(store: &Store) -> Watch {
        Watch(store.subscribe())
    }
    /// (event, phase, deletionGracePeriodSeconds) of `name`, as far as seen.
    fn drain(&mut self, name: &str) -> Vec<(EventType, String, Value)> {
        let mut out = Vec::new();
        while let Ok(ev) = self.0.try_recv() {
            if ev.resource == ("", "pods") && ev.name == name {
                out.push((
                    ev.event,
                    ev.object["status"]["phase"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    ev.object["metadata"]["deletionGracePeriodSeconds"].clone(),
                ));
            }
        }
        out
    }
}

/// web-a (py-serv, grace 5) on the kit: DELETE answered 200 with the pod, deletionTimestamp =
/// now + 5 s, deletionGracePeriodSeconds 5; the server exited 0 on SIGTERM at once: Succeeded,
/// then the kubelet's grace-0 delete (MODIFIED with grace 0, then DELETED).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_pod_is_kept_until_the_kubelet_has_stopped_it() {
    let fake = plain_cluster().await;
    let port = fake.port();
    let store = fake.store();
    create(port, "web-a", one("ghcr.io/example/py-serv:1.0", &[], 5)).await;
    within(5.0, "running", || running(&store, "web-a")).await;
    let mut w = Watch::new(&store);
    let before = chrono::Utc::now();
    let r = admin(port, "DELETE", &format!("{NS}/pods/web-a"), None).await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["kind"], "Pod");
    assert_eq!(body["metadata"]["deletionGracePeriodSeconds"], 5);
    let dts = chrono::DateTime::parse_from_rfc3339(
        body["metadata"]["deletionTimestamp"].as_str().unwrap(),
    )
    .unwrap();
    let ahead = (dts.with_timezone(&chrono::Utc) - before).num_seconds();
    assert!((4..=6).contains(&ahead), "deletionTimestamp {ahead}s ahead");
    within(5.0, "gone", || pod(&store, "web-a").is_none().then_some(())).await;
    let seen = w.drain("web-a");
    // MODIFIED (deletionTimestamp, grace 5), kubelet status writes, MODIFIED Succeeded with
    // grace 0, DELETED
    assert_eq!(seen[0].0, EventType::Modified);
    assert_eq!(seen[0].2, 5);
    let last = seen.last().unwrap();
    assert_eq!(last.0, EventType::Deleted);
    assert_eq!(last.1, "Succeeded");
    assert_eq!(last.2, 0);
    let before_last = &seen[seen.len() - 2];
    assert_eq!(
        (before_last.0, before_last.2.clone()),
        (EventType::Modified, json!(0))
    );
    assert!(seen
        .iter()
        .any(|(e, ph, g)| *e == EventType::Modified && ph == "Succeeded" && *g == 5));
}

/// web-c (`sleep 3600`, grace 6) on the kit: PID 1 ignores SIGTERM; Running and Ready until the
/// deadline, then exit 137 (Error), Failed, deleted. trapwait (`trap 'exit 3' TERM; sleep 3600
/// & wait $!`): exit 3 at once, Failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_follows_the_process_model() {
    let fake = plain_cluster().await;
    let port = fake.port();
    let store = fake.store();
    create(port, "web-c", one("busybox", &["sleep", "3600"], 2)).await;
    create(
        port,
        "trapwait",
        one(
            "busybox",
            &[
                "sh",
                "-c",
                "trap 'echo got; exit 3' TERM; sleep 3600 & wait $!",
            ],
            30,
        ),
    )
    .await;
    within(5.0, "running", || running(&store, "web-c")).await;
    within(5.0, "running", || running(&store, "trapwait")).await;
    let mut w = Watch::new(&store);
    let t0 = std::time::Instant::now();
    assert_eq!(
        admin(port, "DELETE", &format!("{NS}/pods/web-c"), None)
            .await
            .status,
        200
    );
    assert_eq!(
        admin(port, "DELETE", &format!("{NS}/pods/trapwait"), None)
            .await
            .status,
        200
    );
    // trapwait: at once
    within(2.0, "trapwait gone", || {
        pod(&store, "trapwait").is_none().then_some(())
    })
    .await;
    // web-c: still Running (and Ready) during its grace period
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let p = pod(&store, "web-c").unwrap();
    assert_eq!(p["status"]["phase"], "Running");
    assert!(p["metadata"]["deletionTimestamp"].is_string());
    assert!(p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True"));
    let p = within(4.0, "killed", || {
        pod(&store, "web-c").filter(|p| p["status"]["phase"] == "Failed")
    })
    .await;
    assert!(t0.elapsed() >= Duration::from_secs(2), "{:?}", t0.elapsed());
    let t = terminated(&p);
    assert_eq!(
        (t["exitCode"].as_i64(), t["reason"].as_str()),
        (Some(137), Some("Error"))
    );
    within(2.0, "web-c gone", || {
        pod(&store, "web-c").is_none().then_some(())
    })
    .await;
    let seen = w.drain("trapwait");
    let failed = seen
        .iter()
        .find(|(e, ph, _)| *e == EventType::Modified && ph == "Failed");
    assert!(
        failed.is_some(),
        "{:?}",
        seen.iter().map(|s| (s.0, s.1.clone())).collect::<Vec<_>>()
    );
}

/// `shorten` on the kit: deleted with the pod's 30 s, again with 40 s (no change: only a
/// shorter grace counts), then with 3 s: deletionTimestamp moved back by 27 s, grace 3. But the
/// kubelet kept the kill it had started (`shorten2`: SIGKILL 30 s after the first delete).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_delete_may_only_shorten_the_grace_period() {
    let fake = plain_cluster().await;
    let port = fake.port();
    let store = fake.store();
    create(port, "shorten", one("busybox", &["sleep", "3600"], 30)).await;
    create(port, "shorten2", one("busybox", &["sleep", "3600"], 4)).await;
    within(5.0, "running", || running(&store, "shorten")).await;
    within(5.0, "running", || running(&store, "shorten2")).await;
    let r = admin(port, "DELETE", &format!("{NS}/pods/shorten"), None)
        .await
        .json();
    assert_eq!(r["metadata"]["deletionGracePeriodSeconds"], 30);
    let first =
        chrono::DateTime::parse_from_rfc3339(r["metadata"]["deletionTimestamp"].as_str().unwrap())
            .unwrap();
    let r = admin(
        port,
        "DELETE",
        &format!("{NS}/pods/shorten"),
        Some(json!({"gracePeriodSeconds": 40})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["metadata"]["deletionGracePeriodSeconds"], 30);
    // query parameter, as `kubectl delete --grace-period` may send it
    let r = admin(
        port,
        "DELETE",
        &format!("{NS}/pods/shorten?gracePeriodSeconds=3"),
        None,
    )
    .await
    .json();
    assert_eq!(r["metadata"]["deletionGracePeriodSeconds"], 3);
    let now =
        chrono::DateTime::parse_from_rfc3339(r["metadata"]["deletionTimestamp"].as_str().unwrap())
            .unwrap();
    let moved = (first - now).num_seconds();
    assert!((26..=28).contains(&moved), "moved back {moved}s");
    // The kubelet keeps its first deadline: shorten2 (4 s) shortened to 1 s lives its 4 s.
    let t0 = std::time::Instant::now();
    assert_eq!(
        admin(port, "DELETE", &format!("{NS}/pods/shorten2"), None)
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        admin(
            port,
            "DELETE",
            &format!("{NS}/pods/shorten2?gracePeriodSeconds=1"),
            None
        )
        .await
        .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        pod(&store, "shorten2").is_some(),
        "killed before its first deadline"
    );
    within(4.0, "shorten2 gone", || {
        pod(&store, "shorten2").is_none().then_some(())
    })
    .await;
    assert!(t0.elapsed() >= Duration::from_secs(4), "{:?}", t0.elapsed());
    assert!(pod(&store, "shorten").is_some());
}

/// `unsched` on the kit (a nodeSelector no node has): DELETE removed it at once, after a
/// MODIFIED with deletionTimestamp now and grace 0. gracePeriodSeconds=0 (`--grace-period=0
/// --force`) on a running pod: the same. A terminal pod: the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_terminal_or_zero_grace_pods_go_at_once() {
    let fake = plain_cluster().await;
    let port = fake.port();
    let store = fake.store();
    // kubelet off: nothing binds this one
    fake.controllers().set("kubelet", false);
    create(port, "unsched", one("busybox", &["sleep", "3600"], 30)).await;
    let mut w = Watch::new(&store);
    let r = admin(port, "DELETE", &format!("{NS}/pods/unsched"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["metadata"]["deletionGracePeriodSeconds"], 0);
    assert!(pod(&store, "unsched").is_none());
    let seen = w.drain("unsched");
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        [EventType::Modified, EventType::Deleted]
    );
    fake.controllers().set("kubelet", true);
    create(port, "forced", one("busybox", &["sleep", "3600"], 30)).await;
    within(5.0, "running", || running(&store, "forced")).await;
    let r = admin(
        port,
        "DELETE",
        &format!("{NS}/pods/forced"),
        Some(json!({"gracePeriodSeconds": 0})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(pod(&store, "forced").is_none());
    create(port, "done", json!({"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]})).await;
    within(5.0, "succeeded", || {
        pod(&store, "done").filter(|p| p["status"]["phase"] == "Succeeded")
    })
    .await;
    assert_eq!(
        admin(port, "DELETE", &format!("{NS}/pods/done"), None)
            .await
            .status,
        200
    );
    assert!(pod(&store, "done").is_none());
}

/// deletecollection and the garbage collector go through the same graceful path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletecollection_and_the_garbage_collector_delete_gracefully() {
    let fake = plain_cluster().await;
    let port = fake.port();
    let store = fake.store();
    for n in ["a", "b"] {
        let r = admin(
            port,
            "POST",
            &format!("{NS}/pods"),
            Some(json!({"metadata": {"name": n, "labels": {"app": "x"}},
            "spec": one("busybox", &["sleep", "3600"], 30)})),
        )
        .await;
        assert_eq!(r.status, 201);
    }
    within(5.0, "running", || running(&store, "a")).await;
    within(5.0, "running", || running(&store, "b")).await;
    let r = admin(
        port,
        "DELETE",
        &format!("{NS}/pods?labelSelector=app%3Dx"),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let items = r.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert!(items
        .iter()
        .all(|p| p["metadata"]["deletionGracePeriodSeconds"] == 30));
    assert!(pod(&store, "a").unwrap()["metadata"]["deletionTimestamp"].is_string());
    // an owned pod whose owner goes: the GC's delete is graceful too
    let cm = admin(
        port,
        "POST",
        &format!("{NS}/configmaps"),
        Some(json!({"metadata": {"name": "owner"}})),
    )
    .await
    .json();
    let owned = json!({"metadata": {"name": "owned", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap",
        "name": "owner", "uid": cm["metadata"]["uid"]}]}, "spec": one("busybox", &["sleep", "3600"], 30)});
    assert_eq!(
        admin(port, "POST", &format!("{NS}/pods"), Some(owned))
            .await
            .status,
        201
    );
    within(5.0, "running", || running(&store, "owned")).await;
    assert_eq!(
        admin(port, "DELETE", &format!("{NS}/configmaps/owner"), None)
            .await
            .status,
        200
    );
    let p = within(5.0, "owned terminating", || {
        pod(&store, "owned").filter(|p| p["metadata"]["deletionTimestamp"].is_string())
    })
    .await;
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(p["status"]["phase"], "Running");
}
