//! Every error path of the plugin and its documented exit code (README, "Exit codes").

use std::time::Duration;

use fakekube::harness::TestEnv;

use crate::plugin_support::*;

const ACCEPTED: &str = "accepted targets: pod/NAME, deployment/NAME, statefulset/NAME, replicaset/NAME, rollout/NAME, job/NAME, cronjob/NAME";

#[tokio::test]
async fn malformed_targets_and_unknown_kinds_exit_2_listing_the_accepted_forms() {
    let env = TestEnv::new().await;
    for target in [
        "deployment",
        "widget/x",
        "service/x",
        "deployment/x/sidecar/c",
        "deployment/x/container",
        "deployment/Not_A_Name",
        "deployment/x/container/c/extra",
    ] {
        mc(&env, &["create", target]).await.code(2).stderr_has(&[
            "error:",
            &format!("\"{target}\""),
            ACCEPTED,
        ]);
    }
    // Same parser for run and delete --target.
    mc(&env, &["run", "widget/x", "--", "true"])
        .await
        .code(2)
        .stderr_has(&[ACCEPTED]);
    mc(&env, &["delete", "--target", "nope"])
        .await
        .code(2)
        .stderr_has(&[ACCEPTED]);
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("api", 1)).await;
    for args in [
        &["create", "deployment/api", "--ttl", "soon"][..],
        &["create", "deployment/api", "--timeout", "5x"],
        &[
            "run",
            "deployment/api",
            "--timeout",
            "forever",
            "--",
            "true",
        ],
        &["status", "--request-timeout", "later"],
    ] {
        mc(&env, args)
            .await
            .code(2)
            .stderr_has(&["invalid duration", "examples: 30s, 2m, 8h"]);
    }
    // No target at all, an unknown flag, an unknown output format, delete without a choice.
    mc(&env, &["create"])
        .await
        .code(2)
        .stderr_has(&["a TARGET is required"]);
    mc(&env, &["create", "deployment/api", "--frobnicate"])
        .await
        .code(2);
    mc(&env, &["create", "deployment/api", "-o", "table"])
        .await
        .code(2);
    mc(&env, &["delete"])
        .await
        .code(2)
        .stderr_has(&["--target", "--all"]);
    // An unknown --exclude-container name is a usage error naming the valid ones.
    mc(
        &env,
        &["create", "deployment/api", "--exclude-container", "ghost"],
    )
    .await
    .code(2)
    .stderr_has(&["ghost", "app, side"]);
    mc(
        &env,
        &[
            "create",
            "deployment/api",
            "--exclude-init-container",
            "ghost",
        ],
    )
    .await
    .code(2)
    .stderr_has(&["ghost", "setup, proxy"]);
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn missing_target_exits_3_with_a_suggestion() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("web-frontend", 0)).await;
    let run = mc(&env, &["create", "deployment/web-frontnd"]).await;
    run.code(3).stderr_has(&[
        "deployment \"web-frontnd\" not found in namespace",
        &env.namespace,
        "did you mean web-frontend?",
    ]);
    mc(&env, &["create", "sts/zzzzzzzzzz"])
        .await
        .code(3)
        .stderr_has(&["statefulset \"zzzzzzzzzz\" not found"]);
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn unknown_container_exits_3_naming_the_valid_ones() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("api", 0)).await;
    mc(&env, &["create", "deployment/api/container/nope"])
        .await
        .code(3)
        .stderr_has(&["\"nope\" not found", "valid containers: app, side"]);
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn unsupported_requests_exit_4() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("api", 0)).await;
    env.apply_yaml(&bare_pod("lonely")).await;
    env.apply_yaml(&job("once")).await;
    mc(
        &env,
        &[
            "create",
            "deployment/api",
            "--exclude-container",
            "app",
            "--exclude-container",
            "side",
        ],
    )
    .await
    .code(4)
    .stderr_has(&["every container", "app, side"]);
    mc(&env, &["create", "pod/lonely", "--scale-down"])
        .await
        .code(4)
        .stderr_has(&["pod/lonely"]);
    mc(&env, &["create", "job/once", "--scale-down"])
        .await
        .code(4)
        .stderr_has(&["job/once"]);
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn no_rights_exit_5_naming_verb_and_resource() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("api", 0)).await;
    // A ServiceAccount bound to nothing.
    let kc = env.kubeconfig_with_roles("nobody", "").await;
    let with = |c: &mut tokio::process::Command| {
        c.env("KUBECONFIG", &kc);
    };
    mc_with(&env, &["create", "deployment/api"], with)
        .await
        .code(5)
        .stderr_has(&[
            "permission denied: cannot get deployments",
            "hint:",
            "plugin-manifest/role.yaml",
        ]);
    mc_with(&env, &["status"], with)
        .await
        .code(5)
        .stderr_has(&["permission denied: cannot list configmaps"]);
    assert_nothing_left(&env).await;
}

/// Rights to read the target but not to write a session: exit 5 at the first write, naming
/// it, and nothing left behind.
#[tokio::test]
async fn read_only_rights_exit_5_at_the_first_write() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("locked", 1)).await;
    let reader = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: reader, namespace: {}}}\nrules:\n- apiGroups: [\"\", apps]\n  resources: [pods, deployments, replicasets, configmaps]\n  verbs: [get, list]\n",
        env.namespace
    );
    let kc = env.kubeconfig_with_roles("reader", &reader).await;
    mc_with(&env, &["create", "deployment/locked", "--no-wait"], |c| {
        c.env("KUBECONFIG", &kc);
    })
    .await
    .code(5)
    .stderr_has(&["permission denied: cannot create configmaps", "hint:"]);
    assert_nothing_left(&env).await;
}

/// A copy that can never become Ready: exit 6, the kubelet's waiting reason in the message,
/// and nothing of the run left behind.
#[tokio::test]
async fn image_pull_backoff_exits_6_and_leaves_nothing() {
    let env = TestEnv::new().await;
    // An image the registry does not hold: ErrImagePull, then ImagePullBackOff.
    env.apply_yaml(&failing_deployment(
        "pull",
        "ghcr.io/example/missing:1",
        &[],
    ))
    .await;
    mc(&env, &["create", "deployment/pull", "--timeout", "60s"])
        .await
        .code(6)
        .stderr_has(&[
            "error: copy pod pull-copy-",
            "failed to start",
            "ImagePullBackOff",
            "recent events:",
            "everything this run created was removed",
        ]);
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn crash_loop_exits_6_undoes_scale_down_and_leaves_nothing() {
    let env = TestEnv::new().await;
    // A container that exits 1: restarted with back-off, CrashLoopBackOff.
    env.apply_yaml(&failing_deployment(
        "crash",
        "busybox",
        &["sh", "-c", "exit 1"],
    ))
    .await;
    let run = mc(
        &env,
        &[
            "create",
            "deployment/crash",
            "--scale-down",
            // The application itself, so that its crash is the copy's (the placeholder would
            // not crash).
            "--keep-command",
            "--timeout",
            "60s",
        ],
    )
    .await;
    run.code(6)
        .stderr_has(&["failed to start", "container app"]);
    // Seen as it ended, as it was restarted, or in back-off: whichever the watch saw first.
    assert!(
        ["exit code 1", "CrashLoopBackOff"]
            .iter()
            .any(|r| run.stderr.contains(r)),
        "{}",
        run.stderr
    );
    assert_nothing_left(&env).await;
    let d = env
        .get_json("apps", "v1", "Deployment", "deployments", "crash")
        .await
        .unwrap();
    assert_eq!(d["spec"]["replicas"], 1, "never scaled down");
    assert!(
        d["metadata"]["annotations"]["mirrord-copy.io/original-replicas"].is_null(),
        "{}",
        d["metadata"]
    );
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn slow_kubelet_with_short_timeout_exits_7() {
    let env = TestEnv::new().await;
    let fake = env.fake().expect("the fake API server");
    env.apply_yaml(&deployment("slow", 1)).await;
    fake.controllers()
        .kubelet_config
        .lock()
        .unwrap()
        .ready_delay = Duration::from_secs(60);
    let started = std::time::Instant::now();
    mc(&env, &["create", "deployment/slow", "--timeout", "1s"])
        .await
        .code(7)
        .stderr_has(&["timed out", "hint: raise --timeout"]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "--timeout 1s took {:?}",
        started.elapsed()
    );
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn unreachable_server_exits_8() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = unreachable_kubeconfig(&env, dir.path());
    for args in [
        &["create", "deployment/api"][..],
        &["status"],
        &["delete", "--all"],
        &["run", "deployment/api", "--", "true"],
    ] {
        mc_with(&env, args, |c| {
            c.env("KUBECONFIG", &kc);
        })
        .await
        .code(8)
        .stderr_has(&["cluster unreachable", "hint:"]);
    }
    // --kubeconfig wins over KUBECONFIG.
    mc(&env, &["status", "--kubeconfig", kc.to_str().unwrap()])
        .await
        .code(8);
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn stopped_server_exits_8() {
    let env = TestEnv::new().await;
    let fake = env.fake().expect("the fake API server");
    env.apply_yaml(&deployment("api", 1)).await;
    fake.stop().await;
    mc(
        &env,
        &["create", "deployment/api", "--request-timeout", "5s"],
    )
    .await
    .code(8)
    .stderr_has(&["cluster unreachable"]);
}

/// A second scale-down of the same workload, by its name or through its ReplicaSet, exits 9
/// naming the holder, and the first session is left exactly as it was.
#[tokio::test]
async fn second_scale_down_conflicts_with_9() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("worker", 2)).await;
    let rs = replicaset_of(&env, "worker").await;
    let first = create(&env, &["deployment/worker", "--scale-down"]).await;
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "worker").await,
        0
    );
    let before = mc(&env, &["status", "-o", "json"]).await.ok().to_string();

    for target in ["deployment/worker".to_string(), format!("replicaset/{rs}")] {
        mc(&env, &["create", &target, "--scale-down"])
            .await
            .code(9)
            .stderr_has(&[
                "deployment/worker is already scaled down by another session",
                &first,
                "that session was left untouched",
            ]);
    }
    mc(
        &env,
        &["run", "deploy/worker", "--scale-down", "--", "true"],
    )
    .await
    .code(9);

    // Undisturbed: same single session, same copy, still at zero with the recorded count.
    assert_eq!(mc(&env, &["status", "-o", "json"]).await.ok(), before);
    assert!(env.get_pod(&first).await.is_some());
    let d = env
        .get_json("apps", "v1", "Deployment", "deployments", "worker")
        .await
        .unwrap();
    assert_eq!(d["spec"]["replicas"], 0);
    assert_eq!(
        d["metadata"]["annotations"]["mirrord-copy.io/original-replicas"],
        "2"
    );
    // A copy without --scale-down still shares the workload.
    create(&env, &["deployment/worker"]).await;

    mc(&env, &["delete", &first]).await.ok();
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "worker").await,
        2
    );
}
