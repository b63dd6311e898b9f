//! Plugin binary tests that need the fake API server (simulated kubelet failures, restricted
//! identities): copy failed (6), timed out (7), forbidden (5). Reported as ignored on a real
//! cluster (cfg(real_cluster)), and panic loudly if run there anyway.

use crate::plugin_bin;

use std::process::Output;
use std::time::Duration;

use fakekube::harness::TestEnv;

use crate::scale_down_support::deployment;

async fn fake_env() -> TestEnv {
    let env = TestEnv::new().await;
    assert!(
        env.fake().is_some(),
        "fake-only test: run without MIRRORD_COPY_TEST_KUBECONFIG"
    );
    env
}

async fn plugin(env: &TestEnv, args: &[&str]) -> Output {
    let mut c = tokio::process::Command::from(env.command(plugin_bin()));
    c.args(args).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .expect("plugin timed out")
        .expect("spawn plugin")
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "fake-only test: simulated kubelet failure")]
async fn copy_failed_exits_6_and_cleans_up() {
    let env = fake_env().await;
    env.apply_yaml(
        &deployment("broken", 1).replace("registry.k8s.io/pause:3.10", "example/imagepullbackoff"),
    )
    .await;
    let out = plugin(&env, &["create", "deployment/broken", "--timeout", "30s"]).await;
    assert_eq!(out.status.code(), Some(6), "{}", err(&out));
    assert!(err(&out).starts_with("error:"), "{}", err(&out));
    assert!(
        err(&out).contains("ImagePull") || err(&out).contains("ErrImagePull"),
        "{}",
        err(&out)
    );
    let status = plugin(&env, &["status"]).await;
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "No active copy targets\n"
    );
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "fake-only test: simulated kubelet never Ready")]
async fn never_ready_times_out_with_7() {
    let env = fake_env().await;
    env.apply_yaml(
        &deployment("slow", 1).replace("registry.k8s.io/pause:3.10", "example/notready"),
    )
    .await;
    let out = plugin(&env, &["create", "deployment/slow", "--timeout", "3s"]).await;
    assert_eq!(out.status.code(), Some(7), "{}", err(&out));
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "fake-only test: restricted identity")]
async fn forbidden_exits_5_with_hint() {
    let env = fake_env().await;
    env.apply_yaml(&deployment("locked", 1)).await;
    let kc = env
        .kubeconfig_with_roles(
            "reader",
            &format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: reader, namespace: {}}}\nrules:\n- apiGroups: [\"\", apps]\n  resources: [pods, deployments, replicasets]\n  verbs: [get, list]\n",
                env.namespace
            ),
        )
        .unwrap();
    let mut c = tokio::process::Command::from(env.command(plugin_bin()));
    c.env("KUBECONFIG", &kc)
        .args(["create", "deployment/locked", "--no-wait"]);
    let out = c.output().await.unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", err(&out));
    assert!(err(&out).contains("hint:"), "{}", err(&out));
}
