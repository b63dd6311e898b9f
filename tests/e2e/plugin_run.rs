//! `run`: the command's exit code, its environment and `{pod}`, the session ended afterwards,
//! and SIGTERM forwarded to the command with the session (and scale-down) undone.

use std::process::Stdio;
use std::time::Duration;

use fakekube::harness::TestEnv;

use crate::plugin_support::*;

#[tokio::test]
async fn exit_code_environment_and_cleanup() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("api", 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let script = r#"printf '%s\n%s\n%s\n%s\n' "$MIRRORD_COPY_POD" "$MIRRORD_COPY_NAMESPACE" "$MIRRORD_COPY_TARGET" "{pod}" > "$OUT.tmp"
"$PLUGIN" status -o wide >> "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
exit 7"#;
    let run = mc_with(
        &env,
        &["run", "deploy/api/container/app", "--", "sh", "-c", script],
        |c| {
            c.env("OUT", &report).env("PLUGIN", plugin_bin());
        },
    )
    .await;
    run.code(7);
    assert_eq!(run.stdout.lines().count(), 0, "{}", run.stdout);
    let text = std::fs::read_to_string(&report).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let pod = lines[0];
    assert!(pod.starts_with("api-copy-"), "{text}");
    assert_eq!(lines[1], env.namespace);
    assert_eq!(lines[2], "deployment/api/container/app");
    assert_eq!(lines[3], pod, "{{pod}} replaced in the arguments");
    // While it ran: an attached session with no expiry, the copy Running, and it was ours.
    let rows = table_rows(&lines[4..].join("\n"));
    assert_eq!(rows.len(), 1, "{text}");
    assert_eq!(rows[0][0], "deployment/api/container/app");
    assert_eq!(rows[0][2], pod);
    assert_eq!(rows[0][7], "Running");
    assert_eq!(rows[0][8], "placeholder in app");
    assert_eq!(rows[0][9], "while attached");
    assert_eq!(rows[0][10], "yes");
    // Afterwards: ended.
    wait_pod_gone(&env, pod).await;
    assert_nothing_left(&env).await;
    assert!(state_sessions(&env).is_empty());
    assert_eq!(mc(&env, &["status"]).await.ok(), "No active copy targets\n");
}

#[tokio::test]
async fn success_and_a_missing_command() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("api", 2)).await;
    mc(
        &env,
        &["run", "deployment/api", "--scale-down", "--", "true"],
    )
    .await
    .code(0);
    assert_eq!(replicas(&env, "Deployment", "deployments", "api").await, 2);
    mc(
        &env,
        &["run", "deployment/api", "--", "/nonexistent/command"],
    )
    .await
    .code(2)
    .stderr_has(&["cannot run", "/nonexistent/command"]);
    env.wait_until("sessions ended", Duration::from_secs(30), || async {
        (session_config_maps(&env, &env.namespace).await.is_empty()
            && env.list_pods("mirrord-copy.io/role=copy").await.is_empty())
        .then_some(())
    })
    .await;
    // A command is required.
    mc(&env, &["run", "deployment/api"]).await.code(2);
}

/// Starts `run TARGET --scale-down -- sh -c SCRIPT`, waits for the script's `started` file,
/// checks the session is live, sends SIGTERM to the plugin alone; its output.
async fn run_and_terminate(env: &TestEnv, script: &str) -> (Run, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = tokio::process::Command::from(env.command(plugin_bin()));
    c.args([
        "run",
        "deployment/worker",
        "--scale-down",
        "--",
        "sh",
        "-c",
        script,
    ])
    .env("DIR", dir.path())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let child = c.spawn().expect("spawn run");
    let pid = child.id().unwrap() as libc::pid_t;
    let pod = wait_file(env, &dir.path().join("started")).await;
    let pod = pod.trim().to_string();
    assert!(
        env.get_pod(&pod).await.is_some(),
        "copy {pod} exists while running"
    );
    assert_eq!(
        replicas(env, "Deployment", "deployments", "worker").await,
        0
    );
    // SAFETY: kill(2) on the plugin process we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("run ends after SIGTERM")
        .unwrap();
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (run, pod, dir)
}

async fn assert_session_ended(env: &TestEnv, pod: &str) {
    assert_eq!(
        replicas(env, "Deployment", "deployments", "worker").await,
        3,
        "restored"
    );
    wait_pod_gone(env, pod).await;
    assert_nothing_left(env).await;
    assert!(state_sessions(env).is_empty());
}

#[tokio::test]
async fn sigterm_is_forwarded_and_the_session_ends_with_the_commands_code() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("worker", 3)).await;
    let script = r#"trap 'echo term > "$DIR/term"; exit 42' TERM
echo "$MIRRORD_COPY_POD" > "$DIR/started.tmp" && mv "$DIR/started.tmp" "$DIR/started"
while :; do sleep 0.1; done"#;
    let (run, pod, dir) = run_and_terminate(&env, script).await;
    run.code(42);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("term")).unwrap(),
        "term\n",
        "the command got SIGTERM"
    );
    assert_session_ended(&env, &pod).await;
}

#[tokio::test]
async fn sigterm_kills_a_command_that_does_not_handle_it_exit_143() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("worker", 3)).await;
    let script = r#"echo "$MIRRORD_COPY_POD" > "$DIR/started.tmp" && mv "$DIR/started.tmp" "$DIR/started"
exec sleep 60"#;
    let (run, pod, _dir) = run_and_terminate(&env, script).await;
    run.code(128 + 15);
    assert_session_ended(&env, &pod).await;
}
