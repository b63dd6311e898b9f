//! Workloads a GitOps controller applies: scale-down warns that the controller will put the
//! count back; `--suspend-flux` pauses Flux's reconcile of the workload for the session.

use fakekube::harness::TestEnv;
use serde_json::Value;

use crate::plugin_support::*;

#[tokio::test]
async fn suspend_flux_disables_its_reconcile_for_the_session_and_restores_it() {
    let env = TestEnv::new().await;
    let manifest = plain::deployment_of("fx", 2, "registry.k8s.io/pause:3.10").replacen(
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
    let a = deployment_annotations(&env, "fx").await;
    assert_eq!(
        a["kustomize.toolkit.fluxcd.io/reconcile"], "disabled",
        "{a}"
    );
    assert_eq!(a["mirrord-copy.io/flux-reconcile-previous"], "", "{a}");
    mc(&env, &["delete", &pod]).await.ok();
    let a = deployment_annotations(&env, "fx").await;
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
    let manifest = plain::deployment_of("ar", 1, "registry.k8s.io/pause:3.10").replacen(
        "metadata:\n  name: ar\n",
        "metadata:\n  name: ar\n  annotations:\n    argocd.argoproj.io/tracking-id: shop:apps/Deployment:x/ar\n",
        1,
    );
    env.apply_yaml(&manifest).await;
    let run = mc(&env, &["create", "deployment/ar", "--scale-down", "-v"]).await;
    let pod = run.ok().trim().to_string();
    run.stderr_has(&[
        "is managed by Argo CD Application argocd/shop",
        "--suspend-argocd turns its self-heal off for the session",
    ]);
    mc(&env, &["delete", &pod]).await.ok();
    // --suspend-flux needs --scale-down.
    mc(&env, &["create", "deployment/ar", "--suspend-flux"])
        .await
        .code(2);
}

const PAUSED_BY: &str = "mirrord-copy.io/argocd-paused-by";
const PREVIOUS: &str = "mirrord-copy.io/argocd-previous-self-heal";

async fn application_json(env: &TestEnv, name: &str) -> Value {
    env.get_json(
        "argoproj.io",
        "v1alpha1",
        "Application",
        "applications",
        name,
    )
    .await
    .expect("the Application")
}

/// The Application's `selfHeal` and our two annotations on it.
async fn self_heal(env: &TestEnv, name: &str) -> (Value, Value, Value) {
    let app = application_json(env, name).await;
    let a = &app["metadata"]["annotations"];
    (
        app["spec"]["syncPolicy"]["automated"]["selfHeal"].clone(),
        a[PAUSED_BY].clone(),
        a[PREVIOUS].clone(),
    )
}

/// The test namespace as the Argo CD namespace, with the Application CRD served.
async fn argocd_env() -> TestEnv {
    let env = TestEnv::new().await;
    env.install_crd(APPLICATION_CRD).await;
    env
}

/// Without `--suspend-argocd`, Argo CD's self-heal puts the count back within seconds: the
/// warning says so, naming the Application and the flag.
#[tokio::test]
#[cfg_attr(
    real_cluster,
    ignore = "needs the fake's Argo CD self-heal controller (the real cluster runs no Argo CD)"
)]
async fn without_suspend_argocd_self_heal_undoes_the_scale_down_and_the_warning_says_so() {
    let env = argocd_env().await;
    let ns = env.namespace.clone();
    env.apply_yaml(&application(&ns, "shop", true)).await;
    // Tracked as <namespace>_<app>: an Application outside the Argo CD namespace.
    let id = format!("{ns}_shop");
    env.apply_yaml(&tracked_deployment(&env, "web", 2, &id))
        .await;
    let run = mc(&env, &["create", "deployment/web", "--scale-down", "-v"]).await;
    let pod = run.ok().trim().to_string();
    run.stderr_has(&[
        &format!("is managed by Argo CD Application {ns}/shop"),
        "--suspend-argocd turns its self-heal off",
        "scaled deployment/web down from 2 to 0",
    ]);
    env.wait_until(
        "self-heal to put the count back",
        std::time::Duration::from_secs(15),
        || async { (replicas(&env, "Deployment", "deployments", "web").await == 2).then_some(()) },
    )
    .await;
    assert_eq!(self_heal(&env, "shop").await.0, true, "left alone");
    mc(&env, &["delete", &pod]).await.ok();
    assert_eq!(replicas(&env, "Deployment", "deployments", "web").await, 2);
    // --suspend-argocd needs --scale-down: a usage error before any request.
    mc(&env, &["create", "deployment/web", "--suspend-argocd"])
        .await
        .code(2);
    mc(
        &env,
        &[
            "create",
            "deployment/web",
            "--scale-down",
            "--argocd-namespace",
            "Bad/NS",
        ],
    )
    .await
    .code(2);
}

/// With `--suspend-argocd` the Application's self-heal is off for the session (recorded in
/// the session and the lock, and on the Application), so the workload stays at zero; `delete`
/// puts the count back, then self-heal.
#[tokio::test]
async fn suspend_argocd_turns_self_heal_off_for_the_session_and_delete_restores_it() {
    let env = argocd_env().await;
    let ns = env.namespace.clone();
    env.apply_yaml(&application(&ns, "shop", true)).await;
    env.apply_yaml(&tracked_deployment(&env, "api", 3, "shop"))
        .await;
    let run = mc(
        &env,
        &[
            "create",
            "deployment/api",
            "--scale-down",
            "--suspend-argocd",
            "--argocd-namespace",
            &ns,
            "-v",
        ],
    )
    .await;
    let pod = run.ok().trim().to_string();
    run.stderr_has(&[
        &format!("is managed by Argo CD Application {ns}/shop: its self-heal is turned off for the session"),
        &format!("turned off self-heal of Argo CD Application {ns}/shop"),
    ]);
    let status: Value =
        serde_json::from_str(mc(&env, &["status", "-o", "json"]).await.ok()).unwrap();
    let session = &status["items"][0];
    assert_eq!(
        session["argoApplication"],
        serde_json::json!({"application": format!("{ns}/shop"), "selfHealBefore": true}),
        "{status}"
    );
    let id = session["session"].as_str().unwrap().to_string();
    assert_eq!(
        self_heal(&env, "shop").await,
        (
            Value::from(false),
            Value::from(id.as_str()),
            Value::from("true")
        )
    );
    // What a teammate sees: who turned self-heal off, and the value it had.
    let described = kubectl_describe(&env, "application", "shop").await;
    let flat = described.split_whitespace().collect::<Vec<_>>().join(" ");
    for part in [
        &format!("{PAUSED_BY}: {id}"),
        &format!("{PREVIOUS}: true"),
        "Self Heal: false",
    ] {
        assert!(flat.contains(part), "{part:?} not in:\n{described}");
    }
    let lock = env
        .get_json(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            "mirrord-copy-lock-deployment-api",
        )
        .await
        .expect("the lock");
    assert_eq!(
        lock["data"]["argoApplication"],
        format!("{ns}/shop"),
        "{lock}"
    );
    assert_eq!(lock["data"]["argoSelfHealBefore"], "true", "{lock}");
    if let Some(fake) = env.fake() {
        // Longer than the fake's self-heal delay: still at zero.
        tokio::time::sleep(fakekube::controllers::ARGOCD_SELF_HEAL_DELAY * 3).await;
        assert!(fake.controllers().is_on("argocd"));
    }
    assert_eq!(replicas(&env, "Deployment", "deployments", "api").await, 0);

    let end = mc(&env, &["delete", &pod, "-v"]).await;
    end.ok();
    end.stderr_has(&[
        "restored deployment/api to 3 replicas",
        &format!("restored self-heal of Argo CD Application {ns}/shop (selfHeal: true)"),
    ]);
    assert_eq!(replicas(&env, "Deployment", "deployments", "api").await, 3);
    assert_eq!(
        self_heal(&env, "shop").await,
        (Value::from(true), Value::Null, Value::Null)
    );
    let app = application_json(&env, "shop").await;
    assert_eq!(
        app["spec"]["syncPolicy"]["automated"]["prune"], true,
        "{app}"
    );
    if env.fake().is_some() {
        // Self-heal works again: a hand-made drift is put back.
        env.apply_yaml(&tracked_deployment(&env, "api", 1, "shop"))
            .await;
        env.wait_until("self-heal", std::time::Duration::from_secs(15), || async {
            (replicas(&env, "Deployment", "deployments", "api").await == 3).then_some(())
        })
        .await;
    }
    assert_nothing_left(&env).await;
}

/// A session whose record was lost (its ConfigMap deleted by hand: the lock stays, held by its
/// finalizer) is repaired by `gc` from the lock alone: the count, then self-heal.
#[tokio::test]
async fn gc_restores_count_and_self_heal_through_an_orphan_lock() {
    let env = argocd_env().await;
    let ns = env.namespace.clone();
    env.apply_yaml(&application(&ns, "shop", true)).await;
    env.apply_yaml(&tracked_deployment(&env, "orph", 2, &format!("{ns}_shop")))
        .await;
    let pod = create(
        &env,
        &["deployment/orph", "--scale-down", "--suspend-argocd"],
    )
    .await;
    assert_eq!(self_heal(&env, "shop").await.0, false);
    let sessions: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(env.client.clone(), &ns);
    for name in session_config_maps(&env, &ns).await {
        if name.starts_with("mirrord-copy-session-") {
            sessions.delete(&name, &Default::default()).await.unwrap();
        }
    }
    wait_pod_gone(&env, &pod).await;
    let gc = mc(&env, &["gc", "-v"]).await;
    gc.ok();
    gc.stderr_has(&[&format!(
        "restored self-heal of Argo CD Application {ns}/shop (selfHeal: true)"
    )]);
    assert_eq!(replicas(&env, "Deployment", "deployments", "orph").await, 2);
    assert_eq!(
        self_heal(&env, "shop").await,
        (Value::from(true), Value::Null, Value::Null)
    );
    assert_nothing_left(&env).await;
}

/// A `create --suspend-argocd` SIGKILLed after the zero, before it confirmed its session: gc
/// ends it once its provisional lease lapsed, putting back the count and self-heal.
#[tokio::test]
#[cfg_attr(
    real_cluster,
    ignore = "moves the fake API server's clock and holds a request with its fault injection"
)]
async fn gc_of_a_killed_create_restores_count_and_self_heal() {
    let env = argocd_env().await;
    let fake = env.fake().expect("the fake API server").clone();
    let ns = env.namespace.clone();
    env.apply_yaml(&application(&ns, "shop", true)).await;
    env.apply_yaml(&tracked_deployment(
        &env,
        "killed",
        2,
        &format!("{ns}_shop"),
    ))
    .await;
    // The confirmation is held until after the kill.
    fake.faults().latency(
        "PATCH",
        "/configmaps/mirrord-copy-session-",
        std::time::Duration::from_secs(2),
    );
    let mut c = tokio::process::Command::from(env.command(plugin_bin()));
    c.args([
        "create",
        "deployment/killed",
        "--scale-down",
        "--suspend-argocd",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .kill_on_drop(true);
    let mut child = c.spawn().expect("spawn the plugin");
    env.wait_until(
        "the scale to zero",
        std::time::Duration::from_secs(30),
        || async {
            (replicas(&env, "Deployment", "deployments", "killed").await == 0).then_some(())
        },
    )
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    fake.faults().clear();
    assert_eq!(self_heal(&env, "shop").await.0, false);
    // Self-heal stays off while nobody repairs: the workload stays at zero.
    tokio::time::sleep(fakekube::controllers::ARGOCD_SELF_HEAL_DELAY * 3).await;
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "killed").await,
        0
    );

    fake.set_clock_offset(chrono::Duration::minutes(2));
    let gc = mc(&env, &["gc"]).await;
    fake.set_clock_offset(chrono::Duration::zero());
    gc.ok();
    assert!(
        gc.stdout.contains("ended session:"),
        "{}\n{}",
        gc.stdout,
        gc.stderr
    );
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "killed").await,
        2
    );
    assert_eq!(
        self_heal(&env, "shop").await,
        (Value::from(true), Value::Null, Value::Null)
    );
    assert_nothing_left(&env).await;
}

/// `--suspend-argocd` of a workload whose Application is not there fails before anything is
/// written (exit 4): scaling down under self-heal would last seconds.
#[tokio::test]
async fn suspend_argocd_without_the_application_fails_before_anything_is_written() {
    let env = argocd_env().await;
    let ns = env.namespace.clone();
    env.apply_yaml(&tracked_deployment(&env, "lost", 2, "ghost"))
        .await;
    let run = mc(
        &env,
        &[
            "create",
            "deployment/lost",
            "--scale-down",
            "--suspend-argocd",
            "--argocd-namespace",
            &ns,
        ],
    )
    .await;
    run.code(4).stderr_has(&[
        "tracked by Argo CD application \"ghost\"",
        &format!("no Application {ns}/ghost"),
        "--argocd-namespace",
    ]);
    assert_eq!(replicas(&env, "Deployment", "deployments", "lost").await, 2);
    assert!(session_config_maps(&env, &ns).await.is_empty());
    assert!(env.list_pods("mirrord-copy.io/role=copy").await.is_empty());
}

/// The shipped Roles: `role.yaml` alone grants nothing on Applications, so `--suspend-argocd`
/// is refused (exit 5, naming what is missing) before anything is written; with
/// `argocd-role.yaml` bound in the Argo CD namespace it works, and `delete` restores.
#[tokio::test]
async fn suspend_argocd_needs_the_argocd_role() {
    let env = argocd_env().await;
    let ns = env.namespace.clone();
    env.apply_yaml(&application(&ns, "shop", true)).await;
    env.apply_yaml(&tracked_deployment(&env, "rb", 2, "shop"))
        .await;
    let role = include_str!("../../plugin-manifest/role.yaml");
    let argocd_role = include_str!("../../plugin-manifest/argocd-role.yaml");
    // Named apart from the Role the second binding below makes from the same file.
    let plain = role.replace("name: mirrord-copy\n", "name: mirrord-copy-plain\n");
    let without = env.kubeconfig_with_roles("plain", &plain).await;
    let args = [
        "create",
        "deployment/rb",
        "--scale-down",
        "--suspend-argocd",
        "--argocd-namespace",
        &ns,
    ];
    let refused = mc_with(&env, &args, |c| {
        c.env("KUBECONFIG", &without);
    })
    .await;
    refused
        .code(5)
        .stderr_has(&["applications.argoproj.io", "get"]);
    assert_eq!(replicas(&env, "Deployment", "deployments", "rb").await, 2);
    assert!(session_config_maps(&env, &ns).await.is_empty());
    assert_eq!(self_heal(&env, "shop").await.0, true);

    // Read but not patch: found at the check, refused at the pause, before the zero; what
    // the create made is removed again.
    let read_only = format!(
        "{}\n---\n{}",
        role.replace("name: mirrord-copy\n", "name: mirrord-copy-ro\n"),
        argocd_role
            .replace(
                "name: mirrord-copy-argocd\n",
                "name: mirrord-copy-argocd-ro\n"
            )
            .replace(r#"verbs: ["get", "patch"]"#, r#"verbs: ["get"]"#)
    );
    let get_only = env.kubeconfig_with_roles("reader", &read_only).await;
    mc_with(&env, &args, |c| {
        c.env("KUBECONFIG", &get_only);
    })
    .await
    .code(5)
    .stderr_has(&["applications.argoproj.io", "patch"]);
    assert_eq!(replicas(&env, "Deployment", "deployments", "rb").await, 2);
    env.wait_until(
        "the failed create's session and copy removed",
        std::time::Duration::from_secs(30),
        || async {
            (session_config_maps(&env, &ns).await.is_empty()
                && env.list_pods("mirrord-copy.io/role=copy").await.is_empty())
            .then_some(())
        },
    )
    .await;
    assert_eq!(self_heal(&env, "shop").await.0, true);

    let with = env
        .kubeconfig_with_roles("argo", &format!("{role}\n---\n{argocd_role}"))
        .await;
    let kube = |c: &mut tokio::process::Command| {
        c.env("KUBECONFIG", &with);
    };
    let run = mc_with(&env, &args, kube).await;
    let pod = run.ok().trim().to_string();
    assert_eq!(self_heal(&env, "shop").await.0, false);
    assert_eq!(replicas(&env, "Deployment", "deployments", "rb").await, 0);
    mc_with(&env, &["delete", &pod], kube).await.ok();
    assert_eq!(replicas(&env, "Deployment", "deployments", "rb").await, 2);
    assert_eq!(
        self_heal(&env, "shop").await,
        (Value::from(true), Value::Null, Value::Null)
    );
}

/// A session that takes over the expired lock of a dead `--suspend-argocd` session (its lease
/// lapsed) carries the Application's record forward: its own `delete` puts self-heal back,
/// with the value from before the dead session paused it, though it was made without the flag.
#[tokio::test]
#[cfg_attr(
    real_cluster,
    ignore = "moves the fake API server's clock past a lease"
)]
async fn a_takeover_carries_the_paused_application_forward() {
    let env = argocd_env().await;
    let fake = env.fake().expect("the fake API server").clone();
    let ns = env.namespace.clone();
    env.apply_yaml(&application(&ns, "shop", true)).await;
    env.apply_yaml(&tracked_deployment(&env, "tk", 2, &format!("{ns}_shop")))
        .await;
    let dead = create(
        &env,
        &[
            "deployment/tk",
            "--scale-down",
            "--suspend-argocd",
            "--ttl",
            "1h",
        ],
    )
    .await;
    // Its lease lapsed, as if its owner vanished; the copy pod is left as it is.
    fake.set_clock_offset(chrono::Duration::hours(2));
    let run = mc(
        &env,
        &[
            "create",
            "deployment/tk/container/app",
            "--scale-down",
            "-v",
        ],
    )
    .await;
    let pod = run.ok().trim().to_string();
    run.stderr_has(&["took over the expired lock"]);
    let (heal, by, previous) = self_heal(&env, "shop").await;
    assert_eq!((heal, previous), (Value::from(false), Value::from("true")));
    assert_ne!(by, Value::Null);
    assert_eq!(replicas(&env, "Deployment", "deployments", "tk").await, 0);
    mc(&env, &["delete", &pod]).await.ok();
    assert_eq!(replicas(&env, "Deployment", "deployments", "tk").await, 2);
    assert_eq!(
        self_heal(&env, "shop").await,
        (Value::from(true), Value::Null, Value::Null)
    );
    mc(&env, &["delete", &dead]).await.ok();
    fake.set_clock_offset(chrono::Duration::zero());
    assert_nothing_left(&env).await;
}

/// `run --suspend-argocd`: self-heal is off while the command runs, back on when it ends.
#[tokio::test]
async fn run_turns_self_heal_off_while_its_command_runs() {
    let env = argocd_env().await;
    let ns = env.namespace.clone();
    env.apply_yaml(&application(&ns, "shop", true)).await;
    env.apply_yaml(&tracked_deployment(&env, "rn", 2, &format!("{ns}_shop")))
        .await;
    let out = env.state_dir.join("self-heal-during-run");
    let script = "kubectl get application shop -o jsonpath='{.spec.syncPolicy.automated.selfHeal} {.metadata.annotations.mirrord-copy\\.io/argocd-previous-self-heal}' > \"$OUT\"; kubectl get deployment rn -o jsonpath='{.spec.replicas}' >> \"$OUT\"";
    mc_with(
        &env,
        &[
            "run",
            "deployment/rn",
            "--scale-down",
            "--suspend-argocd",
            "--",
            "sh",
            "-c",
            script,
        ],
        |c| {
            c.env("OUT", &out);
        },
    )
    .await
    .code(0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "false true0");
    assert_eq!(replicas(&env, "Deployment", "deployments", "rn").await, 2);
    assert_eq!(
        self_heal(&env, "shop").await,
        (Value::from(true), Value::Null, Value::Null)
    );
}
