//! The mutex and the refusals: concurrent sessions on one workload (through its Deployment and
//! its ReplicaSet), the guardrail, malformed lock records, pods and Jobs.
//!
//! Against the fake API server by default; against a real cluster when
//! `MIRRORD_COPY_TEST_KUBECONFIG` names its kubeconfig (`TestEnv` reads it at run time; build.rs
//! then sets `cfg(real_cluster)`, which marks the tests needing the fake as ignored).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use fakekube::harness::TestEnv;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams, PostParams};
use mirrord_copy_core::labels;
use mirrord_copy_core::scale_down::{self, ScaleKind};
use mirrord_copy_core::{Error, ScaleTo};
use mirrord_copy_lock::{LockRecord, WorkloadKey};
use serde_json::{json, Value};

use common::scale_down::*;

/// The error `scale_down::check` refuses `target` with.
async fn refused_check(env: &TestEnv, target: &str) -> Error {
    scale_down::check(&env.client, &resolved(env, target).await, ScaleTo::Zero)
        .await
        .unwrap_err()
}

/// A merge patch annotating an object `mirrord-copy.io/scale-down: forbidden`.
fn forbid_scale_down() -> Patch<Value> {
    Patch::Merge(json!({"metadata": {"annotations": {"mirrord-copy.io/scale-down": "forbidden"}}}))
}

#[tokio::test]
async fn twenty_concurrent_sessions_one_winner() {
    let env = TestEnv::new().await;
    let rs = deployment_x_and_replicaset(&env, 3).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let target = racer_target(i, &rs);
        let env = &env;
        tasks.push(async move {
            let id = format!("racer{i:02}");
            let resolved = resolved(env, &target).await;
            let sink = Events::default().sink();
            let result = match scale_down::check(&env.client, &resolved, ScaleTo::Zero).await {
                Err(e) => Err(e),
                Ok(_) => {
                    let handle = session(env, &id, &target, false).await;
                    let r = prepare(env, &handle, &target, LONG, &sink).await;
                    if r.is_err() {
                        // What create does on failure: end the session it made.
                        let events = Events::default();
                        mirrord_copy_core::session::end(
                            &env.client,
                            &env.namespace,
                            &id,
                            &events.sink(),
                        )
                        .await
                        .unwrap();
                        assert!(events.warnings().is_empty(), "{:?}", events.warnings());
                    }
                    r
                }
            };
            (id, result)
        });
    }
    let results = futures::future::join_all(tasks).await;
    let winners: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one winner");
    let winner = &winners[0].0;
    for (id, r) in &results {
        if let Err(e) = r {
            assert_eq!(e.exit_code(), 9, "{id}: {e}");
            let text = e.to_string();
            assert!(
                text.contains(winner) && text.contains("test-host"),
                "{text}"
            );
        }
    }
    // Nothing left behind by the losers; the winner's lock is intact, and nothing is written
    // on the workload before its copy is Ready.
    assert_eq!(
        sessions(&env).await,
        vec![format!("mirrord-copy-session-{winner}")]
    );
    let locks = locks(&env).await;
    assert_eq!(locks.len(), 1);
    let record = parse_lock(&locks[0]);
    assert_eq!(&record.holder_session, winner);
    assert_eq!(record.original_replicas, 3);
    assert_eq!(scaled_down_by(&env, "x").await, None);
    assert_eq!(deployment_replicas(&env, "x").await, 3);
}

#[tokio::test]
async fn a_live_holder_is_named_and_left_untouched() {
    let env = TestEnv::new().await;
    let rs = deployment_x_and_replicaset(&env, 2).await;
    let events = Events::default();
    let plan = prepare_new(&env, "holder", "deployment/x", &events)
        .await
        .unwrap();
    apply(&env, &plan, &events).await;
    let before = locks(&env).await[0].metadata.resource_version.clone();
    let err = prepare_new(&env, "late", &format!("replicaset/{rs}"), &events)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 9);
    assert!(
        err.to_string()
            .contains("session holder (holder@test-host)"),
        "{err}"
    );
    assert_eq!(locks(&env).await[0].metadata.resource_version, before);
    assert_eq!(deployment_replicas(&env, "x").await, 0);
    // gc leaves a live session alone.
    let report = gc_namespace(&env).await;
    assert!(
        report.restored.is_empty() && report.ended_sessions.is_empty(),
        "{report:?}"
    );
    assert_eq!(deployment_replicas(&env, "x").await, 0);
}

#[tokio::test]
async fn guardrail_on_workload_and_namespace() {
    let env = TestEnv::new().await;
    env.apply_yaml(&annotated_deployment(
        "guarded",
        2,
        &[
            ("mirrord-copy.io/scale-down", "forbidden"),
            ("mirrord-copy.io/scale-down-guardrail-by", "team-payments"),
        ],
    ))
    .await;
    let err = refused_check(&env, "deployment/guarded").await;
    assert_eq!(err.exit_code(), 10);
    let text = err.to_string();
    assert!(
        text.contains("Deployment") && text.contains("team-payments"),
        "{text}"
    );

    // On the ReplicaSet named, while its Deployment (the one scaled) carries none.
    env.apply_yaml(&deployment("owner", 2)).await;
    let rs = owned_replicaset(&env, "owner").await;
    api(&env, ScaleKind::ReplicaSet)
        .patch(&rs, &PatchParams::default(), &forbid_scale_down())
        .await
        .unwrap();
    let err = refused_check(&env, &format!("replicaset/{rs}")).await;
    assert!(
        matches!(&err, Error::Guardrail { location, .. } if location.starts_with("ReplicaSet")),
        "{err}"
    );
    scale_down::check(
        &env.client,
        &resolved(&env, "deployment/owner").await,
        ScaleTo::Zero,
    )
    .await
    .unwrap();

    env.apply_yaml(&deployment("free", 2)).await;
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    namespaces
        .patch(
            &env.namespace,
            &PatchParams::default(),
            &forbid_scale_down(),
        )
        .await
        .unwrap();
    let err = refused_check(&env, "deployment/free").await;
    assert!(
        matches!(&err, Error::Guardrail { location, .. } if *location == format!("Namespace {}", env.namespace)),
        "{err}"
    );
    // prepare refuses as well, before touching anything.
    let err = prepare_new(&env, "g", "deployment/free", &Events::default())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 10);
    assert!(locks(&env).await.is_empty());
    assert_eq!(scaled_down_by(&env, "free").await, None);
}

#[tokio::test]
async fn malformed_lock_record_is_refused_and_never_acted_upon() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("x", 0)).await;
    let name = WorkloadKey::new("deployment", "x").lock_name();
    let mut data: BTreeMap<String, String> = LockRecord {
        holder_session: "dead".into(),
        holder: "who@where".into(),
        since: chrono::Utc::now() - chrono::Duration::hours(2),
        lease_expires: chrono::Utc::now() - chrono::Duration::hours(1),
        workload_uid: "u".into(),
        workload_kind: "Deployment".into(),
        workload_name: "x".into(),
        original_replicas: 1,
        target_replicas: 0,
        copy_pod: "p".into(),
        scaled_objects: Vec::new(),
        argo_application: None,
    }
    .to_data();
    data.insert("originalReplicas".into(), "-4".into());
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "app.kubernetes.io/managed-by": "kubectl-mirrord-copy",
            "mirrord-copy.io/session": "dead",
            "mirrord-copy.io/role": "lock"}},
        "data": data,
    }))
    .unwrap();
    config_maps(&env)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let err = prepare_new(&env, "new", "deployment/x", &Events::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CorruptRecord(_)), "{err}");
    assert!(err.to_string().contains("originalReplicas"), "{err}");
    let report = gc_namespace(&env).await;
    assert!(mentions(&report.skipped, &name), "{report:?}");
    // Untouched: still there, still malformed, the workload still at 0.
    let still = config_maps(&env).get(&name).await.unwrap();
    assert_eq!(still.data.unwrap()["originalReplicas"], "-4");
    assert_eq!(deployment_replicas(&env, "x").await, 0);
}

#[tokio::test]
async fn pods_and_jobs_are_refused_with_the_reason() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("web", 1)).await;
    let rs = owned_replicaset(&env, "web").await;
    // One of the ReplicaSet's own pods (a pod made up with an ownerReference alone would be
    // released by a real ReplicaSet controller: its labels lack pod-template-hash).
    let web_pod = env
        .wait_until(
            "a pod of the ReplicaSet",
            Duration::from_secs(60),
            || async {
                env.list_pods("app=web").await.into_iter().find_map(|p| {
                    let owned = p["metadata"]["ownerReferences"][0]["name"] == rs.as_str();
                    owned.then(|| p["metadata"]["name"].as_str().unwrap().to_string())
                })
            },
        )
        .await;
    env.apply_yaml(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: bare
spec:
  containers: [{name: app, image: busybox}]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: m, image: busybox}]
"#,
    )
    .await;
    let err = refused_check(&env, &format!("pod/{web_pod}")).await;
    assert_eq!(err.exit_code(), 4);
    assert!(err.to_string().contains("deployment/web"), "{err}");
    let err = refused_check(&env, "pod/bare").await;
    assert!(err.to_string().contains("bare pod"), "{err}");
    let err = refused_check(&env, "job/migrate").await;
    assert_eq!(err.exit_code(), 4);
    assert!(
        err.to_string().contains("runs its pods to completion"),
        "{err}"
    );
    assert!(locks(&env).await.is_empty());
}

#[tokio::test]
async fn malformed_annotation_is_refused_and_never_acted_upon() {
    let env = TestEnv::new().await;
    env.apply_yaml(&annotated_deployment(
        "bad",
        0,
        &[
            ("mirrord-copy.io/original-replicas", "\"99999999\""),
            ("mirrord-copy.io/scaled-down-by", "gone"),
        ],
    ))
    .await;
    let err = prepare_new(&env, "new", "deployment/bad", &Events::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CorruptRecord(_)), "{err}");
    assert!(locks(&env).await.is_empty());
    delete_config_map(&env, &labels::session_config_map_name("new")).await;
    // gc finds a dead session by its lock: an annotation without one (a lock whose finalizer
    // was removed by hand) is not looked for, and never acted upon.
    gc_namespace(&env).await;
    assert_eq!(deployment_replicas(&env, "bad").await, 0);
    assert_eq!(scaled_down_by(&env, "bad").await.as_deref(), Some("gone"));
}

/// A stale session never writes over the one that took the workload from it: its scale to
/// zero is fenced on the workload still naming it (`scaled-down-by`), pinned to the
/// resourceVersion at which that was read.
#[tokio::test]
async fn a_stale_session_cannot_scale_down_what_another_session_took_over() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("fenced", 3)).await;
    let events = Events::default();
    let stale = prepare_new(&env, "stalesessn", "deployment/fenced", &events)
        .await
        .unwrap();
    // Another session took the workload over (as after the stale one's lease ran out).
    api(&env, ScaleKind::Deployment)
        .patch(
            "fenced",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                labels::SCALED_DOWN_BY_ANNOTATION: "newholder1"
            }}})),
        )
        .await
        .unwrap();
    let err = scale_down::apply(&env.client, &stale, &events.sink())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 11, "{err}");
    assert!(
        err.to_string()
            .contains("now scaled down by session newholder1"),
        "{err}"
    );
    assert_eq!(deployment_replicas(&env, "fenced").await, 3);
    assert_eq!(
        scaled_down_by(&env, "fenced").await.as_deref(),
        Some("newholder1"),
        "the new holder's record is untouched"
    );
}
