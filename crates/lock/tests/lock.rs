//! The lock against the API server: create-or-conflict, takeover of an expired lease by
//! compare-and-swap carrying the count forward, uid checks, renew and release preconditions.
//!
//! Against the fake API server by default; against a real cluster when
//! `MIRRORD_COPY_TEST_KUBECONFIG` names its kubeconfig (`TestEnv` reads it), as the plugin's
//! e2e tests do. Every test here runs on both.

use chrono::{Duration, Utc};
use fakekube::harness::TestEnv;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, PostParams};
use kube::ResourceExt;
use mirrord_copy_lock::{self as lock, LockError, LockGuard, LockRecord, Released, WorkloadKey};

/// A lock record of Deployment w for `session`: `uid`, `replicas`, a `lease` from now.
fn record(session: &str, uid: &str, replicas: i32, lease: Duration) -> LockRecord {
    let now = Utc::now();
    LockRecord {
        holder_session: session.into(),
        holder: format!("{session}@host"),
        since: now,
        lease_expires: now + lease,
        workload_uid: uid.into(),
        workload_kind: "Deployment".into(),
        workload_name: "w".into(),
        original_replicas: replicas,
        target_replicas: 0,
        copy_pod: format!("{session}-copy"),
        scaled_objects: Vec::new(),
        argo_application: None,
    }
}

/// A record of `session` with an hour's lease: a live holder.
fn live_record(session: &str, uid: &str, replicas: i32) -> LockRecord {
    record(session, uid, replicas, Duration::hours(1))
}

/// ConfigMaps in the test namespace.
fn config_maps(env: &TestEnv) -> Api<ConfigMap> {
    Api::namespaced(env.client.clone(), &env.namespace)
}

/// Let a lease written with zero length be strictly in the past.
async fn let_leases_expire() {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
}

/// An owner reference to a new ConfigMap standing for the live session `session_id` (as the
/// session ConfigMap owns its locks; this crate knows nothing of sessions).
async fn owner(env: &TestEnv, session_id: &str) -> OwnerReference {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(format!("mirrord-copy-session-{session_id}"));
    let created = config_maps(env)
        .create(&PostParams::default(), &cm)
        .await
        .expect("create the owner ConfigMap");
    OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: created.name_any(),
        uid: created.uid().unwrap(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// `lock::acquire` of Deployment w's lock with `record`, owned by `owner`.
async fn acquire(
    env: &TestEnv,
    record: LockRecord,
    owner: OwnerReference,
) -> Result<LockGuard, LockError> {
    let key = WorkloadKey::new("deployment", "w");
    lock::acquire(&env.client, &env.namespace, &key, record, owner).await
}

/// `acquire` for `session`'s record (`uid`, `replicas`, `lease`), owned by a new session of it.
async fn acquire_new(
    env: &TestEnv,
    session: &str,
    uid: &str,
    replicas: i32,
    lease: Duration,
) -> Result<LockGuard, LockError> {
    let record = record(session, uid, replicas, lease);
    acquire(env, record, owner(env, session).await).await
}

/// A lock of `session` (`uid`, `replicas`) whose lease has already run out.
async fn expired_lock(env: &TestEnv, session: &str, uid: &str, replicas: i32) {
    acquire_new(env, session, uid, replicas, Duration::zero())
        .await
        .unwrap();
    let_leases_expire().await;
}

#[tokio::test]
async fn takeover_carries_the_count_and_repoints_the_owner() {
    let env = TestEnv::new().await;
    let ns = &env.namespace;
    let c = &env.client;
    let dead = acquire_new(&env, "a", "uid-1", 5, Duration::zero())
        .await
        .unwrap();
    dead.update(c, |r| r.scaled_objects = vec!["w-keda".into()])
        .await
        .unwrap();
    let_leases_expire().await;
    // The new caller sees the workload at 0 (because of the dead session): it must not win.
    let b_owner = owner(&env, "b").await;
    let guard = acquire(&env, live_record("b", "uid-1", 0), b_owner.clone())
        .await
        .unwrap();
    assert_eq!(guard.record.original_replicas, 5);
    assert_eq!(
        guard.record.scaled_objects,
        ["w-keda"],
        "the dead holder may have paused it"
    );
    assert_eq!(guard.took_over_from.as_ref().unwrap().holder_session, "a");
    assert_eq!(
        guard.record.target_replicas, 0,
        "the new holder's own target"
    );
    let cm = config_maps(&env).get(&guard.name).await.unwrap();
    assert_eq!(cm.metadata.owner_references.unwrap(), vec![b_owner]);
    assert_eq!(cm.metadata.labels.unwrap()["mirrord-copy.io/session"], "b");

    // A valid lease is held: the third caller gets the holder's record, nothing written.
    let err = acquire_new(&env, "c", "uid-1", 9, Duration::hours(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LockError::Held(r) if r.holder_session == "b"),
        "{err}"
    );

    // The dead holder can neither renew nor release it any more.
    let err = dead
        .renew(c, Utc::now() + Duration::hours(1))
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Lost(_)), "{err}");
    assert!(matches!(
        lock::release(c, ns, &guard.name, "a").await.unwrap(),
        Released::HeldByOther(_)
    ));
    assert_eq!(
        lock::release(c, ns, &guard.name, "b").await.unwrap(),
        Released::Deleted
    );
    assert_eq!(
        lock::release(c, ns, &guard.name, "b").await.unwrap(),
        Released::Absent
    );
}

#[tokio::test]
async fn a_record_for_another_workload_uid_is_not_trusted() {
    let env = TestEnv::new().await;
    expired_lock(&env, "a", "old-uid", 5).await;
    let guard = acquire_new(&env, "b", "new-uid", 2, Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(guard.record.original_replicas, 2);
    assert_eq!(guard.record.workload_uid, "new-uid");
}

#[tokio::test]
async fn concurrent_takeovers_have_one_winner() {
    let env = TestEnv::new().await;
    expired_lock(&env, "dead", "u", 4).await;
    let mut owners = Vec::new();
    for i in 0..10 {
        owners.push(owner(&env, &format!("t{i}")).await);
    }
    let results = futures::future::join_all(owners.into_iter().enumerate().map(|(i, o)| {
        let env = &env;
        async move { acquire(env, live_record(&format!("t{i}"), "u", 0), o).await }
    }))
    .await;
    let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    assert_eq!(won[0].record.original_replicas, 4);
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, LockError::Held(_))));
}

#[tokio::test]
async fn same_session_reacquires_untouched_and_releases() {
    let env = TestEnv::new().await;
    let (c, ns) = (&env.client, &env.namespace);
    let a_owner = owner(&env, "a").await;
    let g = acquire(&env, live_record("a", "u", 1), a_owner.clone())
        .await
        .unwrap();
    // Same session re-acquiring (a retried call) gets its lock back, untouched.
    let again = acquire(&env, live_record("a", "u", 7), a_owner)
        .await
        .unwrap();
    assert_eq!(again.record.original_replicas, 1);
    let read = lock::read(c, ns, &g.name).await.unwrap().unwrap();
    assert_eq!(read.0.original_replicas, 1);
    assert_eq!(
        lock::release(c, ns, &g.name, "a").await.unwrap(),
        Released::Deleted
    );
    assert!(lock::read(c, ns, &g.name).await.unwrap().is_none());
}

#[tokio::test]
async fn a_deleted_lock_stays_until_its_holder_releases_it() {
    let env = TestEnv::new().await;
    let (c, ns) = (&env.client, &env.namespace);
    let a_owner = owner(&env, "a").await;
    let g = acquire(&env, live_record("a", "u", 3), a_owner)
        .await
        .unwrap();
    assert_eq!(
        g.config_map.metadata.finalizers.as_deref(),
        Some(&[lock::FINALIZER.to_string()][..])
    );
    // `kubectl delete configmap` (or the garbage collector, with its session): only marked.
    config_maps(&env)
        .delete(&g.name, &Default::default())
        .await
        .unwrap();
    let (record, meta) = lock::read(c, ns, &g.name).await.unwrap().unwrap();
    assert!(meta.deletion_timestamp.is_some());
    assert_eq!(
        record.original_replicas, 3,
        "the way back is still readable"
    );
    // Another session cannot release it; its holder can, and then it is gone.
    assert!(matches!(
        lock::release(c, ns, &g.name, "b").await.unwrap(),
        Released::HeldByOther(_)
    ));
    assert_eq!(
        lock::release(c, ns, &g.name, "a").await.unwrap(),
        Released::Deleted
    );
    assert!(lock::read(c, ns, &g.name).await.unwrap().is_none());
}

#[tokio::test]
async fn takeover_keeps_the_callers_target_within_the_carried_count() {
    let env = TestEnv::new().await;
    // The dead holder replaced one of 2 replicas.
    let dead = LockRecord {
        target_replicas: 1,
        ..record("a", "uid-1", 2, Duration::zero())
    };
    let a_owner = owner(&env, "a").await;
    acquire(&env, dead, a_owner).await.unwrap();
    let_leases_expire().await;
    // The new caller saw 5 and wants 4: the carried original is 2, so its target is clamped
    // to it (the caller reckons its target again from the carried count).
    let b_owner = owner(&env, "b").await;
    let wants = LockRecord {
        target_replicas: 4,
        ..live_record("b", "uid-1", 5)
    };
    let guard = acquire(&env, wants, b_owner).await.unwrap();
    assert_eq!(
        (guard.record.original_replicas, guard.record.target_replicas),
        (2, 2)
    );
    assert_eq!(guard.took_over_from.as_ref().unwrap().target_replicas, 1);
    let (read, _) = lock::read(&env.client, &env.namespace, &guard.name)
        .await
        .unwrap()
        .unwrap();
    // What was written reads back with both counts (times are stored to the second).
    assert_eq!((read.original_replicas, read.target_replicas), (2, 2));
    assert_eq!(read.holder_session, "b");
}
