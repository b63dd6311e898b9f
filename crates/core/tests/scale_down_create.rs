//! `session::create` with scale-down, as `create --scale-down` runs it: the mutex under 20
//! concurrent creates through the Deployment and its ReplicaSet, the order (scaled to zero
//! only once the copy is Ready), `end` restoring, `list` marking the scale-down session.
//!
//! Against the fake API server by default; against a real cluster when
//! `MIRRORD_COPY_TEST_KUBECONFIG` names its kubeconfig (`TestEnv` reads it at run time; build.rs
//! then sets `cfg(real_cluster)`, which marks the tests needing the fake as ignored).

mod common;

use fakekube::harness::TestEnv;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use mirrord_copy_core::labels::{self, Role};
use mirrord_copy_core::{session, Progress};

use common::scale_down::*;

/// Copy pods in the test namespace that are not being deleted.
async fn copy_pods(env: &TestEnv) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    pods.list(&ListParams::default().labels(&labels::role_selector(Role::Copy)))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.metadata.name.unwrap())
        .collect()
}

#[tokio::test]
async fn twenty_concurrent_creates_one_winner_then_end_restores() {
    let env = TestEnv::new().await;
    let rs = deployment_x_and_replicaset(&env, 3).await;
    let _kubelet = copy_kubelet(&env);
    let results = futures::future::join_all((0..20).map(|i| {
        let target = racer_target(i, &rs);
        let req = scale_down_request(&env, &target, &format!("user{i}@host{i}"));
        let env = &env;
        async move {
            let events = Events::default();
            let r = session::create(&env.client, &req, &events.sink()).await;
            (r, events)
        }
    }))
    .await;
    let winners: Vec<_> = results.iter().filter(|(r, _)| r.is_ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one create wins");
    let (won, events) = winners[0];
    let won = won.as_ref().unwrap();
    for (r, _) in &results {
        if let Err(e) = r {
            assert_eq!(e.exit_code(), 9, "{e}");
            assert!(e.to_string().contains(&won.id), "names the holder: {e}");
        }
    }
    // The winner scaled down only after its copy was Ready.
    let all = events.all();
    let ready = all.iter().position(|e| matches!(e, Progress::Ready { .. }));
    let scaled = all
        .iter()
        .position(|e| matches!(e, Progress::ScaledDown { from: 3, .. }));
    assert!(ready.is_some() && ready < scaled, "{all:?}");
    // Nothing left by the 19 losers; the winner intact.
    assert_eq!(copy_pods(&env).await, vec![won.copy_pod.clone()]);
    assert_eq!(
        sessions(&env).await,
        vec![labels::session_config_map_name(&won.id)]
    );
    assert_eq!(locks(&env).await.len(), 1);
    assert_eq!(deployment_replicas(&env, "x").await, 0);
    assert_eq!(
        scaled_down_by(&env, "x").await.as_deref(),
        Some(won.id.as_str())
    );
    // `status` marks it.
    let listed = session::list(&env.client, Some(&env.namespace))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].scale_down);

    let quiet = Events::default();
    session::end(&env.client, &env.namespace, &won.id, &quiet.sink())
        .await
        .unwrap();
    assert_eq!(deployment_replicas(&env, "x").await, 3);
    assert_eq!(scaled_down_by(&env, "x").await, None);
    assert!(locks(&env).await.is_empty());
    assert!(sessions(&env).await.is_empty());
    assert!(quiet.warnings().is_empty(), "{:?}", quiet.warnings());
}

#[tokio::test]
async fn a_refused_create_leaves_nothing() {
    let env = TestEnv::new().await;
    env.apply_yaml(&annotated_deployment(
        "g",
        2,
        &[("mirrord-copy.io/scale-down", "forbidden")],
    ))
    .await;
    let _kubelet = copy_kubelet(&env);
    let err = session::create(
        &env.client,
        &scale_down_request(&env, "deployment/g", "u@h"),
        &Events::default().sink(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 10);
    assert!(sessions(&env).await.is_empty());
    assert!(copy_pods(&env).await.is_empty());
    assert!(locks(&env).await.is_empty());
    assert_eq!(deployment_replicas(&env, "g").await, 2);
}

/// `create --scale-down` and `end` with a token bound only to the shipped Role and ClusterRole
/// (plugin-manifest/), on a workload with an HPA and a KEDA ScaledObject.
#[tokio::test]
async fn the_shipped_roles_suffice_for_scale_down() {
    let env = TestEnv::new().await;
    let rbac = format!(
        "{}\n---\n{}",
        include_str!("../../../plugin-manifest/role.yaml"),
        include_str!("../../../plugin-manifest/clusterrole.yaml")
    );
    let user = client_with_roles(&env, "mirrord-copy-user", &rbac).await;
    env.apply_yaml(&deployment("qw", 2)).await;
    env.apply_yaml(
        r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: qw
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: qw}
  maxReplicas: 4
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: qw
spec:
  scaleTargetRef: {name: qw}
"#,
    )
    .await;
    let _kubelet = copy_kubelet(&env);
    let events = Events::default();
    let s = session::create(
        &user,
        &scale_down_request(&env, "deployment/qw", "u@h"),
        &events.sink(),
    )
    .await
    .unwrap_or_else(|e| panic!("create --scale-down with the shipped Role: {e}"));
    assert_eq!(deployment_replicas(&env, "qw").await, 0);
    session::end(&user, &env.namespace, &s.id, &events.sink())
        .await
        .unwrap_or_else(|e| panic!("end with the shipped Role: {e}"));
    assert_eq!(deployment_replicas(&env, "qw").await, 2);
    assert!(locks(&env).await.is_empty());
}
