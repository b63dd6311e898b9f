//! The plugin binary as a user runs it: create / status / delete, output formats, dry-run,
//! error exit codes, version and completion. Runs against the fake or a real cluster.

use crate::plugin_bin;

use std::process::Output;
use std::time::Duration;

use fakekube::harness::TestEnv;
use serde_json::Value;

use crate::scale_down_support::{copy_kubelet, deployment};

async fn plugin(env: &TestEnv, args: &[&str]) -> Output {
    let mut c = tokio::process::Command::from(env.command(plugin_bin()));
    c.args(args).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .expect("plugin timed out")
        .expect("spawn plugin")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        stderr(o)
    );
    stdout(o)
}

#[tokio::test]
async fn status_with_no_sessions() {
    let env = TestEnv::new().await;
    let out = plugin(&env, &["status"]).await;
    assert_eq!(ok(&out), "No active copy targets\n");
}

#[tokio::test]
async fn create_status_delete_roundtrip() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("web", 1)).await;
    let _kubelet = copy_kubelet(&env);
    let out = plugin(&env, &["create", "deployment/web", "--timeout", "60s"]).await;
    let pod = ok(&out).trim().to_string();
    assert!(pod.starts_with("web-copy-"), "{pod}");
    let json = env.get_pod(&pod).await.expect("copy pod exists");
    let owner = &json["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "ConfigMap");
    assert_eq!(owner["controller"], true);

    let status = ok(&plugin(&env, &["status"]).await);
    let ns = &env.namespace;
    let t = "deployment/web";
    let (w1, w2, w3) = (t.len().max(15), ns.len().max(9), pod.len().max(13));
    let sep = format!(
        "+{}+{}+{}+-------------+\n",
        "-".repeat(w1 + 2),
        "-".repeat(w2 + 2),
        "-".repeat(w3 + 2)
    );
    let expected = format!(
        "Active Copy Targets:\n{sep}| {:<w1$} | {:<w2$} | {:<w3$} | Scale Down? |\n{sep}| {:<w1$} | {:<w2$} | {:<w3$} |             |\n{sep}",
        "Original Target", "Namespace", "Copy Pod Name", t, ns, pod
    );
    assert_eq!(status, expected);

    let doc: Value = serde_json::from_str(&ok(&plugin(&env, &["status", "-o", "json"]).await))
        .expect("status -o json");
    assert!(doc.to_string().contains(&pod), "{doc}");

    let del = plugin(&env, &["delete", &pod]).await;
    ok(&del);
    env.wait_until("copy pod gone", Duration::from_secs(30), || async {
        env.get_pod(&pod).await.is_none().then_some(())
    })
    .await;
    assert_eq!(
        ok(&plugin(&env, &["status"]).await),
        "No active copy targets\n"
    );
    // Idempotent.
    let again = plugin(&env, &["delete", &pod]).await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stderr(&again).contains(&format!(
            "pod \"{pod}\" has no active copy session (already ended)"
        )),
        "{}",
        stderr(&again)
    );
}

#[tokio::test]
async fn create_output_formats_and_state_file() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("fmt", 1)).await;
    let out = ok(&plugin(&env, &["create", "deploy/fmt", "--no-wait", "-o", "json"]).await);
    let doc: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["apiVersion"], "mirrord-copy.io/v1");
    assert_eq!(doc["kind"], "CopySession");
    assert_eq!(doc["namespace"], env.namespace.as_str());
    assert_eq!(doc["target"], "deployment/fmt");
    assert_eq!(doc["scaleDown"], false);
    let pod = doc["copyPod"].as_str().unwrap().to_string();
    assert!(env.get_pod(&pod).await.is_some());

    let name = ok(&plugin(&env, &["create", "deploy/fmt", "--no-wait", "-o", "name"]).await);
    assert!(name.starts_with("pod/fmt-copy-"), "{name}");
    let yaml = ok(&plugin(&env, &["create", "deploy/fmt", "--no-wait", "-o", "yaml"]).await);
    let y: Value = serde_yaml::from_str(&yaml).expect("yaml");
    assert_eq!(y["kind"], "CopySession");

    let state = std::fs::read_to_string(env.state_dir.join("sessions.json")).expect("state file");
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["version"], 1);
    assert_eq!(state["sessions"].as_array().unwrap().len(), 3, "{state}");

    let wide = ok(&plugin(&env, &["status", "-o", "wide"]).await);
    assert!(wide.contains("Yours") && wide.contains("yes"), "{wide}");

    ok(&plugin(&env, &["delete", "--all"]).await);
    let state = std::fs::read_to_string(env.state_dir.join("sessions.json")).unwrap();
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["sessions"].as_array().unwrap().len(), 0, "{state}");
}

#[tokio::test]
async fn dry_run_creates_nothing() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("dry", 2)).await;
    let out = ok(&plugin(&env, &["create", "deployment/dry", "--dry-run=client"]).await);
    let pod: Value = serde_yaml::from_str(&out).expect("pod yaml");
    assert_eq!(pod["kind"], "Pod");
    assert!(env.list_pods("mirrord-copy.io/role=copy").await.is_empty());
    assert_eq!(
        ok(&plugin(&env, &["status"]).await),
        "No active copy targets\n"
    );
}

#[tokio::test]
async fn error_exit_codes() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("present", 1)).await;
    let bad = plugin(&env, &["create", "nonsense"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("error:"), "{}", stderr(&bad));

    let missing = plugin(&env, &["create", "deployment/presnt", "--no-wait"]).await;
    assert_eq!(missing.status.code(), Some(3), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("present"), "{}", stderr(&missing));

    let bad_flag = plugin(&env, &["create", "deployment/present", "--ttl", "soon"]).await;
    assert_eq!(bad_flag.status.code(), Some(2), "{}", stderr(&bad_flag));

    let unknown = plugin(&env, &["frobnicate"]).await;
    assert_eq!(unknown.status.code(), Some(2));
}

#[tokio::test]
async fn unreachable_cluster_exits_8() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kc");
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: u\n  user: {token: x}\ncontexts:\n- name: x\n  context: {cluster: c, user: u, namespace: default}\ncurrent-context: x\n",
    )
    .unwrap();
    let mut c = tokio::process::Command::from(env.command(plugin_bin()));
    c.env("KUBECONFIG", &kc)
        .args(["status", "--request-timeout", "3s"]);
    let out = c.output().await.unwrap();
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    let mut v = tokio::process::Command::from(env.command(plugin_bin()));
    v.env("KUBECONFIG", &kc).args(["version", "-o", "json"]);
    let out = v.output().await.unwrap();
    let doc: Value = serde_json::from_str(&ok(&out)).expect("version json");
    assert!(doc.to_string().contains("unreachable"), "{doc}");
}

#[tokio::test]
async fn version_and_completion() {
    let env = TestEnv::new().await;
    let v = ok(&plugin(&env, &["version"]).await);
    assert!(v.contains(env!("CARGO_PKG_VERSION")), "{v}");
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let c = ok(&plugin(&env, &["completion", shell]).await);
        assert!(c.contains("mirrord"), "{shell}: {c}");
    }
}

#[tokio::test]
async fn corrupt_state_file_is_set_aside_not_fatal() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("cor", 1)).await;
    std::fs::write(env.state_dir.join("sessions.json"), "{garbage").unwrap();
    let out = plugin(&env, &["create", "deployment/cor", "--no-wait"]).await;
    ok(&out);
    assert!(stderr(&out).contains("warning:"), "{}", stderr(&out));
    let aside = std::fs::read_dir(&env.state_dir)
        .unwrap()
        .flatten()
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("sessions.json.corrupt-")
        });
    assert!(aside, "corrupt file not moved aside");
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(env.state_dir.join("sessions.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["sessions"].as_array().unwrap().len(), 1, "{state}");
}

#[tokio::test]
async fn status_many_sessions_sorted_no_colour() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("aa", 1)).await;
    env.apply_yaml(&deployment("bbbbbbbbbbbbbbbbbbbbbbbb", 1))
        .await;
    let a = ok(&plugin(&env, &["create", "deployment/aa", "--no-wait"]).await);
    let b = ok(&plugin(
        &env,
        &["create", "deploy/bbbbbbbbbbbbbbbbbbbbbbbb", "--no-wait"],
    )
    .await);
    let status = ok(&plugin(&env, &["status"]).await);
    assert!(
        !status.contains('\u{1b}'),
        "colour with NO_COLOR: {status:?}"
    );
    let lines: Vec<&str> = status.lines().collect();
    assert_eq!(lines.len(), 8, "{status}"); // a rule under every row, as the operator prints
    assert_eq!(lines[0], "Active Copy Targets:");
    let width = lines[1].len();
    assert!(lines[1..].iter().all(|l| l.len() == width), "{status}");
    assert!(
        status.contains(a.trim()) && status.contains(b.trim()),
        "{status}"
    );
    let all = ok(&plugin(&env, &["status", "-A"]).await);
    assert!(all.contains(a.trim()) && all.contains(b.trim()), "{all}");
}
