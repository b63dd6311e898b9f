//! Talking to the cluster as kubectl does: `--request-timeout 0`, a KUBECONFIG
//! list with missing files, exec credential plugins that fail or hang, clean messages for
//! transport failures, no retry of a refused certificate, and a User-Agent and one field
//! manager on every request.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use fakekube::harness::TestEnv;

use crate::plugin_support::*;

/// The test's kubeconfig with `change` applied, written to `dir/name`.
fn kubeconfig_with(
    env: &TestEnv,
    dir: &Path,
    name: &str,
    change: impl FnOnce(&mut serde_yaml_ng::Value),
) -> PathBuf {
    let mut kc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&env.kubeconfig).unwrap()).unwrap();
    change(&mut kc);
    let path = dir.join(name);
    std::fs::write(&path, serde_yaml_ng::to_string(&kc).unwrap()).unwrap();
    path
}

/// Every user of the kubeconfig authenticates with an exec plugin running `script` (sh).
fn exec_kubeconfig(env: &TestEnv, dir: &Path, script: &str) -> PathBuf {
    kubeconfig_with(env, dir, "exec.kubeconfig", |kc| {
        let exec: serde_yaml_ng::Value = serde_yaml_ng::from_str(&format!(
            "exec:\n  apiVersion: client.authentication.k8s.io/v1\n  command: /bin/sh\n  args: ['-c', {script:?}]\n  interactiveMode: Never\n"
        ))
        .unwrap();
        for u in kc["users"].as_sequence_mut().expect("users") {
            u["user"] = exec.clone();
        }
    })
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "adds latency on the fake API server")]
async fn a_request_timeout_of_zero_means_no_timeout() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("slow", 1)).await;
    // Every answer takes a while: a zero deadline would fail every request.
    env.fake()
        .unwrap()
        .faults()
        .latency("*", "", Duration::from_millis(300));
    assert_eq!(
        mc(&env, &["status", "--request-timeout", "0"]).await.ok(),
        "No active copy targets\n"
    );
    let run = mc(
        &env,
        &["create", "deployment/slow", "--request-timeout", "0"],
    )
    .await;
    let pod = run.ok().trim().to_string();
    mc(&env, &["delete", &pod, "--request-timeout", "0"])
        .await
        .ok();
    env.fake().unwrap().faults().clear();
    assert_nothing_left(&env).await;
    let help = mc(&env, &["--help"]).await;
    assert!(
        help.ok().contains("0: no timeout, as in kubectl"),
        "{}",
        help.stdout
    );
}

#[tokio::test]
async fn files_that_kubeconfig_lists_but_do_not_exist_are_skipped() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let list = std::env::join_paths([missing.as_path(), env.kubeconfig.as_path()]).unwrap();
    let run = mc_with(&env, &["status"], |c| {
        c.env("KUBECONFIG", &list);
    })
    .await;
    assert_eq!(run.ok(), "No active copy targets\n");
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    // None of them exists: that is an error naming them.
    let other = dir.path().join("other.yaml");
    let none = std::env::join_paths([missing.as_path(), other.as_path()]).unwrap();
    mc_with(&env, &["status"], |c| {
        c.env("KUBECONFIG", &none);
    })
    .await
    .code(8)
    .stderr_has(&[
        "none of the files KUBECONFIG lists exists",
        missing.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    // An explicit --kubeconfig that does not exist is still an error.
    mc_with(
        &env,
        &["--kubeconfig", missing.to_str().unwrap(), "status"],
        |c| {
            c.env("KUBECONFIG", &list);
        },
    )
    .await
    .code(8)
    .stderr_has(&["missing.yaml"]);
}

#[tokio::test]
async fn a_failing_exec_credential_plugin_is_reported_as_kubectl_does() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = exec_kubeconfig(&env, dir.path(), "echo 'token expired' >&2; exit 3");
    let run = mc_with(&env, &["status"], |c| {
        c.env("KUBECONFIG", &kc);
    })
    .await;
    run.code(8).stderr_has(&[
        "error: cluster unreachable: getting credentials: exec: executable /bin/sh failed with exit code 3",
        "token expired",
    ]);
    for dump in ["Output {", "ExitStatus", "status:", "stdout: ["] {
        assert!(!run.stderr.contains(dump), "debug dump: {}", run.stderr);
    }
    // A plugin that is not there.
    let kc = kubeconfig_with(&env, dir.path(), "absent.kubeconfig", |kc| {
        for u in kc["users"].as_sequence_mut().unwrap() {
            u["user"] = serde_yaml_ng::from_str(
                "exec: {apiVersion: client.authentication.k8s.io/v1, command: /no/such/plugin, interactiveMode: Never}",
            )
            .unwrap();
        }
    });
    mc_with(&env, &["status"], |c| {
        c.env("KUBECONFIG", &kc);
    })
    .await
    .code(8)
    .stderr_has(&["getting credentials: exec: executable /no/such/plugin not found"]);
}

#[tokio::test]
async fn a_hanging_exec_credential_plugin_is_stopped_and_reported() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("plugin.pid");
    let kc = exec_kubeconfig(
        &env,
        dir.path(),
        &format!("echo $$ > {}; exec sleep 120", pid_file.display()),
    );
    let started = Instant::now();
    let run = mc_with(&env, &["status", "--request-timeout", "2s"], |c| {
        c.env("KUBECONFIG", &kc);
    })
    .await;
    let took = started.elapsed();
    run.code(8).stderr_has(&[
        "getting credentials: exec: executable /bin/sh did not answer within 2s",
        "--request-timeout",
    ]);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // The plugin was stopped, not left running.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let alive = std::fs::read_to_string(&stat)
        .ok()
        .and_then(|s| s.rsplit(") ").next().map(|rest| !rest.starts_with('Z')))
        .unwrap_or(false);
    assert!(!alive, "the plugin (pid {}) still runs", pid.trim());
}

#[tokio::test]
async fn an_unreachable_cluster_is_one_clean_error_without_library_logs() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = unreachable_kubeconfig(&env, dir.path());
    let run = mc_with(&env, &["status"], |c| {
        c.env("KUBECONFIG", &kc);
    })
    .await;
    run.code(8);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "the error and its hint only:\n{}",
        run.stderr
    );
    assert!(
        lines[0].starts_with("error: cluster unreachable: list configmaps: ")
            && lines[0].contains("Connection refused"),
        "{}",
        run.stderr
    );
    assert!(lines[1].starts_with("hint: "), "{}", run.stderr);
    for internal in ["ServiceError", "client error (", "ERROR", "HyperError"] {
        assert!(!run.stderr.contains(internal), "{internal}: {}", run.stderr);
    }
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server's certificate")]
async fn a_refused_server_certificate_is_not_retried() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["other-ca".to_string()]).unwrap();
    let kc = kubeconfig_with(&env, dir.path(), "other-ca.kubeconfig", |kc| {
        for c in kc["clusters"].as_sequence_mut().expect("clusters") {
            c["cluster"]["certificate-authority-data"] = serde_yaml_ng::Value::String(
                base64::engine::general_purpose::STANDARD.encode(other.cert.pem()),
            );
        }
    });
    // -v tells every retry: a refused connection is retried...
    let refused = unreachable_kubeconfig(&env, dir.path());
    mc_with(&env, &["status", "-v"], |c| {
        c.env("KUBECONFIG", &refused);
    })
    .await
    .code(8)
    .stderr_has(&["no response - retrying in", "(attempt 2 of 5)"]);
    // ... a refused certificate is not.
    let run = mc_with(&env, &["status", "-v"], |c| {
        c.env("KUBECONFIG", &kc);
    })
    .await;
    run.code(8).stderr_has(&[
        "error: cluster unreachable: list configmaps: invalid peer certificate: UnknownIssuer",
    ]);
    assert!(!run.stderr.contains("retrying"), "{}", run.stderr);
    assert!(!run.stderr.contains("ServiceError"), "{}", run.stderr);
}

/// kubectl's platform names (Go's GOOS/GOARCH).
fn go_platform() -> String {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("{os}/{arch}")
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "reads the fake API server's request log")]
async fn every_request_names_the_plugin_and_every_write_one_field_manager() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("ua", 2)).await;
    let fake = env.fake().unwrap();
    fake.request_log().clear();
    let pod = create(&env, &["deployment/ua", "--scale-down", "--ttl", "1h"]).await;
    // --reuse renews the session (a patch) and its lock (a replace).
    let again = create(
        &env,
        &["deployment/ua", "--scale-down", "--reuse", "--ttl", "2h"],
    )
    .await;
    assert_eq!(again, pod);
    mc(&env, &["status", "-o", "wide"]).await.ok();
    mc(&env, &["delete", &pod]).await.ok();
    mc(&env, &["gc"]).await.ok();
    let requests = fake.requests();
    let agent = format!(
        "kubectl-mirrord-copy/v{} ({})",
        env!("CARGO_PKG_VERSION"),
        go_platform()
    );
    for r in &requests {
        assert_eq!(r.user_agent, agent, "{} {}", r.method, r.path);
    }
    let writes: Vec<_> = requests
        .iter()
        .filter(|r| matches!(r.method.as_str(), "POST" | "PUT" | "PATCH"))
        .collect();
    assert!(writes.len() >= 8, "{writes:?}");
    for w in &writes {
        assert!(
            w.query
                .split('&')
                .any(|p| p == "fieldManager=kubectl-mirrord-copy"),
            "{} {}?{}",
            w.method,
            w.path,
            w.query
        );
    }
    assert_eq!(replicas(&env, "Deployment", "deployments", "ua").await, 2);
}
