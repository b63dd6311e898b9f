//! Who may do what, and who is recorded: the shipped Role alone runs a whole scale-down
//! session, and sessions record the Kubernetes user (SelfSubjectReview, as `kubectl auth
//! whoami`) with this machine's `user@host` beside it.

use fakekube::harness::TestEnv;
use serde_json::Value;

use crate::plugin_support::*;

/// `plugin-manifest/role.yaml` bound by a RoleBinding, and nothing else (no ClusterRole):
/// create --scale-down (the guardrail reads the Namespace), status, delete.
#[tokio::test]
async fn the_shipped_role_alone_runs_a_scale_down_session_recorded_as_its_user() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("api", 2)).await;
    let sa = "mirrord-copy-user";
    let kc = env
        .kubeconfig_with_roles(sa, include_str!("../../plugin-manifest/role.yaml"))
        .await;
    let as_sa = |c: &mut tokio::process::Command| {
        c.env("KUBECONFIG", &kc);
    };
    let run = mc_with(
        &env,
        &["create", "deployment/api", "--scale-down", "-o", "json"],
        as_sa,
    )
    .await;
    let doc: Value = serde_json::from_str(run.ok()).expect("create -o json");
    let user = format!("system:serviceaccount:{}:{sa}", env.namespace);
    assert_eq!(doc["owner"], user.as_str(), "{doc}");
    let host = doc["host"].as_str().expect("host recorded").to_string();
    assert!(host.contains('@'), "{host}");
    assert_eq!(replicas(&env, "Deployment", "deployments", "api").await, 0);

    // Teammates see who holds it.
    let wide = mc_with(&env, &["status", "-o", "wide"], as_sa).await;
    let table = wide.ok();
    assert!(
        table.contains("| Owner") && table.contains("| Host"),
        "{table}"
    );
    assert!(table.contains(&user) && table.contains(&host), "{table}");
    // A conflicting session names the holder by user and machine.
    mc(&env, &["create", "deployment/api", "--scale-down"])
        .await
        .code(9)
        .stderr_has(&[&format!("{user} ({host})")]);

    let pod = doc["copyPod"].as_str().unwrap();
    mc_with(&env, &["delete", pod], as_sa).await.ok();
    assert_eq!(replicas(&env, "Deployment", "deployments", "api").await, 2);
    assert_nothing_left(&env).await;
}

/// Where the cluster cannot say who we are (SelfSubjectReview not served or not allowed), the
/// local `user@host` is recorded, and nothing fails.
#[tokio::test]
#[cfg_attr(real_cluster, ignore = "injects a fault: needs the fake API server")]
async fn without_selfsubjectreview_the_local_user_is_recorded() {
    let env = TestEnv::new().await;
    let fake = env.fake().expect("the fake API server");
    env.apply_yaml(&deployment("api", 1)).await;
    fake.faults()
        .fail_nth("POST", "/selfsubjectreviews", 1, 404);
    let run = mc(&env, &["create", "deployment/api", "-o", "json"]).await;
    let doc: Value = serde_json::from_str(run.ok()).expect("create -o json");
    assert_eq!(doc["owner"], doc["host"], "{doc}");
    assert!(
        doc["owner"].as_str().is_some_and(|o| o.contains('@')),
        "{doc}"
    );
    mc(&env, &["delete", doc["copyPod"].as_str().unwrap()])
        .await
        .ok();
}
