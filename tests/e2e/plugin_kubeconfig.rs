//! Choosing the cluster as kubectl does: KUBECONFIG listing several files (merged, the first
//! file's current-context wins), --context, --kubeconfig, and `gc -o json` on the result.
//! Works against the fake or a real cluster (the extra context points at a closed port).

use crate::plugin_bin;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use fakekube::harness::TestEnv;
use serde_json::Value;

/// A second kubeconfig file holding only a context `dead` on a port nothing listens on, and
/// no current-context, so merging it after the test's own file changes nothing by default.
fn write_dead_context(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("dead.kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dead\n  cluster: {server: 'https://127.0.0.1:1'}\n\
         users:\n- name: dead\n  user: {token: nope}\ncontexts:\n- name: dead\n  context: {cluster: dead, user: dead, namespace: default}\n",
    )
    .unwrap();
    path
}

async fn run(env: &TestEnv, kubeconfig_var: Option<&str>, args: &[&str]) -> Output {
    let mut c = tokio::process::Command::from(env.command(plugin_bin()));
    if let Some(v) = kubeconfig_var {
        c.env("KUBECONFIG", v);
    }
    c.args(args).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .expect("plugin timed out")
        .expect("spawn plugin")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[tokio::test]
async fn kubeconfig_with_several_files_and_context_selection() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let dead = write_dead_context(dir.path());
    let own = env.kubeconfig.to_str().unwrap().to_string();
    let merged = std::env::join_paths([dead.as_path(), env.kubeconfig.as_path()])
        .unwrap()
        .into_string()
        .unwrap();

    // The dead file first has no current-context: the test's file provides it.
    let out = run(&env, Some(&merged), &["status"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "No active copy targets\n");

    // --context picks the merged-in context: its server does not answer -> exit 8.
    let out = run(&env, Some(&merged), &["--context", "dead", "status"]).await;
    assert_eq!(out.status.code(), Some(8), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cluster unreachable"));

    // An unknown context is a usage error naming the known ones.
    let out = run(&env, Some(&merged), &["--context", "nope", "status"]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("\"nope\"") && err.contains("dead"), "{err}");

    // --kubeconfig wins over KUBECONFIG.
    let out = run(
        &env,
        Some(dead.to_str().unwrap()),
        &["--kubeconfig", &own, "status"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A missing kubeconfig is "unreachable" with a hint, not a crash.
    let out = run(
        &env,
        None,
        &["--kubeconfig", "/nonexistent/kubeconfig", "status"],
    )
    .await;
    assert_eq!(out.status.code(), Some(8));
    assert!(text(&out.stderr).contains("--kubeconfig"));
}

#[tokio::test]
async fn gc_reports_as_json_and_yaml() {
    let env = TestEnv::new().await;
    let out = run(&env, None, &["gc", "-o", "json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("gc -o json is JSON");
    for key in [
        "endedSessions",
        "restored",
        "deleted",
        "unpaused",
        "skipped",
    ] {
        assert!(report[key].is_array(), "{key} missing: {report}");
    }
    let out = run(&env, None, &["gc", "-o", "yaml"]).await;
    assert!(out.status.success());
    let report: Value = serde_yaml_ng::from_slice(&out.stdout).expect("gc -o yaml is YAML");
    assert!(report["endedSessions"].is_array());
    let out = run(&env, None, &["gc"]).await;
    assert_eq!(text(&out.stdout), "nothing to collect\n");
}
