//! The plugin binary with `--scale-down`: 20 concurrent `create` processes, and the process
//! SIGKILLed after each step of create, then `gc` restoring the exact count.

use std::process::{Output, Stdio};
use std::time::Duration;

use fakekube::harness::TestEnv;
use mirrord_copy_lock::LockRecord;

use mirrord_copy_testkit::manifests::plain::deployment;
use mirrord_copy_testkit::scale_down::*;

use crate::plugin_bin;

/// The plugin binary with `args`, its output captured, killed when dropped.
fn plugin(env: &TestEnv, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::from(env.command(plugin_bin()));
    c.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Asserts the process exited 0, showing its stderr otherwise.
fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn twenty_concurrent_create_processes_one_winner() {
    let env = TestEnv::new().await;
    let rs = deployment_x_and_replicaset(&env, 3).await;
    let _kubelet = copy_kubelet(&env);
    let runs = futures::future::join_all((0..20).map(|i| {
        let target = racer_target(i, &rs);
        plugin(
            &env,
            &["create", &target, "--scale-down", "--timeout", "60s"],
        )
        .output()
    }))
    .await;
    let codes: Vec<i32> = runs
        .iter()
        .map(|r| r.as_ref().unwrap().status.code().unwrap_or(-1))
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 9).count(), 19, "{codes:?}");
    assert_eq!(sessions(&env).await.len(), 1);
    assert_eq!(locks(&env).await.len(), 1);
    assert_eq!(deployment_replicas(&env, "x").await, 0);
    // The winner is undisturbed: its copy pod is the only one, alive, and its session holds
    // the lock.
    let (winner_index, winner) = runs
        .iter()
        .flatten()
        .enumerate()
        .find(|(_, o)| o.status.success())
        .unwrap();
    // Either form may win the race; status shows the target as the winner gave it.
    let winner_target = racer_target(winner_index, &rs);
    let pod = String::from_utf8_lossy(&winner.stdout).trim().to_string();
    let copies = env.list_pods("mirrord-copy.io/role=copy").await;
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0]["metadata"]["name"], pod.as_str(), "{copies:?}");
    assert!(copies[0]["metadata"]["deletionTimestamp"].is_null());
    let record = lock_record(&env).await.unwrap();
    assert_eq!(record.copy_pod, pod);
    assert_eq!(record.original_replicas, 3);
    assert_eq!(
        scaled_down_by(&env, "x").await.as_deref(),
        Some(lock_record(&env).await.unwrap().holder_session.as_str())
    );
    let status = plugin(&env, &["status"]).output().await.unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table.contains(&winner_target) && table.contains('*'),
        "{table}"
    );
    let end = plugin(&env, &["delete", &pod]).output().await.unwrap();
    assert_success(&end);
    assert_eq!(deployment_replicas(&env, "x").await, 3);
    assert!(locks(&env).await.is_empty());
}

/// Has `create` got as far as step `step`?
async fn reached(env: &TestEnv, step: usize, name: &str) -> bool {
    match step {
        0 => lock_record(env).await.is_some(),
        1 => !env.list_pods("mirrord-copy.io/role=copy").await.is_empty(),
        2 => scaled_down_by(env, name).await.is_some(),
        _ => deployment_replicas(env, name).await == 0,
    }
}

/// The record of the first lock in the test namespace, if any.
async fn lock_record(env: &TestEnv) -> Option<LockRecord> {
    locks(env).await.first().map(parse_lock)
}

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server")]
async fn sigkill_after_each_step_of_create_then_gc_restores_the_exact_count() {
    let env = TestEnv::new().await;
    // Holding a step open needs the fake's latency injection and kubelet switch.
    let fake = env.fake().expect("fake API server");
    // Short: a held write still lands after the kill (as one in flight may on a real server);
    // gc runs once it has.
    let hold = Duration::from_secs(3);
    for step in 0..4 {
        let name = format!("k{step}");
        env.apply_yaml(&deployment(&name, 3)).await;
        // Hold the write after the step open, so the kill lands exactly there.
        let kubelet = match step {
            0 => {
                fake.faults().latency("POST", "/pods", hold);
                None
            }
            1 => {
                // No kubelet: the copy never becomes Ready.
                assert!(fake.controllers().set("kubelet", false));
                None
            }
            2 => {
                // The zero and its record, in flight.
                fake.faults()
                    .latency("PATCH", &format!("/deployments/{name}"), hold);
                Some(copy_kubelet(&env))
            }
            _ => Some(copy_kubelet(&env)),
        };
        let mut child = plugin(
            &env,
            &[
                "create",
                &format!("deployment/{name}"),
                "--scale-down",
                "--ttl",
                "1s",
                "--timeout",
                "60s",
            ],
        )
        .spawn()
        .unwrap();
        env.wait_until("the step", Duration::from_secs(20), || async {
            reached(&env, step, &name).await.then_some(())
        })
        .await;
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
        drop(kubelet);
        fake.faults().clear();
        fake.controllers().set("kubelet", true);
        // A write held open when the process died still lands within `hold` of reaching the
        // server (which was before the kill): wait that server-side timer out, so gc sees
        // the state the dead process left.
        tokio::time::sleep(hold + Duration::from_secs(1)).await;
        let gc = plugin(&env, &["gc"]).output().await.unwrap();
        assert_success(&gc);
        assert_eq!(
            deployment_replicas(&env, &name).await,
            3,
            "killed after step {step}"
        );
        assert!(locks(&env).await.is_empty(), "step {step}");
        assert_eq!(scaled_down_by(&env, &name).await, None);
    }
}
