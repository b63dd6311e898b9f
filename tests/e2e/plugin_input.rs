//! Bad input never reaches the cluster: each case gets a clear message and the
//! documented exit code before any request is sent, and what the plugin writes it can read
//! back.

use fakekube::harness::TestEnv;
use serde_json::Value;

use crate::plugin_support::*;

/// How many requests the fake API server has logged (None on a real cluster).
fn logged(env: &TestEnv) -> Option<usize> {
    env.fake().map(|f| f.requests().len())
}

/// Asserts that no request reached the fake since `before` was taken.
fn nothing_sent(env: &TestEnv, before: Option<usize>, what: &str) {
    if let (Some(fake), Some(before)) = (env.fake(), before) {
        let sent: Vec<String> = fake.requests()[before..]
            .iter()
            .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
            .collect();
        assert!(sent.is_empty(), "{what}: requests were sent: {sent:?}");
    }
}

#[tokio::test]
async fn a_ttl_above_seven_days_exits_2_before_anything_is_sent() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("capped", 2)).await;
    for ttl in ["10000y", "8d", "169h"] {
        let before = logged(&env);
        mc(
            &env,
            &["create", "deployment/capped", "--scale-down", "--ttl", ttl],
        )
        .await
        .code(2)
        .stderr_has(&["--ttl", "at most 7d (168h)"]);
        nothing_sent(&env, before, ttl);
    }
    assert_nothing_left(&env).await;
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "capped").await,
        2
    );
    let help = mc(&env, &["create", "--help"]).await;
    assert!(help.ok().contains("at most 7d (168h)"), "{}", help.stdout);

    // The cap itself is accepted, and what it writes reads back: status shows the session
    // expiring in 7 days, and delete --all ends it and restores the count.
    let doc: Value = serde_json::from_str(
        mc(
            &env,
            &[
                "create",
                "deployment/capped",
                "--scale-down",
                "--ttl",
                "7d",
                "-o",
                "json",
            ],
        )
        .await
        .ok(),
    )
    .unwrap();
    let time =
        |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).expect("RFC 3339");
    // The TTL counts from the confirmation, once the copy runs and its name is printed: a
    // moment after `created`.
    let ttl = time(&doc["expires"]) - time(&doc["created"]);
    assert!(
        ttl >= chrono::Duration::days(7)
            && ttl <= chrono::Duration::days(7) + chrono::Duration::seconds(60),
        "{ttl}"
    );
    let status: Value =
        serde_json::from_str(mc(&env, &["status", "-o", "json"]).await.ok()).unwrap();
    assert_eq!(status["items"][0]["expires"], doc["expires"], "{status}");
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "capped").await,
        0
    );
    mc(&env, &["delete", "--all"]).await.ok();
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "capped").await,
        2
    );
}

#[tokio::test]
async fn an_unknown_key_in_feature_copy_target_exits_2_naming_it() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("cfg", 2)).await;
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        (
            "mirrord.json",
            r#"{"target": "deployment/cfg", "feature": {"copy_target": {"scale_dwon": true}}}"#,
        ),
        (
            "mirrord.yaml",
            "target: deployment/cfg\nfeature:\n  copy_target:\n    enabled: true\n    scale_dwon: true\n",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let before = logged(&env);
        mc(
            &env,
            &["create", "--mirrord-config", path.to_str().unwrap()],
        )
        .await
        .code(2)
        .stderr_has(&["feature.copy_target", "unknown field `scale_dwon`", "scale_down"]);
        nothing_sent(&env, before, name);
    }
    assert_nothing_left(&env).await;
    assert_eq!(replicas(&env, "Deployment", "deployments", "cfg").await, 2);
}

#[tokio::test]
async fn bad_namespaces_and_names_exit_2_before_any_request() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("names", 1)).await;
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["-n", "x/../default", "status"],
            "invalid namespace \"x/../default\": may not contain '/'",
        ),
        (
            vec!["-n", "default?labelSelector=x", "status", "-o", "json"],
            "invalid namespace \"default?labelSelector=x\": a lowercase RFC 1123 label",
        ),
        (
            vec!["-n", "..", "delete", "--all"],
            "invalid namespace \"..\": may not be '..'",
        ),
        (
            vec!["-n", "Default", "create", "deployment/names"],
            "invalid namespace \"Default\": a lowercase RFC 1123 label",
        ),
        (
            vec!["-n", "a%2Fb", "gc"],
            "invalid namespace \"a%2Fb\": may not contain '%'",
        ),
        (
            vec!["delete", "Bad/Pod"],
            "invalid pod name \"Bad/Pod\": may not contain '/'",
        ),
        (
            vec!["delete", "BadPod"],
            "invalid pod name \"BadPod\": a lowercase RFC 1123 subdomain",
        ),
        (
            vec!["delete", "ok-name", ".."],
            "invalid pod name \"..\": may not be '..'",
        ),
        (
            vec!["delete", "--target", "deployment/Bad_Name"],
            "invalid target \"deployment/Bad_Name\"",
        ),
        (
            vec!["create", "deployment/x%2F..%2Fy"],
            "invalid target \"deployment/x%2F..%2Fy\"",
        ),
    ];
    for (args, message) in cases {
        let before = logged(&env);
        mc(&env, &args).await.code(2).stderr_has(&[message]);
        nothing_sent(&env, before, &args.join(" "));
    }

    // A namespace from --mirrord-config is checked the same way.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirrord.json");
    std::fs::write(
        &config,
        r#"{"target": {"path": "deployment/names", "namespace": "x/y"}}"#,
    )
    .unwrap();
    let before = logged(&env);
    mc(
        &env,
        &["create", "--mirrord-config", config.to_str().unwrap()],
    )
    .await
    .code(2)
    .stderr_has(&["invalid namespace \"x/y\": may not contain '/'"]);
    nothing_sent(&env, before, "--mirrord-config namespace");

    // And the kubeconfig context's own namespace.
    let mut kc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&env.kubeconfig).unwrap()).unwrap();
    for c in kc["contexts"].as_sequence_mut().expect("contexts") {
        c["context"]["namespace"] = serde_yaml_ng::Value::String("team/../default".into());
    }
    let bad_context = dir.path().join("bad-namespace.kubeconfig");
    std::fs::write(&bad_context, serde_yaml_ng::to_string(&kc).unwrap()).unwrap();
    let before = logged(&env);
    mc_with(&env, &["status"], |c| {
        c.env("KUBECONFIG", &bad_context);
    })
    .await
    .code(2)
    .stderr_has(&["invalid namespace \"team/../default\": may not contain '/'"]);
    nothing_sent(&env, before, "context namespace");
    // `-n ""` is no namespace at all: the context's, as in kubectl.
    assert_eq!(
        mc(&env, &["-n", "", "status"]).await.ok(),
        "No active copy targets\n"
    );
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn an_unwritable_emit_mirrord_config_path_is_found_before_anything_is_created() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("emit", 2)).await;
    let dir = tempfile::tempdir().unwrap();
    let no_dir = dir.path().join("no/such/dir/copy.json");
    let a_dir = dir.path().to_path_buf();
    for (path, args) in [
        (&no_dir, &["create", "deployment/emit", "--scale-down"][..]),
        (&a_dir, &["create", "deployment/emit", "--scale-down"]),
        (&no_dir, &["run", "deployment/emit", "--scale-down"]),
    ] {
        let mut all = args.to_vec();
        all.extend(["--emit-mirrord-config", path.to_str().unwrap()]);
        if all[0] == "run" {
            all.extend(["--", "true"]);
        }
        let before = logged(&env);
        mc(&env, &all)
            .await
            .code(2)
            .stderr_has(&["cannot write --emit-mirrord-config", path.to_str().unwrap()]);
        nothing_sent(&env, before, &all.join(" "));
    }
    assert_nothing_left(&env).await;
    assert_eq!(replicas(&env, "Deployment", "deployments", "emit").await, 2);

    // A writable path gets the configuration once the copy exists; a command that fails
    // before that leaves no empty file behind.
    let ok = dir.path().join("copy.json");
    let pod = create(
        &env,
        &[
            "deployment/emit",
            "--emit-mirrord-config",
            ok.to_str().unwrap(),
        ],
    )
    .await;
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&ok).unwrap()).unwrap();
    assert_eq!(
        written["target"]["path"],
        format!("pod/{pod}/container/app")
    );
    let unused = dir.path().join("unused.json");
    mc(
        &env,
        &[
            "create",
            "deployment/no-such-deployment",
            "--emit-mirrord-config",
            unused.to_str().unwrap(),
        ],
    )
    .await
    .code(3);
    assert!(!unused.exists(), "the checked file was removed again");
}
