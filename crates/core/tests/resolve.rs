//! Target resolution against the fake API server.

mod common;

use common::{client_with_token, env_with_workloads};
use mirrord_copy_core::resolve::container_names;
use mirrord_copy_core::{resolve, Error, TargetRef};

fn target(s: &str) -> TargetRef {
    s.parse().unwrap()
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn every_kind_resolves_to_its_template() {
    let env = env_with_workloads().await;
    let cases = [
        (
            "deploy/py-serv-deployment",
            "Deployment",
            vec!["app", "metrics"],
        ),
        ("sts/db", "StatefulSet", vec!["postgres"]),
        ("rs/bare-rs", "ReplicaSet", vec!["bare"]),
        ("job/migrate", "Job", vec!["migrate"]),
        ("cj/nightly", "CronJob", vec!["report"]),
        ("po/debug-me", "Pod", vec!["shell"]),
        ("rollout/checkout", "Rollout", vec!["checkout"]),
        // spec.workloadRef: the referenced Deployment's template; the object stays the Rollout
        ("ro/by-ref", "Rollout", vec!["app", "metrics"]),
    ];
    for (t, kind, containers) in cases {
        let r = resolve(&env.client, &env.namespace, &target(t))
            .await
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(r.object.kind, kind, "{t}");
        assert_eq!(r.object.namespace, env.namespace);
        assert!(!r.object.uid.is_empty(), "{t}: uid");
        assert_eq!(r.raw["kind"], kind, "{t}");
        assert_eq!(container_names(&r.template), containers, "{t}");
    }
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn missing_target_suggests_close_names() {
    let env = env_with_workloads().await;
    let err = resolve(&env.client, &env.namespace, &target("deploy/py-serv"))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 3);
    match &err {
        Error::TargetNotFound { suggestions, .. } => {
            assert_eq!(suggestions, &["py-serv-deployment".to_string()])
        }
        other => panic!("{other:?}"),
    }
    let err = resolve(&env.client, &env.namespace, &target("rollout/checkuot"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did you mean checkout?"), "{err}");
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn missing_container_names_the_valid_ones() {
    let env = env_with_workloads().await;
    let err = resolve(
        &env.client,
        &env.namespace,
        &target("deploy/py-serv-deployment/container/nope"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 3);
    assert!(
        err.to_string().contains("valid containers: app, metrics"),
        "{err}"
    );
    let ok = resolve(
        &env.client,
        &env.namespace,
        &target("deploy/py-serv-deployment/container/metrics"),
    )
    .await
    .unwrap();
    assert_eq!(ok.target.container.as_deref(), Some("metrics"));
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn forbidden_names_verb_and_resource() {
    let env = env_with_workloads().await;
    let fake = env.fake().expect("fake API server");
    let token = fake.rbac().user_token("nobody");
    let client = client_with_token(&env, &token).await;
    let err = resolve(
        &client,
        &env.namespace,
        &target("deploy/py-serv-deployment"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 5, "{err}");
    match &err {
        Error::Forbidden {
            verb,
            resource,
            message,
        } => {
            assert_eq!(verb, "get");
            assert_eq!(resource, "deployments.apps");
            assert!(message.contains("forbidden"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn bad_credentials_and_dead_servers_are_unreachable() {
    let env = env_with_workloads().await;
    let fake = env.fake().expect("fake API server");
    let client = client_with_token(&env, "not-a-valid-token").await;
    let err = resolve(
        &client,
        &env.namespace,
        &target("deploy/py-serv-deployment"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 8, "{err}");
    assert!(err.to_string().contains("authentication failed"), "{err}");

    let client = client_with_token(&env, fakekube::ADMIN_TOKEN).await;
    fake.stop().await;
    let err = resolve(
        &client,
        &env.namespace,
        &target("deploy/py-serv-deployment"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 8, "{err}");
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn a_statefulset_pods_own_hostname_is_not_copied() {
    let env = env_with_workloads().await;
    env.apply_yaml(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: cache-0, labels: {app: cache, statefulset.kubernetes.io/pod-name: cache-0}}
spec:
  hostname: cache-0
  subdomain: cache
  containers: [{name: postgres, image: postgres:16}]
---
apiVersion: v1
kind: Pod
metadata: {name: named-host}
spec:
  hostname: chosen-by-user
  containers: [{name: c, image: c:1}]
"#,
    )
    .await;
    let r = resolve(&env.client, &env.namespace, &target("pod/cache-0"))
        .await
        .unwrap();
    let spec = r.template.spec.unwrap();
    assert_eq!(spec.hostname, None);
    assert_eq!(spec.subdomain.as_deref(), Some("cache"));
    let r = resolve(&env.client, &env.namespace, &target("pod/named-host"))
        .await
        .unwrap();
    assert_eq!(
        r.template.spec.unwrap().hostname.as_deref(),
        Some("chosen-by-user")
    );
}
