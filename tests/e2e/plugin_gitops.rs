//! Workloads a GitOps controller applies: scale-down warns that the controller will put the
//! count back; `--suspend-flux` pauses Flux's reconcile of the workload for the session.

use fakekube::harness::TestEnv;
use serde_json::Value;

use crate::plugin_support::*;

async fn annotations(env: &TestEnv, name: &str) -> Value {
    env.get_json("apps", "v1", "Deployment", "deployments", name)
        .await
        .expect("the deployment")["metadata"]["annotations"]
        .clone()
}

#[tokio::test]
async fn suspend_flux_disables_its_reconcile_for_the_session_and_restores_it() {
    let env = TestEnv::new().await;
    let manifest = plain_deployment("fx", 2, "registry.k8s.io/pause:3.10").replacen(
        "metadata:\n  name: fx\n",
        "metadata:\n  name: fx\n  labels:\n    kustomize.toolkit.fluxcd.io/name: apps\n    kustomize.toolkit.fluxcd.io/namespace: flux-system\n",
        1,
    );
    env.apply_yaml(&manifest).await;
    let run = mc(
        &env,
        &[
            "create",
            "deployment/fx",
            "--scale-down",
            "--suspend-flux",
            "-v",
        ],
    )
    .await;
    let pod = run.ok().trim().to_string();
    run.stderr_has(&[
        "is managed by Flux Kustomization flux-system/apps",
        "kustomize.toolkit.fluxcd.io/reconcile=disabled for the session",
    ]);
    let a = annotations(&env, "fx").await;
    assert_eq!(
        a["kustomize.toolkit.fluxcd.io/reconcile"], "disabled",
        "{a}"
    );
    assert_eq!(a["mirrord-copy.io/flux-reconcile-previous"], "", "{a}");
    mc(&env, &["delete", &pod]).await.ok();
    let a = annotations(&env, "fx").await;
    for key in [
        "kustomize.toolkit.fluxcd.io/reconcile",
        "mirrord-copy.io/flux-reconcile-previous",
        "mirrord-copy.io/scaled-down-by",
    ] {
        assert!(a.get(key).is_none(), "{key} left: {a}");
    }
    assert_eq!(replicas(&env, "Deployment", "deployments", "fx").await, 2);
}

#[tokio::test]
async fn argo_cd_managed_workloads_get_a_warning() {
    let env = TestEnv::new().await;
    let manifest = plain_deployment("ar", 1, "registry.k8s.io/pause:3.10").replacen(
        "metadata:\n  name: ar\n",
        "metadata:\n  name: ar\n  annotations:\n    argocd.argoproj.io/tracking-id: shop:apps/Deployment:x/ar\n",
        1,
    );
    env.apply_yaml(&manifest).await;
    let run = mc(&env, &["create", "deployment/ar", "--scale-down", "-v"]).await;
    let pod = run.ok().trim().to_string();
    run.stderr_has(&["is managed by Argo CD application shop"]);
    mc(&env, &["delete", &pod]).await.ok();
    // --suspend-flux needs --scale-down.
    mc(&env, &["create", "deployment/ar", "--suspend-flux"])
        .await
        .code(2);
}
