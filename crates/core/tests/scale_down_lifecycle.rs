//! Scale-down through the core API, step by step: the full cycle for every kind, a crash
//! (everything dropped) after each step of create followed by gc, two crashes in a row, the
//! lock lost with its session, someone scaling meanwhile, the workload recreated, autoscalers.
//!
//! Against the fake API server by default; against a real cluster when
//! `MIRRORD_COPY_TEST_KUBECONFIG` names its kubeconfig (`TestEnv` reads it at run time; build.rs
//! then sets `cfg(real_cluster)`, which marks the tests needing the fake as ignored).

mod common;

use std::time::Duration;

use fakekube::harness::TestEnv;
use mirrord_copy_core::gc::gc;
use mirrord_copy_core::labels::{ORIGINAL_REPLICAS_ANNOTATION, SCALED_DOWN_BY_ANNOTATION};
use mirrord_copy_core::scale_down::{self, ScaleDownPlan, ScaleKind, KEDA_PAUSED_BY_ANNOTATION};
use mirrord_copy_core::Progress;

use common::scale_down::*;

#[tokio::test]
async fn full_cycle_for_every_kind() {
    let env = TestEnv::new().await;
    let cases = [
        (
            ScaleKind::Deployment,
            deployment("web", 3),
            "deployment/web",
            "web",
            3,
        ),
        (
            ScaleKind::StatefulSet,
            statefulset("db", 2),
            "statefulset/db",
            "db",
            2,
        ),
        (
            ScaleKind::ReplicaSet,
            replicaset("bare", 4),
            "replicaset/bare",
            "bare",
            4,
        ),
        (
            ScaleKind::CronJob,
            cronjob("nightly"),
            "cronjob/nightly",
            "nightly",
            1,
        ),
        (
            ScaleKind::Rollout,
            rollout("checkout", 2),
            "rollout/checkout",
            "checkout",
            2,
        ),
    ];
    // Every kind is exercised: a cluster without Argo Rollouts fails here rather than passing
    // with the Rollout case untested.
    assert!(
        served(&env, "argoproj.io", "v1alpha1", "Rollout").await,
        "the cluster does not serve argoproj.io/v1alpha1 Rollout: install Argo Rollouts (or its \
         CRDs) or run against the fake API server"
    );
    for (i, (kind, yaml, target, name, n)) in cases.into_iter().enumerate() {
        env.apply_yaml(&yaml).await;
        let id = format!("cycle{i}");
        let events = Events::default();
        let plan = prepare_new(&env, &id, target, &events)
            .await
            .unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!(plan.original_replicas, n, "{target}");
        // Nothing is written on the workload before apply (the copy is not Ready yet).
        assert_eq!(replicas(&env, kind, name).await, i64::from(n), "{target}");
        assert_eq!(
            annotation(&env, kind, name, SCALED_DOWN_BY_ANNOTATION).await,
            None
        );
        apply(&env, &plan, &events).await;
        assert_eq!(replicas(&env, kind, name).await, 0, "{target} at zero");
        // The zero came with the way back.
        assert_eq!(
            annotation(&env, kind, name, ORIGINAL_REPLICAS_ANNOTATION)
                .await
                .as_deref(),
            Some(n.to_string().as_str())
        );
        assert_eq!(
            annotation(&env, kind, name, SCALED_DOWN_BY_ANNOTATION)
                .await
                .as_deref(),
            Some(id.as_str())
        );
        let record = parse_lock(&locks(&env).await[0]);
        assert_eq!(record.original_replicas, n);

        restore(&env, &id, &events).await;
        assert_eq!(
            replicas(&env, kind, name).await,
            i64::from(n),
            "{target} restored"
        );
        assert_eq!(
            annotation(&env, kind, name, SCALED_DOWN_BY_ANNOTATION).await,
            None
        );
        assert_eq!(
            annotation(&env, kind, name, ORIGINAL_REPLICAS_ANNOTATION).await,
            None
        );
        assert!(locks(&env).await.is_empty(), "{target}: lock released");
        assert!(events.all().contains(&Progress::Restored {
            workload: target.to_string(),
            to: n
        }));
        // Idempotent.
        restore(&env, &id, &events).await;
        assert_eq!(replicas(&env, kind, name).await, i64::from(n));
    }
}

/// The steps of `create --scale-down`; a crash after step N leaves exactly what steps 1..=N wrote.
const STEPS: [&str; 4] = [
    "session ConfigMap created",
    "lock acquired (nothing written on the workload)",
    "copy Ready (nothing more written)",
    "workload scaled to zero with its record",
];

async fn run_steps(env: &TestEnv, id: &str, name: &str, upto: usize) {
    let events = Events::default();
    let target = format!("deployment/{name}");
    // Expired from the start and a zero lease: as if the process died long ago.
    let handle = session(env, id, &target, true).await;
    if upto < 2 {
        return;
    }
    let plan = prepare(env, &handle, &target, Duration::ZERO, &events.sink())
        .await
        .unwrap();
    if upto < 4 {
        return;
    }
    apply(env, &plan, &events).await;
}

/// The Deployment `name` (`replicas`), then session `id` crashing after step `upto` of create.
async fn crashed_deployment(env: &TestEnv, name: &str, replicas: i32, id: &str, upto: usize) {
    env.apply_yaml(&deployment(name, replicas)).await;
    run_steps(env, id, name, upto).await;
}

#[tokio::test]
async fn crash_after_each_step_of_create_then_gc_restores_the_exact_count() {
    let env = TestEnv::new().await;
    for step in 1..=STEPS.len() {
        let name = format!("worker{step}");
        crashed_deployment(&env, &name, 3, &format!("crash{step}"), step).await;
        let_leases_expire().await;
        let report = gc_namespace(&env).await;
        assert!(report.skipped.is_empty(), "step {step}: {report:?}");
        assert_eq!(
            deployment_replicas(&env, &name).await,
            3,
            "after a crash once {}",
            STEPS[step - 1]
        );
        assert_eq!(scaled_down_by(&env, &name).await, None);
        assert!(locks(&env).await.is_empty(), "step {step}: {report:?}");
        assert!(sessions(&env).await.is_empty(), "step {step}: {report:?}");
        // gc again: nothing left to do.
        let again = gc_namespace(&env).await;
        assert!(
            again.ended_sessions.is_empty() && again.restored.is_empty(),
            "{again:?}"
        );
    }
}

#[tokio::test]
async fn crash_during_end_is_finished_by_gc() {
    let env = TestEnv::new().await;
    crashed_deployment(&env, "w", 3, "s1", 5).await;
    // end crashed after scaling back but before removing the annotation and the lock.
    scale_to(&env, ScaleKind::Deployment, "w", 3).await;
    let_leases_expire().await;
    gc_namespace(&env).await;
    assert_eq!(deployment_replicas(&env, "w").await, 3);
    assert_eq!(scaled_down_by(&env, "w").await, None);
    assert!(locks(&env).await.is_empty());
}

#[tokio::test]
async fn two_crashes_in_a_row_keep_the_original_count() {
    let env = TestEnv::new().await;
    crashed_deployment(&env, "q", 5, "first", 5).await;
    assert_eq!(deployment_replicas(&env, "q").await, 0);
    let_leases_expire().await;
    // The second session finds the workload at zero; it must carry 5 forward, not record 0.
    let events = Events::default();
    let handle = session(&env, "second", "deployment/q", true).await;
    let plan = prepare(
        &env,
        &handle,
        "deployment/q",
        Duration::ZERO,
        &events.sink(),
    )
    .await
    .unwrap();
    assert_eq!(plan.original_replicas, 5);
    assert!(events
        .warnings()
        .iter()
        .any(|w| w.contains("took over") && w.contains("first")));
    apply(&env, &plan, &events).await;
    let_leases_expire().await;
    // Both sessions are dead now; gc from "another machine".
    gc_namespace(&env).await;
    assert_eq!(deployment_replicas(&env, "q").await, 5);
    assert!(locks(&env).await.is_empty());
}

/// A dead session's lock taken over by a session of the other mode (replace-one after a
/// scale-down, and the reverse): the new holder sets its own count, and whether it dies
/// before its own write (the workload still where the dead one left it) or after, gc puts
/// the original back.
#[tokio::test]
async fn a_takeover_across_modes_restores_the_original() {
    use mirrord_copy_core::ScaleTo::{OneLess, Zero};
    let env = TestEnv::new().await;
    let cases = [
        (OneLess, Zero, false),
        (OneLess, Zero, true),
        (Zero, OneLess, false),
        (Zero, OneLess, true),
    ];
    for (i, (first, second, applied)) in cases.into_iter().enumerate() {
        let name = format!("cross{i}");
        let target = format!("deployment/{name}");
        env.apply_yaml(&deployment(&name, 3)).await;
        let events = Events::default();
        let dead = session(&env, &format!("{name}-dead"), &target, true).await;
        let plan = prepare_to(&env, &dead, &target, first, Duration::ZERO, &events.sink())
            .await
            .unwrap();
        apply(&env, &plan, &events).await;
        assert_eq!(
            deployment_replicas(&env, &name).await,
            first.count(3) as i64
        );
        let_leases_expire().await;

        let next = session(&env, &format!("{name}-next"), &target, true).await;
        let plan = prepare_to(&env, &next, &target, second, Duration::ZERO, &events.sink())
            .await
            .unwrap();
        assert_eq!(
            (plan.original_replicas, plan.target_replicas),
            (3, second.count(3)),
            "{first:?} then {second:?}"
        );
        let lock = parse_lock(&locks(&env).await[0]);
        assert_eq!(lock.target_replicas, second.count(3));
        assert_eq!(
            scaled_down_by(&env, &name).await.as_deref(),
            Some(next.id.as_str())
        );
        if applied {
            apply(&env, &plan, &events).await;
            assert_eq!(
                deployment_replicas(&env, &name).await,
                second.count(3) as i64
            );
        }
        let_leases_expire().await;
        gc_namespace(&env).await;
        assert_eq!(
            deployment_replicas(&env, &name).await,
            3,
            "{first:?} then {second:?}, applied: {applied}: {:?}",
            events.warnings()
        );
        assert_eq!(scaled_down_by(&env, &name).await, None);
        assert!(locks(&env).await.is_empty());
    }
}

#[tokio::test]
async fn configmaps_deleted_by_hand_still_restore() {
    let env = TestEnv::new().await;
    crashed_deployment(&env, "a", 2, "gone", 5).await;
    // `kubectl delete configmap -l app.kubernetes.io/managed-by=kubectl-mirrord-copy`: the
    // lock's finalizer keeps it (marked deleted) with the way back.
    for cm in locks(&env).await {
        delete_config_map(&env, &cm.metadata.name.unwrap()).await;
    }
    delete_sessions(&env).await;
    let marked = locks(&env).await;
    assert_eq!(marked.len(), 1);
    assert!(marked[0].metadata.deletion_timestamp.is_some());
    let report = gc_namespace(&env).await;
    assert_eq!(deployment_replicas(&env, "a").await, 2, "{report:?}");
    assert_eq!(scaled_down_by(&env, "a").await, None);
    assert!(
        mentions(&report.restored, "lock of dead session gone"),
        "{report:?}"
    );
    assert!(locks(&env).await.is_empty(), "released, then gone");
}

/// The Deployment `name` (`replicas`), scaled down by a new live session `id`.
async fn scaled_down_deployment(
    env: &TestEnv,
    name: &str,
    replicas: i32,
    id: &str,
    events: &Events,
) -> ScaleDownPlan {
    env.apply_yaml(&deployment(name, replicas)).await;
    scaled_down(env, id, &format!("deployment/{name}"), events).await
}

#[tokio::test]
async fn someone_scaling_meanwhile_keeps_their_count() {
    let env = TestEnv::new().await;
    let events = Events::default();
    scaled_down_deployment(&env, "m", 3, "s", &events).await;
    scale_to(&env, ScaleKind::Deployment, "m", 7).await;
    restore(&env, "s", &events).await;
    assert_eq!(deployment_replicas(&env, "m").await, 7);
    assert!(events.warned("scaled to 7"), "{:?}", events.warnings());
    assert!(locks(&env).await.is_empty());
}

#[tokio::test]
async fn workload_recreated_mid_session_is_left_alone() {
    let env = TestEnv::new().await;
    let events = Events::default();
    scaled_down_deployment(&env, "r", 3, "s", &events).await;
    api(&env, ScaleKind::Deployment)
        .delete("r", &Default::default())
        .await
        .unwrap();
    env.wait_until("deployment gone", Duration::from_secs(10), || async {
        object(&env, ScaleKind::Deployment, "r")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    env.apply_yaml(&deployment("r", 0)).await;
    restore(&env, "s", &events).await;
    // Another object: its 0 is its own, not ours to change.
    assert_eq!(deployment_replicas(&env, "r").await, 0);
    assert!(events.warned("recreated"), "{:?}", events.warnings());
    assert!(locks(&env).await.is_empty());

    // Deleted and not recreated: a warning, the lock released.
    scaled_down_deployment(&env, "d", 2, "s2", &events).await;
    api(&env, ScaleKind::Deployment)
        .delete("d", &Default::default())
        .await
        .unwrap();
    restore(&env, "s2", &events).await;
    assert!(events.warned("no longer exists"));
    assert!(locks(&env).await.is_empty());
}

#[tokio::test]
async fn hpa_warns_and_keda_is_paused_then_put_back() {
    let env = TestEnv::new().await;
    require_keda(&env).await;
    // KEDA scales the target to the paused count when the annotation is set: the paused count
    // equals the replicas, as on a cluster where the ScaledObject was paused at its current size.
    env.apply_yaml(&deployment("queue-worker", 3)).await;
    env.apply_yaml(
        r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: queue-worker
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: queue-worker}
  minReplicas: 1
  maxReplicas: 5
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: queue-worker
  annotations:
    autoscaling.keda.sh/paused-replicas: "3"
spec:
  scaleTargetRef: {name: queue-worker}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: queue-worker-unpaused
spec:
  scaleTargetRef: {kind: Deployment, name: queue-worker}
"#,
    )
    .await;
    let events = Events::default();
    let plan = prepare_new(&env, "k", "deployment/queue-worker", &events)
        .await
        .unwrap();
    assert_eq!(plan.hpas, vec!["queue-worker".to_string()]);
    assert!(events.warned("HorizontalPodAutoscaler queue-worker"));
    apply(&env, &plan, &events).await;
    for name in ["queue-worker", "queue-worker-unpaused"] {
        let a = scaled_object_annotations(&env, name).await;
        assert_eq!(a["autoscaling.keda.sh/paused-replicas"], "0", "{name}: {a}");
        assert_eq!(a[KEDA_PAUSED_BY_ANNOTATION], "k");
    }
    restore(&env, "k", &events).await;
    assert_eq!(deployment_replicas(&env, "queue-worker").await, 3);
    let a = scaled_object_annotations(&env, "queue-worker").await;
    assert_eq!(
        a["autoscaling.keda.sh/paused-replicas"], "3",
        "previous value back: {a}"
    );
    assert!(a[KEDA_PAUSED_BY_ANNOTATION].is_null());
    let a = scaled_object_annotations(&env, "queue-worker-unpaused").await;
    assert!(
        a.get("autoscaling.keda.sh/paused-replicas")
            .is_none_or(|v| v.is_null()),
        "{a}"
    );
}

/// The writes of `end`'s restore, in order; a failure injected at one of them leaves the state
/// a SIGKILL at that point would.
const END_WRITES: [(&str, &str, u64); 4] = [
    ("PUT", "/configmaps/mirrord-copy-lock-", 1),    // fence
    ("PATCH", "/deployments/", 1),                   // back to the count, our record off
    ("PUT", "/configmaps/mirrord-copy-lock-", 2),    // release: finalizer off
    ("DELETE", "/configmaps/mirrord-copy-lock-", 1), // release
];

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn crash_at_each_write_of_end_then_gc_restores_the_exact_count() {
    let env = TestEnv::new().await;
    let fake = env.fake().expect("fake API server"); // fault injection
    for (i, (method, path, nth)) in END_WRITES.into_iter().enumerate() {
        let name = format!("end{i}");
        crashed_deployment(&env, &name, 4, &format!("e{i}"), 5).await;
        assert_eq!(deployment_replicas(&env, &name).await, 0);
        fake.faults().fail_nth(method, path, nth, 500);
        let err = scale_down::restore(
            &env.client,
            &env.namespace,
            &format!("e{i}"),
            &Events::default().sink(),
        )
        .await;
        fake.faults().clear();
        assert!(err.is_err(), "the fault at {method} {path} #{nth} was hit");
        let_leases_expire().await;
        let report = gc_namespace(&env).await;
        assert!(report.skipped.is_empty(), "{method} {path}: {report:?}");
        assert_eq!(deployment_replicas(&env, &name).await, 4, "{method} {path}");
        assert_eq!(scaled_down_by(&env, &name).await, None);
        assert!(locks(&env).await.is_empty(), "{method} {path}");
    }
}

#[tokio::test]
async fn many_gc_at_once_restore_exactly_once() {
    let env = TestEnv::new().await;
    for i in 0..3 {
        let name = format!("g{i}");
        crashed_deployment(&env, &name, i + 2, &format!("dead{i}"), 5).await;
    }
    let_leases_expire().await;
    let runs = futures::future::join_all((0..6).map(|_| {
        let env = &env;
        async move { gc(&env.client, Some(&env.namespace), &Events::default().sink()).await }
    }))
    .await;
    for r in &runs {
        let report = r
            .as_ref()
            .expect("gc never fails because another gc raced it");
        assert!(report.skipped.is_empty(), "{report:?}");
    }
    let ended: usize = runs
        .iter()
        .map(|r| r.as_ref().unwrap().ended_sessions.len())
        .sum();
    assert!(ended >= 3, "every session ended by someone");
    for i in 0..3 {
        assert_eq!(
            deployment_replicas(&env, &format!("g{i}")).await,
            i64::from(i + 2)
        );
    }
    assert!(locks(&env).await.is_empty());
    assert!(sessions(&env).await.is_empty());
}

#[tokio::test]
async fn restore_finds_the_workload_through_the_session_when_the_lock_is_gone() {
    let env = TestEnv::new().await;
    let events = Events::default();
    let plan = scaled_down_deployment(&env, "s", 3, "live", &events).await;
    delete_config_map(&env, &plan.lock_name).await;
    restore(&env, "live", &events).await;
    assert_eq!(deployment_replicas(&env, "s").await, 3);
    assert_eq!(scaled_down_by(&env, "s").await, None);
}

#[tokio::test]
async fn renew_extends_the_lease_until_the_lock_is_taken_over() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("h", 1)).await;
    let sink = Events::default().sink();
    let handle = session(&env, "beat", "deployment/h", false).await;
    let plan = prepare(&env, &handle, "deployment/h", Duration::ZERO, &sink)
        .await
        .unwrap();
    scale_down::renew(&env.client, &env.namespace, "beat", LONG)
        .await
        .unwrap();
    let (record, _) = mirrord_copy_lock::read(&env.client, &env.namespace, &plan.lock_name)
        .await
        .unwrap()
        .unwrap();
    assert!(record.lease_valid(chrono::Utc::now() + chrono::Duration::minutes(30)));
    // Renewed: a newcomer is refused.
    let other = session(&env, "other", "deployment/h", false).await;
    let err = prepare(&env, &other, "deployment/h", LONG, &sink)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 9);
    // Expired and taken over: renew tells the old holder.
    scale_down::renew(&env.client, &env.namespace, "beat", Duration::ZERO)
        .await
        .unwrap();
    let_leases_expire().await;
    prepare(&env, &other, "deployment/h", LONG, &sink)
        .await
        .unwrap();
    assert!(scale_down::renew(&env.client, &env.namespace, "beat", LONG)
        .await
        .is_err());
}

#[tokio::test]
async fn gc_restores_through_an_orphan_lock_when_the_session_is_gone() {
    let env = TestEnv::new().await;
    crashed_deployment(&env, "o", 6, "orphaned", 5).await;
    // The session ConfigMap is gone; the garbage collector deletes its lock (its
    // ownerReference), which its finalizer keeps.
    delete_sessions(&env).await;
    env.wait_until(
        "the lock marked deleted",
        Duration::from_secs(10),
        || async {
            locks(&env)
                .await
                .iter()
                .any(|l| l.metadata.deletion_timestamp.is_some())
                .then_some(())
        },
    )
    .await;
    let report = gc_namespace(&env).await;
    assert_eq!(deployment_replicas(&env, "o").await, 6, "{report:?}");
    assert!(
        mentions(&report.restored, "lock of dead session orphaned"),
        "{report:?}"
    );
    assert!(locks(&env).await.is_empty());
    assert_eq!(scaled_down_by(&env, "o").await, None);
}

#[tokio::test]
async fn keda_pause_of_a_dead_session_is_carried_forward_by_the_next() {
    let env = TestEnv::new().await;
    require_keda(&env).await;
    // Paused at its current size (KEDA would scale the target to a different paused count).
    env.apply_yaml(&deployment("kw", 3)).await;
    env.apply_yaml(
        r#"apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: kw
  annotations:
    autoscaling.keda.sh/paused-replicas: "3"
spec:
  scaleTargetRef: {name: kw}
"#,
    )
    .await;
    run_steps(&env, "first", "kw", 5).await;
    let_leases_expire().await;
    let events = Events::default();
    scaled_down(&env, "second", "deployment/kw", &events).await;
    restore(&env, "second", &events).await;
    let a = scaled_object_annotations(&env, "kw").await;
    assert_eq!(a["autoscaling.keda.sh/paused-replicas"], "3", "{a}");
    assert!(a[KEDA_PAUSED_BY_ANNOTATION].is_null(), "{a}");
    assert_eq!(deployment_replicas(&env, "kw").await, 3);
}

/// KEDA's ScaledObject must be served: a cluster without it fails the test with a clear
/// message rather than letting it pass untested.
async fn require_keda(env: &TestEnv) {
    assert!(
        served(env, "keda.sh", "v1alpha1", "ScaledObject").await,
        "the cluster does not serve keda.sh/v1alpha1 ScaledObject: install KEDA (or its CRDs) \
         or run against the fake API server"
    );
}

#[tokio::test]
async fn crash_after_each_step_then_a_new_session_takes_over_and_restores() {
    let env = TestEnv::new().await;
    for step in 1..=STEPS.len() {
        let name = format!("take{step}");
        crashed_deployment(&env, &name, 3, &format!("died{step}"), step).await;
        let_leases_expire().await;
        let target = format!("deployment/{name}");
        let events = Events::default();
        let next = format!("next{step}");
        let plan = prepare_new(&env, &next, &target, &events)
            .await
            .unwrap_or_else(|e| panic!("after {}: {e}", STEPS[step - 1]));
        assert_eq!(plan.original_replicas, 3, "after {}", STEPS[step - 1]);
        apply(&env, &plan, &events).await;
        assert_eq!(deployment_replicas(&env, &name).await, 0);
        restore(&env, &next, &events).await;
        assert_eq!(
            deployment_replicas(&env, &name).await,
            3,
            "after a crash once {}",
            STEPS[step - 1]
        );
        // The dead session's leftovers (its ConfigMap) go with gc, which must not touch the count.
        gc_namespace(&env).await;
        assert_eq!(deployment_replicas(&env, &name).await, 3);
        assert!(locks(&env).await.is_empty());
    }
}

/// The ClusterRole shipped for the gc CronJob is enough for everything gc does, across all
/// namespaces (`gc -A`).
#[tokio::test]
#[cfg_attr(
    real_cluster,
    ignore = "gc -A with every lease lapsed would end the sessions of tests running beside it"
)]
async fn gc_cronjob_clusterrole_suffices() {
    let env = TestEnv::new().await;
    let manifest = include_str!("../../../plugin-manifest/gc-cronjob.yaml");
    let cluster_role = manifest
        .split("\n---\n")
        .find(|doc| doc.contains("kind: ClusterRole\n"))
        .expect("the manifest has a ClusterRole");
    let gc_client = client_with_roles(&env, "mirrord-copy-gc", cluster_role).await;

    require_keda(&env).await;
    env.apply_yaml(&deployment("expired", 3)).await;
    env.apply_yaml(&scaled_object("expired")).await;
    run_steps(&env, "expired", "expired", 5).await;
    crashed_deployment(&env, "annotated", 2, "annotated", 5).await;
    for cm in locks(&env).await {
        if cm.data.as_ref().unwrap()["workloadName"] == "annotated" {
            delete_config_map(&env, &cm.metadata.name.unwrap()).await;
        }
    }
    delete_config_map(&env, "mirrord-copy-session-annotated").await;
    let_leases_expire().await;

    let report = gc(&gc_client, None, &Events::default().sink())
        .await
        .unwrap_or_else(|e| panic!("gc with the CronJob's ClusterRole: {e}"));
    assert!(report.skipped.is_empty(), "{report:?}");
    assert_eq!(deployment_replicas(&env, "expired").await, 3);
    assert_eq!(deployment_replicas(&env, "annotated").await, 2);
    assert!(locks(&env).await.is_empty());
    assert!(sessions(&env).await.is_empty());
    let a = scaled_object_annotations(&env, "expired").await;
    assert!(a[KEDA_PAUSED_BY_ANNOTATION].is_null(), "{a}");
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn keda_writes_retry_after_a_conflict() {
    let env = TestEnv::new().await;
    let fake = env.fake().expect("fake API server"); // conflict injection
    env.apply_yaml(&deployment("kc", 2)).await;
    env.apply_yaml(&scaled_object("kc")).await;
    let events = Events::default();
    let plan = prepare_new(&env, "kc", "deployment/kc", &events)
        .await
        .unwrap();
    let annotations = || scaled_object_annotations(&env, "kc");
    fake.faults().fail_nth("PATCH", "/scaledobjects/kc", 1, 409);
    apply(&env, &plan, &events).await;
    assert_eq!(annotations().await[KEDA_PAUSED_BY_ANNOTATION], "kc");
    fake.faults().fail_nth("PATCH", "/scaledobjects/kc", 1, 409);
    restore(&env, "kc", &events).await;
    fake.faults().clear();
    assert!(annotations().await[KEDA_PAUSED_BY_ANNOTATION].is_null());
    assert_eq!(deployment_replicas(&env, "kc").await, 2);
}

/// Merge-patch the annotations of the Deployment `name` (a `null` removes one).
async fn annotate(env: &TestEnv, name: &str, annotations: serde_json::Value) {
    api(env, ScaleKind::Deployment)
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"metadata": {"annotations": annotations}})),
        )
        .await
        .unwrap();
}

/// The workload's record of the way back edited by hand (our `scaled-down-by`
/// stripped, `original-replicas` changed): gc restores the lock's count, through the expired
/// session (the lock read, not fenced) and through an orphan lock (fenced), with a warning.
#[tokio::test]
async fn gc_restores_the_locks_count_whatever_the_workload_says() {
    let env = TestEnv::new().await;
    crashed_deployment(&env, "st", 3, "strip", 5).await;
    crashed_deployment(&env, "ed", 4, "edit", 5).await;
    crashed_deployment(&env, "os", 2, "orphanstrip", 5).await;
    crashed_deployment(&env, "oe", 5, "orphanedit", 5).await;
    for name in ["st", "os"] {
        annotate(
            &env,
            name,
            serde_json::json!({SCALED_DOWN_BY_ANNOTATION: null}),
        )
        .await;
    }
    for name in ["ed", "oe"] {
        annotate(
            &env,
            name,
            serde_json::json!({ORIGINAL_REPLICAS_ANNOTATION: "50"}),
        )
        .await;
    }
    for id in ["orphanstrip", "orphanedit"] {
        delete_config_map(
            &env,
            &mirrord_copy_core::labels::session_config_map_name(id),
        )
        .await;
    }
    let_leases_expire().await;
    let events = Events::default();
    let report = gc(&env.client, Some(&env.namespace), &events.sink())
        .await
        .unwrap();
    assert!(report.skipped.is_empty(), "{report:?}");
    for (name, n) in [("st", 3), ("ed", 4), ("os", 2), ("oe", 5)] {
        assert_eq!(
            deployment_replicas(&env, name).await,
            n,
            "{name}: {report:?}"
        );
        assert_eq!(scaled_down_by(&env, name).await, None, "{name}");
        assert_eq!(
            annotation(
                &env,
                ScaleKind::Deployment,
                name,
                ORIGINAL_REPLICAS_ANNOTATION
            )
            .await,
            None,
            "{name}"
        );
    }
    let warnings = events.warnings();
    assert_eq!(
        warnings
            .iter()
            .filter(|w| w.contains("carries no mirrord-copy.io/scaled-down-by"))
            .count(),
        2,
        "{warnings:#?}"
    );
    assert_eq!(
        warnings
            .iter()
            .filter(|w| w.contains("original-replicas=\"50\""))
            .count(),
        2,
        "{warnings:#?}"
    );
    assert!(locks(&env).await.is_empty());
    assert!(sessions(&env).await.is_empty());
}

/// Our lock, our workload never scaled (the create died before the zero): restore writes
/// nothing, whatever the lock says.
#[tokio::test]
async fn a_workload_never_scaled_is_not_touched_by_the_locks_count() {
    let env = TestEnv::new().await;
    crashed_deployment(&env, "n", 3, "never", 3).await;
    // Someone scaled it meanwhile, to a count that is not zero: theirs.
    scale_to(&env, ScaleKind::Deployment, "n", 1).await;
    let_leases_expire().await;
    let report = gc_namespace(&env).await;
    assert!(report.skipped.is_empty(), "{report:?}");
    assert_eq!(deployment_replicas(&env, "n").await, 1);
    assert!(locks(&env).await.is_empty());
}
