//! The EndpointSlice controller, against what the real-cluster kit's kube-controller-manager
//! wrote (v1.36.2, namespace fk-probe-2: Service `web` over py-serv and busybox pods, one with
//! an unmet readiness gate; Services `empty` and `hl`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{admin, plain_cluster};
use fakekube::store::Store;
use serde_json::{json, Value};

const NS: &str = "/api/v1/namespaces/default";

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

fn slices(store: &Store, svc: &str) -> Vec<Arc<Value>> {
    let rt = store
        .resource("discovery.k8s.io", "endpointslices")
        .unwrap()
        .clone();
    let s = svc.to_string();
    store
        .list(&rt, Some("default"), &move |o| {
            o["metadata"]["labels"]["kubernetes.io/service-name"] == s.as_str()
        })
        .0
}

/// The endpoint of pod `name` in the Service's slices.
fn endpoint(store: &Store, svc: &str, name: &str) -> Option<Value> {
    endpoint_anywhere(store, svc, name)
}

fn conditions(e: &Value) -> (bool, bool, bool) {
    let c = &e["conditions"];
    (
        c["ready"].as_bool().unwrap(),
        c["serving"].as_bool().unwrap(),
        c["terminating"].as_bool().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_endpoint_slices_of_their_pods() {
    let fake = plain_cluster().await;
    let port = fake.port();
    let store = fake.store();
    let r = admin(
        port,
        "POST",
        &format!("{NS}/services"),
        Some(json!({"metadata": {"name": "web", "labels": {"team": "a"}},
        "spec": {"selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": 80},
            {"name": "alt", "port": 8080, "targetPort": "alt", "protocol": "TCP"}]}})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let svc = r.json();
    // No pods yet: the placeholder slice, endpoints and ports null (`empty` on the kit).
    let s = within(5, "placeholder", || {
        slices(&store, "web").into_iter().next()
    })
    .await;
    assert!(s["endpoints"].is_null() && s["ports"].is_null(), "{s}");
    assert_eq!(s["addressType"], "IPv4");
    assert_eq!(s["metadata"]["generateName"], "web-");
    assert!(s["metadata"]["name"].as_str().unwrap().starts_with("web-"));
    assert_eq!(
        s["metadata"]["name"].as_str().unwrap().len(),
        "web-".len() + 5
    );
    let labels = &s["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/service-name"], "web");
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(labels["team"], "a", "the Service's labels are copied");
    let owner = &s["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["uid"].as_str()),
        (Some("Service"), svc["metadata"]["uid"].as_str())
    );
    assert_eq!(owner["controller"], true);

    let pod = |name: &str, extra: Value| {
        let mut p = json!({"metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"terminationGracePeriodSeconds": 5, "containers": [{"name": "c", "image": "ghcr.io/example/py-serv:1.0",
                "ports": [{"name": "alt", "containerPort": 8081}]}]}});
        if let Some(m) = extra.as_object() {
            for (k, v) in m {
                p["spec"][k] = v.clone();
            }
        }
        p
    };
    for (n, extra) in [
        ("web-a", json!({})),
        (
            "web-b",
            json!({"readinessGates": [{"conditionType": "example.com/ready"}]}),
        ),
        (
            "web-c",
            json!({"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}),
        ),
    ] {
        assert_eq!(
            admin(port, "POST", &format!("{NS}/pods"), Some(pod(n, extra)))
                .await
                .status,
            201
        );
    }
    let a = within(5, "web-a ready", || {
        endpoint(&store, "web", "web-a").filter(|e| e["conditions"]["ready"] == true)
    })
    .await;
    let p = admin(port, "GET", &format!("{NS}/pods/web-a"), None)
        .await
        .json();
    assert_eq!(a["addresses"], json!([p["status"]["podIP"]]));
    assert_eq!(a["nodeName"], "fake-node");
    assert_eq!(
        a["targetRef"],
        json!({"kind": "Pod", "name": "web-a", "namespace": "default", "uid": p["metadata"]["uid"]})
    );
    // The readiness gate nobody sets: ready false, serving false (web-b on the kit).
    let b = within(5, "web-b listed", || endpoint(&store, "web", "web-b")).await;
    assert_eq!(conditions(&b), (false, false, false));
    // web-c declares no port `alt`: in its own slice with only `http` (upstream FindPort).
    let c_slice = within(5, "web-c's slice", || {
        slices(&store, "web").into_iter().find(|s| {
            s["endpoints"]
                .as_array()
                .is_some_and(|es| es.iter().any(|e| e["targetRef"]["name"] == "web-c"))
        })
    })
    .await;
    assert_eq!(
        c_slice["ports"],
        json!([{"name": "http", "port": 80, "protocol": "TCP"}])
    );
    let ab = slices(&store, "web")
        .into_iter()
        .find(|s| s["metadata"]["name"] != c_slice["metadata"]["name"])
        .unwrap();
    assert_eq!(
        ab["ports"],
        json!([{"name": "alt", "port": 8081, "protocol": "TCP"}, {"name": "http", "port": 80, "protocol": "TCP"}])
    );
    // Deleted: py-serv exits on SIGTERM at once, so it soon leaves (web-a on the kit: ready
    // false, serving true, terminating true, then gone once Succeeded).
    assert_eq!(
        admin(port, "DELETE", &format!("{NS}/pods/web-a"), None)
            .await
            .status,
        200
    );
    within(5, "web-a gone from the slice", || {
        endpoint(&store, "web", "web-a").is_none().then_some(())
    })
    .await;
    // sleep ignores SIGTERM: terminating for its grace period (web-c on the kit)
    assert_eq!(
        admin(port, "DELETE", &format!("{NS}/pods/web-c"), None)
            .await
            .status,
        200
    );
    let c = within(5, "web-c terminating", || {
        endpoint_anywhere(&store, "web", "web-c").filter(|e| e["conditions"]["terminating"] == true)
    })
    .await;
    assert_eq!(conditions(&c), (false, true, true));
}

fn endpoint_anywhere(store: &Store, svc: &str, name: &str) -> Option<Value> {
    slices(store, svc).into_iter().find_map(|s| {
        s["endpoints"]
            .as_array()?
            .iter()
            .find(|e| e["targetRef"]["name"] == name)
            .cloned()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_services_and_discovery() {
    let fake = plain_cluster().await;
    let port = fake.port();
    let store = fake.store();
    let r = admin(port, "POST", &format!("{NS}/services"), Some(json!({"metadata": {"name": "hl"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"name": "x", "port": 82, "appProtocol": "http"}]}}))).await;
    assert_eq!(r.status, 201);
    let s = within(5, "slice", || slices(&store, "hl").into_iter().next()).await;
    assert_eq!(
        s["metadata"]["labels"]["service.kubernetes.io/headless"],
        ""
    );
    // served: list, get, discovery
    let list = admin(
        port,
        "GET",
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
        None,
    )
    .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["kind"], "EndpointSliceList");
    let name = s["metadata"]["name"].as_str().unwrap();
    let one = admin(
        port,
        "GET",
        &format!("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/{name}"),
        None,
    )
    .await;
    assert_eq!(one.json()["kind"], "EndpointSlice");
    let d = admin(port, "GET", "/apis/discovery.k8s.io/v1", None)
        .await
        .json();
    assert!(
        d["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "endpointslices"),
        "{d}"
    );
    // A Service without a selector gets none; the switch turns the controller off.
    let r = admin(
        port,
        "POST",
        &format!("{NS}/services"),
        Some(json!({"metadata": {"name": "manual"},
        "spec": {"ports": [{"port": 80}]}})),
    )
    .await;
    assert_eq!(r.status, 201);
    fake.controllers().set("endpointslice", false);
    let r = admin(
        port,
        "POST",
        &format!("{NS}/services"),
        Some(json!({"metadata": {"name": "off"},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}})),
    )
    .await;
    assert_eq!(r.status, 201);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(slices(&store, "manual").is_empty());
    assert!(slices(&store, "off").is_empty());
    // Deleting the Service takes its slices (garbage collector, ownerReference).
    assert_eq!(
        admin(port, "DELETE", &format!("{NS}/services/hl"), None)
            .await
            .status,
        200
    );
    within(5, "slice collected", || {
        slices(&store, "hl").is_empty().then_some(())
    })
    .await;
}
