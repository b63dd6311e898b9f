//! The plugin binary: every target kind, the copy rules seen on the created pod, `run` (exit
//! code, environment, cleanup on SIGTERM), scale-down conflict and unsupported kinds, and the
//! mirrord configuration file interop.

use crate::plugin_bin;

use std::process::{Output, Stdio};
use std::time::Duration;

use fakekube::harness::TestEnv;
use serde_json::Value;

use crate::scale_down_support::{
    copy_kubelet, cronjob, deployment, replicaset, rollout, statefulset,
};

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

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}", o.status.code(), err(o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

const PROBED: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: probed
spec:
  replicas: 1
  selector:
    matchLabels: {app: probed}
  template:
    metadata:
      labels: {app: probed, pod-template-hash: abc123}
    spec:
      initContainers:
        - name: init
          image: busybox
      containers:
        - name: app
          image: registry.k8s.io/pause:3.10
          livenessProbe: {tcpSocket: {port: 80}}
          readinessProbe: {tcpSocket: {port: 80}}
          startupProbe: {tcpSocket: {port: 80}}
        - name: sidecar
          image: registry.k8s.io/pause:3.10
"#;

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: lone
  labels: {app: lone}
spec:
  containers:
    - name: app
      image: registry.k8s.io/pause:3.10
"#;

const JOB: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: once
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: job
          image: busybox
"#;

#[tokio::test]
async fn every_target_kind() {
    let env = TestEnv::new().await;
    let _kubelet = copy_kubelet(&env);
    for yaml in [
        POD.to_string(),
        deployment("d", 1),
        statefulset("s", 1),
        replicaset("r", 1),
        rollout("ro", 1),
        JOB.to_string(),
        cronjob("cj"),
    ] {
        env.apply_yaml(&yaml).await;
    }
    for target in [
        "pod/lone",
        "deployment/d",
        "statefulset/s",
        "replicaset/r",
        "rollout/ro",
        "job/once",
        "cronjob/cj",
        "deploy/d/container/app",
    ] {
        let out = plugin(&env, &["create", target, "--no-wait", "-o", "json"]).await;
        let doc: Value = serde_json::from_str(&ok(&out)).expect(target);
        let pod = doc["copyPod"].as_str().unwrap();
        let json = env
            .get_pod(pod)
            .await
            .unwrap_or_else(|| panic!("{target}: no pod"));
        assert_eq!(
            json["metadata"]["ownerReferences"][0]["kind"], "ConfigMap",
            "{target}"
        );
        assert!(
            doc["target"]
                .as_str()
                .unwrap()
                .ends_with(target.rsplit('/').next().unwrap()),
            "{target}: {doc}"
        );
    }
    ok(&plugin(&env, &["delete", "--all"]).await);
    assert_eq!(
        ok(&plugin(&env, &["status"]).await),
        "No active copy targets\n"
    );
}

#[tokio::test]
async fn copy_rules_and_exclusions() {
    let env = TestEnv::new().await;
    env.apply_yaml(PROBED).await;
    let out = plugin(
        &env,
        &[
            "create",
            "deployment/probed",
            "--no-wait",
            "--exclude-container",
            "sidecar",
            "--exclude-init-container",
            "init",
        ],
    )
    .await;
    let pod = ok(&out).trim().to_string();
    let json = env.get_pod(&pod).await.unwrap();
    let containers = json["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{json}");
    assert_eq!(containers[0]["name"], "app");
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        assert!(containers[0][probe].is_null(), "{probe}: {json}");
    }
    assert!(
        json["spec"]["initContainers"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{json}"
    );
    assert!(
        json["metadata"]["labels"]["pod-template-hash"].is_null(),
        "{json}"
    );
    let owner = &json["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "ConfigMap");
    assert!(owner["name"]
        .as_str()
        .unwrap()
        .starts_with("mirrord-copy-session-"));

    let all = plugin(
        &env,
        &[
            "create",
            "deployment/probed",
            "--exclude-container",
            "sidecar",
            "--exclude-container",
            "app",
        ],
    )
    .await;
    assert_eq!(all.status.code(), Some(4), "{}", err(&all));
}

#[tokio::test]
async fn reuse_returns_the_same_copy() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("re", 1)).await;
    let _kubelet = copy_kubelet(&env);
    let a = ok(&plugin(&env, &["create", "deployment/re", "--no-wait"]).await);
    let b = ok(&plugin(&env, &["create", "deployment/re", "--no-wait", "--reuse"]).await);
    assert_eq!(a, b);
    let c = ok(&plugin(&env, &["create", "deployment/re", "--no-wait"]).await);
    assert_ne!(a, c);
}

#[tokio::test]
async fn scale_down_conflict_and_unsupported() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("sd", 2)).await;
    env.apply_yaml(POD).await;
    let _kubelet = copy_kubelet(&env);
    let pod = ok(&plugin(
        &env,
        &[
            "create",
            "deployment/sd",
            "--scale-down",
            "--timeout",
            "60s",
        ],
    )
    .await);
    let status = ok(&plugin(&env, &["status"]).await);
    assert!(
        status.contains(&format!("| {} |", pod.trim())) && status.contains("| *           |"),
        "{status}"
    );
    let again = plugin(
        &env,
        &[
            "create",
            "deployment/sd",
            "--scale-down",
            "--timeout",
            "60s",
        ],
    )
    .await;
    assert_eq!(again.status.code(), Some(9), "{}", err(&again));
    let unsupported = plugin(&env, &["create", "pod/lone", "--scale-down"]).await;
    assert_eq!(unsupported.status.code(), Some(4), "{}", err(&unsupported));
    ok(&plugin(&env, &["delete", "--target", "deployment/sd"]).await);
    assert_eq!(
        ok(&plugin(&env, &["status"]).await),
        "No active copy targets\n"
    );
}

#[tokio::test]
async fn run_passes_exit_code_and_environment_and_cleans_up() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("runme", 1)).await;
    let _kubelet = copy_kubelet(&env);
    let out = plugin(
        &env,
        &[
            "run",
            "deployment/runme",
            "--timeout",
            "60s",
            "--",
            "sh",
            "-c",
            "echo \"$MIRRORD_COPY_POD $MIRRORD_COPY_NAMESPACE $MIRRORD_COPY_TARGET $1\"; exit 3",
            "sh",
            "{pod}",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", err(&out));
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts.len(), 4, "{line}");
    assert!(parts[0].starts_with("runme-copy-"), "{line}");
    assert_eq!(parts[1], env.namespace);
    assert_eq!(parts[2], "deployment/runme");
    assert_eq!(parts[3], parts[0]);
    assert_eq!(
        ok(&plugin(&env, &["status"]).await),
        "No active copy targets\n"
    );
}

#[tokio::test]
async fn run_ends_the_session_on_sigterm() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("term", 1)).await;
    let _kubelet = copy_kubelet(&env);
    let mut c = tokio::process::Command::from(env.command(plugin_bin()));
    c.args([
        "run",
        "deployment/term",
        "--timeout",
        "60s",
        "--",
        "sleep",
        "60",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let child = c.spawn().unwrap();
    let pid = child.id().unwrap() as i32;
    env.wait_until("run's copy pod", Duration::from_secs(60), || async {
        (!env.list_pods("mirrord-copy.io/role=copy").await.is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc_kill(pid, 15) };
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("run exits after SIGTERM")
        .unwrap();
    assert_eq!(out.status.code(), Some(128 + 15), "{}", err(&out));
    assert_eq!(
        ok(&plugin(&env, &["status"]).await),
        "No active copy targets\n"
    );
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[tokio::test]
async fn mirrord_config_in_and_out() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("cfg", 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mirrord.toml");
    std::fs::write(
        &input,
        "target = \"deployment/cfg\"\n[feature.copy_target]\nenabled = true\nscale_down = false\n",
    )
    .unwrap();
    let emitted = dir.path().join("out.json");
    let out = plugin(
        &env,
        &[
            "create",
            "--no-wait",
            "--mirrord-config",
            input.to_str().unwrap(),
            "--emit-mirrord-config",
            emitted.to_str().unwrap(),
        ],
    )
    .await;
    let pod = ok(&out).trim().to_string();
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&emitted).unwrap()).unwrap();
    assert_eq!(doc["target"]["path"], format!("pod/{pod}"));
    assert_eq!(doc["target"]["namespace"], env.namespace.as_str());

    let yaml = dir.path().join("m.yaml");
    std::fs::write(&yaml, "target: {path: deployment/nope}\n").unwrap();
    let over = plugin(
        &env,
        &[
            "create",
            "deployment/cfg",
            "--no-wait",
            "--mirrord-config",
            yaml.to_str().unwrap(),
        ],
    )
    .await;
    ok(&over);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let b = plugin(&env, &["create", "--mirrord-config", bad.to_str().unwrap()]).await;
    assert_eq!(b.status.code(), Some(2), "{}", err(&b));
}
