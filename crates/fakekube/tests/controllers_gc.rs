//! The simulated garbage collector, as owner-gc.json recorded a real one: Background,
//! Foreground, a dependent of an owner that never existed, and Orphan.

use std::sync::Arc;
use std::time::Duration;

use fakekube::store::{DeleteOptions, DeleteOutcome, Propagation, Store};
use fakekube::{FakeCluster, ServerOptions};
use serde_json::{json, Value};

fn create(store: &Store, plural: &str, obj: Value) -> Arc<Value> {
    let rt = store.resource("", plural).unwrap().clone();
    store.create(&rt, Some("default"), obj, false).unwrap()
}

fn exists(store: &Store, plural: &str, name: &str) -> Option<Arc<Value>> {
    let rt = store.resource("", plural).unwrap().clone();
    store.get(&rt, Some("default"), name).ok()
}

fn owner_ref(owner: &Value, controller: bool) -> Value {
    json!({"apiVersion": "v1", "kind": owner["kind"], "name": owner["metadata"]["name"],
           "uid": owner["metadata"]["uid"], "controller": controller, "blockOwnerDeletion": true})
}

async fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn delete(store: &Store, name: &str, propagation: Propagation) -> DeleteOutcome {
    let rt = store.resource("", "configmaps").unwrap().clone();
    let opts = DeleteOptions {
        propagation,
        ..Default::default()
    };
    store.delete(&rt, Some("default"), name, &opts).unwrap()
}

fn setup(store: &Store, owner: &str, controller: bool) -> Arc<Value> {
    let o = create(
        store,
        "configmaps",
        json!({"metadata": {"name": owner}, "data": {"k": "v"}}),
    );
    create(
        store,
        "configmaps",
        json!({"metadata": {"name": format!("dep-{owner}"),
        "ownerReferences": [owner_ref(&o, controller)]}, "data": {"k": "v"}}),
    );
    create(
        store,
        "pods",
        json!({"metadata": {"name": format!("pod-{owner}"),
        "ownerReferences": [owner_ref(&o, controller)]},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    );
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletes_dependents() {
    let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
    let store = fake.store();
    setup(&store, "bg", true);
    assert!(matches!(
        delete(&store, "bg", Propagation::Background),
        DeleteOutcome::Deleted(_)
    ));
    eventually("dependents gone", || {
        exists(&store, "configmaps", "dep-bg").is_none()
            && exists(&store, "pods", "pod-bg").is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_keeps_owner_until_dependents_are_gone() {
    let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
    let store = fake.store();
    setup(&store, "fg", true);
    // With the GC off the owner waits with its finalizer, as while a real GC works.
    fake.controllers().set("gc", false);
    let DeleteOutcome::Pending(owner) = delete(&store, "fg", Propagation::Foreground) else {
        panic!("foreground delete must keep the owner");
    };
    assert!(owner["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        owner["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(exists(&store, "configmaps", "fg").is_some());
    fake.controllers().set("gc", true);
    eventually("dependents and owner gone", || {
        exists(&store, "configmaps", "dep-fg").is_none()
            && exists(&store, "pods", "pod-fg").is_none()
            && exists(&store, "configmaps", "fg").is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependent_of_missing_owner_is_deleted() {
    let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
    let store = fake.store();
    create(
        &store,
        "configmaps",
        json!({"metadata": {"name": "orphan-dep", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "never", "uid": "00000000-0000-0000-0000-000000000000"}]}}),
    );
    eventually("orphan-dep gone", || {
        exists(&store, "configmaps", "orphan-dep").is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_strips_owner_references() {
    let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
    let store = fake.store();
    setup(&store, "or", false);
    assert!(matches!(
        delete(&store, "or", Propagation::Orphan),
        DeleteOutcome::Pending(_)
    ));
    eventually("owner gone", || {
        exists(&store, "configmaps", "or").is_none()
    })
    .await;
    let dep = exists(&store, "configmaps", "dep-or").expect("dependent survives");
    assert!(dep["metadata"]["ownerReferences"].is_null(), "{dep}");
    let pod = exists(&store, "pods", "pod-or").expect("pod survives");
    assert!(pod["metadata"]["ownerReferences"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_second_owner_keeps_the_dependent() {
    let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
    let store = fake.store();
    let a = create(&store, "configmaps", json!({"metadata": {"name": "a"}}));
    let b = create(&store, "configmaps", json!({"metadata": {"name": "b"}}));
    create(
        &store,
        "configmaps",
        json!({"metadata": {"name": "d", "ownerReferences": [owner_ref(&a, false), owner_ref(&b, false)]}}),
    );
    delete(&store, "a", Propagation::Background);
    eventually("dangling ref removed", || {
        exists(&store, "configmaps", "d")
            .is_some_and(|d| d["metadata"]["ownerReferences"].as_array().map(Vec::len) == Some(1))
    })
    .await;
    delete(&store, "b", Propagation::Background);
    eventually("d gone", || exists(&store, "configmaps", "d").is_none()).await;
}
