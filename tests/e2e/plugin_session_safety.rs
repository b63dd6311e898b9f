//! Session safety (README "How it works", "Guarantees"): no lease decision trusts a machine's
//! clock (the binary runs under Debian's `faketime` with its clock minutes off), a `run`
//! session that loses its lease stops its command and exits 11, transient API failures are
//! retried, and `delete --all` ends only your own sessions.

use std::process::Stdio;
use std::time::Duration;

use fakekube::harness::TestEnv;
use fakekube::{Fault, FaultAction};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::plugin_support::*;

/// `faketime OFFSET kubectl-mirrord_copy ARGS`: the plugin with its clock moved by OFFSET
/// ("-3m", "+10m"). Fails with a hint where faketime is missing (.ci/run installs it).
fn skewed(env: &TestEnv, offset: &str, args: &[&str]) -> tokio::process::Command {
    let probe = std::process::Command::new("faketime")
        .args(["-f", "+0", "true"])
        .status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "these tests need Debian's faketime: apt-get install faketime (.ci/run does)"
    );
    let plugin = env.command(plugin_bin());
    let mut c = tokio::process::Command::new("faketime");
    c.arg("-f").arg(offset).arg(plugin.get_program()).args(args);
    for (k, v) in plugin.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.env("KUBECONFIG", without_certificate_times(env));
    c.kill_on_drop(true);
    c
}

/// The test's kubeconfig with `insecure-skip-tls-verify` in place of its CA. A client whose
/// clock is behind a server certificate's notBefore refuses it ("certificate not valid yet"),
/// as kubectl does, and a freshly made cluster's certificate is minutes old: what these tests
/// look at is the leases, which must follow the server's clock, not the TLS handshake.
fn without_certificate_times(env: &TestEnv) -> std::path::PathBuf {
    let mut kc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&env.kubeconfig).unwrap()).unwrap();
    for cluster in kc["clusters"].as_sequence_mut().expect("clusters") {
        let cluster = cluster["cluster"].as_mapping_mut().expect("cluster");
        cluster.remove("certificate-authority");
        cluster.remove("certificate-authority-data");
        cluster.insert("insecure-skip-tls-verify".into(), true.into());
    }
    let path = env.kubeconfig.with_file_name("skewed.kubeconfig");
    std::fs::write(&path, serde_yaml_ng::to_string(&kc).unwrap()).unwrap();
    path
}

/// `kubectl-mirrord_copy ARGS` running in the background, stderr piped, killed when dropped.
pub(crate) fn spawn_plugin(env: &TestEnv, args: &[&str]) -> tokio::process::Child {
    let mut c = tokio::process::Command::from(env.command(plugin_bin()));
    c.args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c.spawn().expect("spawn the plugin")
}

async fn output(mut c: tokio::process::Command) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .expect("finished in 120s")
        .expect("spawned");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The live sessions' copy pods in the test namespace.
async fn live_copies(env: &TestEnv) -> Vec<String> {
    env.list_pods("mirrord-copy.io/role=copy")
        .await
        .iter()
        // a deleted copy stays while its kubelet stops it: not live
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// A `run --scale-down` from a machine three minutes behind survives `gc` from one ten
/// minutes ahead, and that machine cannot take its lock over; a detached session made by a
/// machine ten minutes behind is not expired by a correct one.
#[tokio::test]
async fn skewed_clocks_change_no_lease_decision() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("q", 2)).await;
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let script = format!("echo up > {}; sleep 40", started.display());
    let mut run = skewed(
        &env,
        "-3m",
        &[
            "run",
            "deployment/q",
            "--scale-down",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    run.stdout(Stdio::piped()).stderr(Stdio::piped());
    let run = run.spawn().expect("spawn run");
    wait_file(&env, &started).await;
    assert_eq!(replicas(&env, "Deployment", "deployments", "q").await, 0);
    // Past the 12 s that, measured on skewed clocks, made gc end it on a real cluster.
    tokio::time::sleep(Duration::from_secs(13)).await;
    let gc = output(skewed(&env, "+10m", &["gc"])).await;
    gc.code(0);
    assert_eq!(
        live_copies(&env).await.len(),
        1,
        "gc ended a live session: {}",
        gc.stderr
    );
    assert_eq!(replicas(&env, "Deployment", "deployments", "q").await, 0);
    output(skewed(
        &env,
        "+10m",
        &["create", "deployment/q", "--scale-down"],
    ))
    .await
    .code(9);

    let done = tokio::time::timeout(Duration::from_secs(90), run.wait_with_output())
        .await
        .expect("run finished")
        .unwrap();
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(replicas(&env, "Deployment", "deployments", "q").await, 2);

    // Detached: expiry is server time + ttl, whoever's clock made it.
    let made = output(skewed(
        &env,
        "-10m",
        &["create", "deployment/q", "--ttl", "2m"],
    ))
    .await;
    let pod = made.ok().trim().to_string();
    mc(&env, &["gc"]).await.ok();
    assert_eq!(
        live_copies(&env).await,
        vec![pod.clone()],
        "expired too early"
    );
    mc(&env, &["delete", &pod]).await.ok();
    assert_nothing_left(&env).await;
}

/// Someone ends the session under a running command: `run` stops the command (SIGTERM) and
/// exits 11, saying why; the workload is restored by whoever ended it.
#[tokio::test]
async fn a_run_whose_session_is_ended_stops_its_command_and_exits_11() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("w", 2)).await;
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let stopped = dir.path().join("stopped");
    let script = format!(
        "trap 'echo TERM > {}; exit 143' TERM; echo up > {}; while :; do sleep 1; done",
        stopped.display(),
        started.display()
    );
    let run = spawn_plugin(
        &env,
        &[
            "run",
            "deployment/w",
            "--scale-down",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    wait_file(&env, &started).await;
    let pod = live_copies(&env).await.pop().expect("the copy");
    mc(&env, &["delete", &pod]).await.ok();
    assert_eq!(replicas(&env, "Deployment", "deployments", "w").await, 2);

    let done = tokio::time::timeout(Duration::from_secs(60), run.wait_with_output())
        .await
        .expect("run noticed within a heartbeat interval")
        .unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(11), "{stderr}");
    assert!(stderr.contains("error: session lost:"), "{stderr}");
    assert!(stderr.contains("no longer exists"), "{stderr}");
    assert!(stderr.contains("stopping the command"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&stopped).unwrap().trim(), "TERM");
    assert_nothing_left(&env).await;
}

/// Renewals that keep failing (every heartbeat write answered 500) stop the command before
/// the lease runs out; the session is still ended cleanly once the server answers again.
#[tokio::test]
#[cfg_attr(real_cluster, ignore = "injects faults: needs the fake API server")]
async fn renewals_failing_past_the_deadline_stop_the_command_with_11() {
    let env = TestEnv::new().await;
    let fake = env.fake().expect("the fake API server").clone();
    env.apply_yaml(&deployment("r", 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let script = format!("echo up > {}; sleep 300", started.display());
    let mut run = spawn_plugin(&env, &["run", "deployment/r", "--", "sh", "-c", &script]);
    wait_file(&env, &started).await;
    fake.faults().add(
        Fault::on(
            "PATCH",
            "/configmaps/mirrord-copy-session-",
            FaultAction::Fail(fakekube::faults::status_error(500)),
        )
        .always(),
    );
    let mut lines = BufReader::new(run.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let lost = tokio::time::timeout(Duration::from_secs(90), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line.clone());
            if line.contains("the session was lost") {
                return;
            }
        }
    })
    .await;
    fake.faults().clear();
    assert!(lost.is_ok(), "no loss reported: {seen:#?}");
    assert!(
        seen.iter()
            .any(|l| l.contains("heartbeat failed, retrying")),
        "retries are reported: {seen:#?}"
    );
    let rest: Vec<String> = {
        let mut rest = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push(line);
        }
        rest
    };
    let status = run.wait().await.unwrap();
    assert_eq!(status.code(), Some(11), "{seen:#?}\n{rest:#?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("could not be renewed for 4")),
        "{rest:#?}"
    );
    assert_nothing_left(&env).await;
}

/// Throttling, an unavailable server and a dropped connection are retried: `create` succeeds.
#[tokio::test]
#[cfg_attr(real_cluster, ignore = "injects faults: needs the fake API server")]
async fn transient_failures_are_retried() {
    let env = TestEnv::new().await;
    let fake = env.fake().expect("the fake API server");
    env.apply_yaml(&deployment("t", 1)).await;
    fake.faults().add(
        Fault::on(
            "POST",
            "/pods",
            FaultAction::Fail(fakekube::faults::status_error(503)),
        )
        .times(2),
    );
    fake.faults().add(Fault::on(
        "POST",
        "/configmaps",
        FaultAction::Fail(fakekube::faults::status_error(429)),
    ));
    fake.faults().drop_nth("GET", "/deployments/t", 1);
    fake.request_log().clear();
    let pod = create(&env, &["deployment/t"]).await;
    let posts = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pods"))
        .map(|r| r.status)
        .collect::<Vec<_>>();
    assert_eq!(posts, vec![503, 503, 201]);
    mc(&env, &["delete", &pod]).await.ok();
    assert_nothing_left(&env).await;
}

/// `delete --all` ends only your sessions and lists the others; `--all-owners` ends them too.
#[tokio::test]
async fn delete_all_ends_only_your_sessions_unless_all_owners() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("a", 1)).await;
    env.apply_yaml(&deployment("b", 1)).await;
    let kc = env
        .kubeconfig_with_roles("teammate", include_str!("../../plugin-manifest/role.yaml"))
        .await;
    let elsewhere = tempfile::tempdir().unwrap();
    let teammate = |c: &mut tokio::process::Command| {
        c.env("KUBECONFIG", &kc)
            .env("MIRRORD_COPY_STATE_DIR", elsewhere.path());
    };
    let theirs = mc_with(&env, &["create", "deployment/b"], teammate).await;
    let theirs = theirs.ok().trim().to_string();
    let mine = create(&env, &["deployment/a"]).await;

    let run = mc(&env, &["delete", "--all"]).await;
    run.ok();
    run.stderr_has(&[
        "skipped 1 session(s) of other owners (--all-owners ends them too):",
        &format!("deployment/b pod/{theirs}"),
        &format!("owner system:serviceaccount:{}:teammate", env.namespace),
    ]);
    assert!(
        run.stdout.contains(&mine) && !run.stdout.contains(&theirs),
        "{}",
        run.stdout
    );
    assert_eq!(live_copies(&env).await, vec![theirs.clone()]);
    mc(&env, &["delete", "--all", "--all-owners"]).await.ok();
    wait_pod_gone(&env, &theirs).await;
    assert_nothing_left(&env).await;
}

/// Someone scales the workload during a `run --scale-down`: `run` warns naming the field
/// manager, `status -o json` records it, and restore keeps their count.
#[tokio::test]
async fn someone_else_scaling_during_a_run_is_named() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("s", 2)).await;
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let script = format!("echo up > {}; sleep 35", started.display());
    let mut run = spawn_plugin(
        &env,
        &[
            "run",
            "deployment/s",
            "--scale-down",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    wait_file(&env, &started).await;
    assert_eq!(replicas(&env, "Deployment", "deployments", "s").await, 0);
    // A GitOps controller puts its count back (server-side apply, its own field manager).
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(env.client.clone(), &env.namespace);
    api.patch(
        "s",
        &kube::api::PatchParams::apply("gitops-bot").force(),
        &kube::api::Patch::Apply(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "s"},
            "spec": {"replicas": 3}
        })),
    )
    .await
    .unwrap();
    let mut lines = BufReader::new(run.stderr.take().unwrap()).lines();
    let warned = tokio::time::timeout(Duration::from_secs(40), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("was scaled to 3 by gitops-bot") {
                return line;
            }
        }
        String::new()
    })
    .await
    .expect("warned within a heartbeat");
    assert!(warned.starts_with("warning: Deployment"), "{warned}");
    // A breadcrumb on the workload for whoever looks without the plugin.
    let interference = env
        .wait_until(
            "the Interference Event",
            std::time::Duration::from_secs(20),
            || async {
                let events = env.list_json("", "v1", "Event", "events", "").await;
                events
                    .into_iter()
                    .find(|e| e["reason"] == "MirrordCopyInterference")
            },
        )
        .await;
    assert_eq!(interference["involvedObject"]["name"], "s");
    assert_eq!(interference["type"], "Warning");
    assert!(
        interference["message"]
            .as_str()
            .is_some_and(|m| m.contains("scaled to 3 by gitops-bot")),
        "{interference}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(mc(&env, &["status", "-o", "json"]).await.ok()).unwrap();
    let note = doc["items"][0]["interference"].as_str().unwrap_or_default();
    assert!(note.contains("scaled to 3 by gitops-bot"), "{doc}");
    let status = run.wait().await.unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "s").await,
        3,
        "their count is kept"
    );
    assert_nothing_left(&env).await;
}
