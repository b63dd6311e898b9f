//! `--dry-run=client`, `--reuse`, and mirrord interop: `--mirrord-config` (JSON, TOML, YAML)
//! and `--emit-mirrord-config`.

use fakekube::harness::TestEnv;
use serde_json::Value;

use crate::plugin_support::*;

#[tokio::test]
async fn dry_run_prints_the_pod_and_creates_nothing() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("api", 2)).await;
    let requests_before = env.fake().map(|f| f.requests().len());

    let yaml = mc(
        &env,
        &[
            "create",
            "deployment/api",
            "--scale-down",
            "--dry-run=client",
            "-o",
            "yaml",
        ],
    )
    .await;
    let pod: Value = serde_yaml_ng::from_str(yaml.ok()).expect("a YAML document");
    assert_eq!(pod["apiVersion"], "v1");
    assert_eq!(pod["kind"], "Pod");
    assert!(pod["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("api-copy-"));
    assert_eq!(pod["metadata"]["labels"]["app"], "api");
    assert_eq!(names(&pod["spec"]["containers"]), ["app", "side"]);
    assert_eq!(
        names(&pod["spec"]["initContainers"]),
        ["mirrord-copy-placeholder", "setup", "proxy"]
    );
    for list in ["containers", "initContainers"] {
        for c in pod["spec"][list].as_array().unwrap() {
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                assert!(c.get(probe).is_none(), "{list}/{}: {probe}", c["name"]);
            }
        }
    }
    // The default output is YAML too; -o json and -o name.
    let default: Value = serde_yaml_ng::from_str(
        mc(&env, &["create", "deployment/api", "--dry-run=client"])
            .await
            .ok(),
    )
    .unwrap();
    assert_eq!(default["kind"], "Pod");
    let json: Value = serde_json::from_str(
        mc(
            &env,
            &["create", "deployment/api", "--dry-run=client", "-o", "json"],
        )
        .await
        .ok(),
    )
    .unwrap();
    assert_eq!(json["kind"], "Pod");
    let name = mc(
        &env,
        &["create", "deployment/api", "--dry-run=client", "-o", "name"],
    )
    .await;
    assert!(name.ok().starts_with("pod/api-copy-") && name.stdout.ends_with('\n'));

    // Nothing touched: no session, no copy, no scale-down, nothing recorded locally.
    assert_nothing_left(&env).await;
    assert_eq!(replicas(&env, "Deployment", "deployments", "api").await, 2);
    assert!(!env.state_dir.join("sessions.json").exists() || state_sessions(&env).is_empty());
    assert_eq!(mc(&env, &["status"]).await.ok(), "No active copy targets\n");
    if let (Some(fake), Some(before)) = (env.fake(), requests_before) {
        let writes: Vec<String> = fake.requests()[before..]
            .iter()
            .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch"))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(writes.is_empty(), "dry-run wrote: {writes:?}");
    }
    // Errors are still reported.
    mc(&env, &["create", "deployment/ap", "--dry-run=client"])
        .await
        .code(3);
}

#[tokio::test]
async fn reuse_returns_the_same_copy_for_the_same_options() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("api", 1)).await;
    let a = create(&env, &["deployment/api"]).await;
    let again = create(&env, &["deploy/api", "--reuse"]).await;
    assert_eq!(again, a, "same target and options: the live copy");
    let b = create(
        &env,
        &["deployment/api", "--reuse", "--exclude-container", "side"],
    )
    .await;
    assert_ne!(b, a, "different options: a new copy");
    let b_again = create(
        &env,
        &["deployments/api", "--exclude-container", "side", "--reuse"],
    )
    .await;
    assert_eq!(b_again, b);
    // Without --reuse, always a new one.
    let c = create(&env, &["deployment/api"]).await;
    assert!(c != a && c != b);
    let st: Value = serde_json::from_str(mc(&env, &["status", "-o", "json"]).await.ok()).unwrap();
    assert_eq!(st["items"].as_array().unwrap().len(), 3);
}

async fn from_config(env: &TestEnv, file: &str, text: &str, app: &str, excluded_init: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file);
    std::fs::write(&path, text).unwrap();
    let emitted = dir.path().join("copy.json");
    let pod = create(
        env,
        &[
            "--mirrord-config",
            path.to_str().unwrap(),
            "--emit-mirrord-config",
            emitted.to_str().unwrap(),
        ],
    )
    .await;
    let target = format!("deployment/{app}");
    let copy = check_copy(env, &pod, &target, app).await;
    assert_eq!(names(&copy.pod["spec"]["containers"]), ["app"], "{file}");
    let init = names(&copy.pod["spec"]["initContainers"]);
    if excluded_init {
        assert_eq!(init, ["mirrord-copy-placeholder", "proxy"], "{file}");
    } else {
        assert_eq!(
            init,
            ["mirrord-copy-placeholder", "setup", "proxy"],
            "{file}"
        );
    }
    assert_eq!(
        copy.session.data.unwrap()["scaleDown"],
        "true",
        "{file}: feature.copy_target.scale_down"
    );
    assert_eq!(
        replicas(env, "Deployment", "deployments", app).await,
        0,
        "{file}"
    );
    let out: Value = serde_json::from_str(&std::fs::read_to_string(&emitted).unwrap())
        .expect("the emitted config is JSON");
    assert_eq!(out["target"]["path"], format!("pod/{pod}/container/app"));
    assert_eq!(out["target"]["namespace"], env.namespace.as_str());
}

#[tokio::test]
async fn mirrord_config_files_json_toml_yaml() {
    let env = TestEnv::new().await;
    for app in ["j", "t", "y"] {
        env.apply_yaml(&deployment(app, 2)).await;
    }
    let ns = &env.namespace;
    from_config(
        &env,
        "mirrord.json",
        &format!(
            r#"{{"target": {{"path": "deployment/j", "namespace": "{ns}"}},
                "feature": {{"copy_target": {{"scale_down": true, "exclude_containers": ["side"]}}}}}}"#
        ),
        "j",
        false,
    )
    .await;
    from_config(
        &env,
        "mirrord.toml",
        "target = \"deployment/t\"\n\n[feature.copy_target]\nscale_down = true\nexclude_containers = [\"side\"]\n",
        "t",
        false,
    )
    .await;
    from_config(
        &env,
        "mirrord.yaml",
        "target:\n  path: deployment/y\nfeature:\n  copy_target:\n    enabled: true\n    scale_down: true\n    exclude_containers: [side]\n    exclude_init_containers: [setup]\n",
        "y",
        true,
    )
    .await;
}

#[tokio::test]
async fn command_line_wins_over_the_config_and_bad_files_exit_2() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("from-file", 1)).await;
    env.apply_yaml(&deployment("from-flag", 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mirrord.json");
    std::fs::write(
        &cfg,
        r#"{"target": "deployment/from-file", "feature": {"copy_target": true}}"#,
    )
    .unwrap();
    let pod = create(
        &env,
        &[
            "deployment/from-flag",
            "--mirrord-config",
            cfg.to_str().unwrap(),
            "--exclude-container",
            "side",
        ],
    )
    .await;
    let copy = check_copy(&env, &pod, "deployment/from-flag", "from-flag").await;
    assert_eq!(names(&copy.pod["spec"]["containers"]), ["app"]);
    assert_eq!(copy.session.data.unwrap()["scaleDown"], "false");

    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{ not json").unwrap();
    mc(
        &env,
        &["create", "--mirrord-config", broken.to_str().unwrap()],
    )
    .await
    .code(2)
    .stderr_has(&["is not a valid mirrord configuration"]);
    mc(
        &env,
        &[
            "create",
            "--mirrord-config",
            dir.path().join("absent.json").to_str().unwrap(),
        ],
    )
    .await
    .code(2)
    .stderr_has(&["cannot read --mirrord-config"]);
    // run takes them too: the emitted file names the copy while the command runs.
    let emitted = dir.path().join("run.json");
    let run = mc_with(
        &env,
        &[
            "run",
            "--mirrord-config",
            cfg.to_str().unwrap(),
            "--emit-mirrord-config",
            emitted.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            r#"grep -q "\"pod/$MIRRORD_COPY_POD/container/$MIRRORD_COPY_CONTAINER\"" "$EMITTED" && test "$MIRRORD_COPY_TARGET" = deployment/from-file"#,
        ],
        |c| {
            c.env("EMITTED", &emitted);
        },
    )
    .await;
    run.code(0);
}
