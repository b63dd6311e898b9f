//! The mutex and the refusals: concurrent sessions on one workload (through its Deployment and
//! its ReplicaSet), the guardrail, malformed lock records, pods and Jobs.

use std::collections::BTreeMap;
use std::time::Duration;

use fakekube::harness::TestEnv;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams, PostParams};
use mirrord_copy_core::gc::gc;
use mirrord_copy_core::labels::SCALED_DOWN_BY_ANNOTATION;
use mirrord_copy_core::scale_down::{self, ScaleKind};
use mirrord_copy_core::Error;
use mirrord_copy_lock::{LockRecord, WorkloadKey};
use serde_json::json;

use crate::scale_down_support::*;

/// A ReplicaSet controlled by Deployment `owner`: the Deployment controller's if it makes one
/// (a real cluster, or the fake with its controllers), else one made here.
pub async fn owned_replicaset(env: &TestEnv, owner: &str) -> String {
    let uid = object(env, ScaleKind::Deployment, owner).await.unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..30 {
        let sets = api(env, ScaleKind::ReplicaSet)
            .list(&Default::default())
            .await
            .unwrap();
        let made = sets.items.iter().find(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid && r.controller == Some(true))
        });
        if let Some(rs) = made {
            return rs.metadata.name.clone().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let name = format!("{owner}-5d8f7c9b4");
    let yaml = replicaset(&name, 3).replace(
        &format!("metadata:\n  name: {name}\n"),
        &format!(
            "metadata:\n  name: {name}\n  ownerReferences:\n    - {{apiVersion: apps/v1, kind: Deployment, name: {owner}, uid: {uid}, controller: true}}\n"
        ),
    );
    env.apply_yaml(&yaml).await;
    name
}

#[tokio::test]
async fn twenty_concurrent_sessions_one_winner() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("x", 3)).await;
    let rs = owned_replicaset(&env, "x").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let target = if i % 2 == 0 {
            "deployment/x".to_string()
        } else {
            format!("replicaset/{rs}")
        };
        let env = &env;
        tasks.push(async move {
            let id = format!("racer{i:02}");
            let resolved = resolved(env, &target).await;
            let sink = Events::default().sink();
            let result = match scale_down::check(&env.client, &resolved).await {
                Err(e) => Err(e),
                Ok(_) => {
                    let handle = session(env, &id, &target, false).await;
                    let r = scale_down::prepare(&env.client, &resolved, &handle, LONG, &sink).await;
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
    // Nothing left behind by the losers; the winner's lock and annotation are intact.
    assert_eq!(
        sessions(&env).await,
        vec![format!("mirrord-copy-session-{winner}")]
    );
    let locks = locks(&env).await;
    assert_eq!(locks.len(), 1);
    let record = LockRecord::parse(locks[0].data.as_ref().unwrap()).unwrap();
    assert_eq!(&record.holder_session, winner);
    assert_eq!(record.original_replicas, 3);
    assert_eq!(
        annotation(&env, ScaleKind::Deployment, "x", SCALED_DOWN_BY_ANNOTATION)
            .await
            .as_deref(),
        Some(winner.as_str())
    );
    assert_eq!(replicas(&env, ScaleKind::Deployment, "x").await, 3);
}

#[tokio::test]
async fn a_live_holder_is_named_and_left_untouched() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("x", 2)).await;
    let rs = owned_replicaset(&env, "x").await;
    let sink = Events::default().sink();
    let h1 = session(&env, "holder", "deployment/x", false).await;
    let plan = prepare(&env, &h1, "deployment/x", LONG, &sink)
        .await
        .unwrap();
    scale_down::apply(&env.client, &plan, &sink).await.unwrap();
    let before = locks(&env).await[0].metadata.resource_version.clone();
    let h2 = session(&env, "late", &format!("replicaset/{rs}"), false).await;
    let err = prepare(&env, &h2, &format!("replicaset/{rs}"), LONG, &sink)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 9);
    assert!(
        err.to_string()
            .contains("session holder (holder@test-host)"),
        "{err}"
    );
    assert_eq!(locks(&env).await[0].metadata.resource_version, before);
    assert_eq!(replicas(&env, ScaleKind::Deployment, "x").await, 0);
    // gc leaves a live session alone.
    let report = gc(&env.client, Some(&env.namespace), &sink).await.unwrap();
    assert!(
        report.restored.is_empty() && report.ended_sessions.is_empty(),
        "{report:?}"
    );
    assert_eq!(replicas(&env, ScaleKind::Deployment, "x").await, 0);
}

#[tokio::test]
async fn guardrail_on_workload_and_namespace() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("guarded", 2).replace(
        "metadata:\n  name: guarded\n",
        "metadata:\n  name: guarded\n  annotations:\n    mirrord-copy.io/scale-down: forbidden\n    mirrord-copy.io/scale-down-guardrail-by: team-payments\n",
    ))
    .await;
    let err = scale_down::check(&env.client, &resolved(&env, "deployment/guarded").await)
        .await
        .unwrap_err();
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
        .patch(
            &rs,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"mirrord-copy.io/scale-down": "forbidden"}}}),
            ),
        )
        .await
        .unwrap();
    let err = scale_down::check(
        &env.client,
        &resolved(&env, &format!("replicaset/{rs}")).await,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Guardrail { location, .. } if location.starts_with("ReplicaSet")),
        "{err}"
    );
    scale_down::check(&env.client, &resolved(&env, "deployment/owner").await)
        .await
        .unwrap();

    env.apply_yaml(&deployment("free", 2)).await;
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    namespaces
        .patch(
            &env.namespace,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"mirrord-copy.io/scale-down": "forbidden"}}}),
            ),
        )
        .await
        .unwrap();
    let err = scale_down::check(&env.client, &resolved(&env, "deployment/free").await)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Guardrail { location, .. } if *location == format!("Namespace {}", env.namespace)),
        "{err}"
    );
    // prepare refuses as well, before touching anything.
    let handle = session(&env, "g", "deployment/free", false).await;
    let err = prepare(
        &env,
        &handle,
        "deployment/free",
        LONG,
        &Events::default().sink(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 10);
    assert!(locks(&env).await.is_empty());
    assert_eq!(
        annotation(
            &env,
            ScaleKind::Deployment,
            "free",
            SCALED_DOWN_BY_ANNOTATION
        )
        .await,
        None
    );
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
        copy_pod: "p".into(),
        scaled_down: true,
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
    let handle = session(&env, "new", "deployment/x", false).await;
    let err = prepare(
        &env,
        &handle,
        "deployment/x",
        LONG,
        &Events::default().sink(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::CorruptRecord(_)), "{err}");
    assert!(err.to_string().contains("originalReplicas"), "{err}");
    let report = gc(&env.client, Some(&env.namespace), &Events::default().sink())
        .await
        .unwrap();
    assert!(
        report.skipped.iter().any(|s| s.contains(&name)),
        "{report:?}"
    );
    // Untouched: still there, still malformed, the workload still at 0.
    let still = config_maps(&env).get(&name).await.unwrap();
    assert_eq!(still.data.unwrap()["originalReplicas"], "-4");
    assert_eq!(replicas(&env, ScaleKind::Deployment, "x").await, 0);
}

#[tokio::test]
async fn pods_and_jobs_are_refused_with_the_reason() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("web", 1)).await;
    let rs = owned_replicaset(&env, "web").await;
    let rs_uid = object(&env, ScaleKind::ReplicaSet, &rs).await.unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    env.apply_yaml(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web-pod
  labels: {{app: web}}
  ownerReferences:
    - {{apiVersion: apps/v1, kind: ReplicaSet, name: {rs}, uid: {rs_uid}, controller: true}}
spec:
  containers: [{{name: app, image: busybox}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: bare
spec:
  containers: [{{name: app, image: busybox}}]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: m, image: busybox}}]
"#
    ))
    .await;
    let err = scale_down::check(&env.client, &resolved(&env, "pod/web-pod").await)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 4);
    assert!(err.to_string().contains("deployment/web"), "{err}");
    let err = scale_down::check(&env.client, &resolved(&env, "pod/bare").await)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bare pod"), "{err}");
    let err = scale_down::check(&env.client, &resolved(&env, "job/migrate").await)
        .await
        .unwrap_err();
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
    env.apply_yaml(&deployment("bad", 0).replace(
        "metadata:\n  name: bad\n",
        "metadata:\n  name: bad\n  annotations:\n    mirrord-copy.io/original-replicas: \"99999999\"\n    mirrord-copy.io/scaled-down-by: gone\n",
    ))
    .await;
    let handle = session(&env, "new", "deployment/bad", false).await;
    let err = prepare(
        &env,
        &handle,
        "deployment/bad",
        LONG,
        &Events::default().sink(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::CorruptRecord(_)), "{err}");
    assert!(locks(&env).await.is_empty());
    config_maps(&env)
        .delete(&handle.config_map, &Default::default())
        .await
        .unwrap();
    let report = gc(&env.client, Some(&env.namespace), &Events::default().sink())
        .await
        .unwrap();
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.contains("original-replicas")),
        "{report:?}"
    );
    assert_eq!(replicas(&env, ScaleKind::Deployment, "bad").await, 0);
    assert_eq!(
        annotation(
            &env,
            ScaleKind::Deployment,
            "bad",
            SCALED_DOWN_BY_ANNOTATION
        )
        .await
        .as_deref(),
        Some("gone")
    );
}
