//! Breadcrumbs a teammate without the plugin can follow (README "Breadcrumbs"): while a
//! workload is scaled down, `kubectl describe` shows an annotation saying who holds it, until
//! when and how to put it back, and Events record the scale-down and the restore. Events are
//! best-effort: without the right to create them, the session goes on with a warning.

use fakekube::harness::TestEnv;

use crate::plugin_support::*;

#[tokio::test]
async fn kubectl_describe_tells_who_holds_the_workload_and_how_to_put_it_back() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("web", 2)).await;
    let pod = create(&env, &["deployment/web", "--scale-down", "--ttl", "1h"]).await;
    let ns = &env.namespace;
    // kubectl wraps long annotation values: compare without the line breaks.
    let held = kubectl_describe(&env, "deployment", "web").await;
    let flat = held.split_whitespace().collect::<Vec<_>>().join(" ");
    for part in [
        "mirrord-copy.io/note: Scaled to 0 from 2 by kubectl mirrord-copy for",
        &format!("copy pod {pod}"),
        "until 20",
        &format!("`kubectl mirrord-copy gc -n {ns}`"),
        &format!("`kubectl scale deployment/web -n {ns} --replicas=2`"),
        "MirrordCopyScaledDown",
    ] {
        assert!(flat.contains(part), "{part:?} in:\n{held}");
    }
    mc(&env, &["delete", &pod]).await.ok();
    let restored = kubectl_describe(&env, "deployment", "web").await;
    assert!(
        !restored.contains("mirrord-copy.io/note"),
        "the note goes with the restore:\n{restored}"
    );
    assert!(restored.contains("MirrordCopyRestored"), "{restored}");
    assert!(restored.contains("Restored to 2 replicas"), "{restored}");
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn without_the_right_to_create_events_scale_down_works_with_a_warning() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("api", 2)).await;
    let role = include_str!("../../plugin-manifest/role.yaml")
        .replace(r#"verbs: ["list", "create"]"#, r#"verbs: ["list"]"#);
    assert!(
        !role.contains(r#"verbs: ["list", "create"]"#),
        "fixture edited"
    );
    let kc = env.kubeconfig_with_roles("no-events", &role).await;
    let as_user = |c: &mut tokio::process::Command| {
        c.env("KUBECONFIG", &kc);
    };
    let run = mc_with(&env, &["create", "deployment/api", "--scale-down"], as_user).await;
    let pod = run.ok().trim().to_string();
    run.stderr_has(&["warning: could not record Event MirrordCopyScaledDown"]);
    assert_eq!(replicas(&env, "Deployment", "deployments", "api").await, 0);
    mc_with(&env, &["delete", &pod], as_user).await.ok();
    assert_eq!(replicas(&env, "Deployment", "deployments", "api").await, 2);
    assert_nothing_left(&env).await;
}
