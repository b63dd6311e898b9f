//! `--replace-one`: the workload runs N-1 replicas while the copy lives and N again after,
//! through the same lock, fence and way back as `--scale-down`. Refusals first (nothing is
//! written), then a session end to end, a crash repaired by gc, someone else's count kept, a
//! second session refused, and a StatefulSet whose copy takes the highest ordinal's claims.

use std::time::Duration;

use fakekube::harness::TestEnv;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::plugin_statefulset::{running_db, volume};
use crate::plugin_support::*;

const ORIGINAL: &str = "mirrord-copy.io/original-replicas";
const SCALED_TO: &str = "mirrord-copy.io/scaled-to";
const SCALED_DOWN_BY: &str = "mirrord-copy.io/scaled-down-by";
const NOTE: &str = "mirrord-copy.io/note";

fn lock_name(name: &str) -> String {
    format!("mirrord-copy-lock-deployment-{name}")
}

async fn lock_data(
    env: &TestEnv,
    name: &str,
) -> Option<std::collections::BTreeMap<String, String>> {
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    cms.get_opt(&lock_name(name))
        .await
        .expect("GET the lock")
        .map(|cm| cm.data.unwrap_or_default())
}

/// Sets the Deployment's count, as a person with `kubectl scale` would.
async fn scale(env: &TestEnv, name: &str, to: i32) {
    let ar = kube::discovery::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("apps", "v1", "Deployment"),
        "deployments",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &env.namespace, &ar);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": to}})),
    )
    .await
    .expect("scale the deployment");
}

/// Waits until `n` of the workload's own pods (not the copy) are left.
async fn wait_originals(env: &TestEnv, app: &str, n: usize) {
    let selector = format!("app={app},!mirrord-copy.io/role");
    env.wait_until(
        &format!("{n} pods of {app} besides the copy"),
        Duration::from_secs(90),
        || async {
            let pods = env.list_pods(&selector).await;
            let live = pods
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .count();
            (live == n).then_some(())
        },
    )
    .await;
}

fn hpa(name: &str) -> String {
    format!(
        r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {name}-hpa
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
  minReplicas: 3
  maxReplicas: 5
  metrics:
    - type: Resource
      resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 80}}}}
"#
    )
}

/// Every refusal exits before anything is written: no session or lock, the count untouched.
#[tokio::test]
async fn refusals_write_nothing() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("one", 1)).await;
    env.apply_yaml(&deployment("none", 0)).await;
    env.apply_yaml(&deployment("auto", 3)).await;
    env.apply_yaml(&hpa("auto")).await;
    env.apply_yaml(&cronjob("nightly")).await;
    env.apply_yaml(&job("migrate")).await;

    // Both flags: a usage error, before any request.
    if let Some(fake) = env.fake() {
        fake.request_log().clear();
    }
    for target in ["deployment/one", "deployment/auto"] {
        mc(&env, &["create", target, "--scale-down", "--replace-one"])
            .await
            .code(2)
            .stderr_has(&["--replace-one", "cannot be used with", "--scale-down"]);
        mc(
            &env,
            &["run", target, "--replace-one", "--scale-down", "--", "true"],
        )
        .await
        .code(2)
        .stderr_has(&["cannot be used with"]);
    }
    // The same contradiction from a mirrord configuration file.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirrord.json");
    std::fs::write(
        &config,
        r#"{"feature": {"copy_target": {"scale_down": true}}}"#,
    )
    .unwrap();
    let config = config.to_str().unwrap();
    mc(
        &env,
        &[
            "create",
            "deployment/auto",
            "--replace-one",
            "--mirrord-config",
            config,
        ],
    )
    .await
    .code(2)
    .stderr_has(&["--replace-one cannot be used with", "scale_down"]);
    if let Some(fake) = env.fake() {
        let sent: Vec<_> = fake
            .requests()
            .iter()
            .map(|r| (r.verb.clone(), r.path.clone()))
            .collect();
        assert!(sent.is_empty(), "requests sent: {sent:?}");
    }

    for (target, replicas) in [("one", 1), ("none", 0)] {
        for extra in [&[][..], &["--dry-run=client"][..]] {
            let workload = format!("deployment/{target}");
            let mut args = vec!["create", workload.as_str(), "--replace-one"];
            args.extend_from_slice(extra);
            let plural = if replicas == 1 { "" } else { "s" };
            mc(&env, &args).await.code(4).stderr_has(&[
                &format!(
                    "Deployment {}/{target} runs {replicas} replica{plural}",
                    env.namespace
                ),
                "--replace-one needs at least 2",
                "use --scale-down",
            ]);
        }
    }
    mc(&env, &["create", "cronjob/nightly", "--replace-one"])
        .await
        .code(4)
        .stderr_has(&[
            "cannot run one replica fewer",
            "CronJob has no replica count",
        ]);
    mc(&env, &["create", "job/migrate", "--replace-one"])
        .await
        .code(4)
        .stderr_has(&["job/migrate cannot be scaled down"]);
    // An HPA would scale it back from N-1 at once.
    mc(&env, &["create", "deployment/auto", "--replace-one"])
        .await
        .code(4)
        .stderr_has(&["HorizontalPodAutoscaler auto-hpa", "use --scale-down"]);
    mc(
        &env,
        &["run", "deployment/one", "--replace-one", "--", "true"],
    )
    .await
    .code(4)
    .stderr_has(&["use --scale-down"]);

    assert_nothing_left(&env).await;
    assert_eq!(replicas(&env, "Deployment", "deployments", "one").await, 1);
    assert_eq!(replicas(&env, "Deployment", "deployments", "none").await, 0);
    assert_eq!(replicas(&env, "Deployment", "deployments", "auto").await, 3);
}

/// 3 -> 2 while the copy lives: the lock and the workload record both counts, `status`
/// marks it `-1` and its documents carry the mode and the counts, the copy serves traffic,
/// and `delete` puts 3 back with every record removed.
#[tokio::test]
async fn a_session_runs_one_replica_fewer_and_delete_puts_it_back() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("rep", 3)).await;
    wait_originals(&env, "rep", 3).await;
    let run = mc(&env, &["create", "deployment/rep", "--replace-one", "-v"]).await;
    let pod = run.ok().trim().to_string();
    run.stderr_has(&["scaled deployment/rep down from 3 to 2"]);
    assert_eq!(replicas(&env, "Deployment", "deployments", "rep").await, 2);
    wait_originals(&env, "rep", 2).await;

    let ann = deployment_annotations(&env, "rep").await;
    assert_eq!(ann[ORIGINAL], "3", "{ann}");
    assert_eq!(ann[SCALED_TO], "2", "{ann}");
    assert!(ann[SCALED_DOWN_BY].is_string(), "{ann}");
    let note = ann[NOTE].as_str().unwrap();
    assert!(
        note.contains("Scaled to 2 from 3") && note.contains("in place of one replica"),
        "{note}"
    );
    assert!(note.contains("--replicas=3"), "{note}");
    let lock = lock_data(&env, "rep").await.expect("the lock");
    assert_eq!(lock["originalReplicas"], "3");
    assert_eq!(lock["targetReplicas"], "2");

    // It takes a replica's place: no readiness gate keeps it out of the Services.
    let copy = env.get_pod(&pod).await.unwrap();
    assert!(copy["spec"]["readinessGates"].is_null(), "{}", copy["spec"]);

    let expected = reference_table(
        &STATUS_HEADERS,
        &[vec![
            "deployment/rep".to_string(),
            env.namespace.clone(),
            pod.clone(),
            "-1".to_string(),
        ]],
    );
    assert_eq!(mc(&env, &["status"]).await.ok(), expected);
    let wide = mc(&env, &["status", "-o", "wide"]).await;
    let cells = &table_rows(wide.ok())[0];
    assert_eq!(
        (cells[3].as_str(), cells[11].as_str()),
        ("-1", "3 -> 2"),
        "{}",
        wide.stdout
    );
    let doc: Value = serde_json::from_str(mc(&env, &["status", "-o", "json"]).await.ok()).unwrap();
    let item = &doc["items"][0];
    assert_eq!(item["scaleDown"], true, "{doc}");
    assert_eq!(item["mode"], "replace-one", "{doc}");
    assert_eq!(item["originalReplicas"], 3, "{doc}");
    assert_eq!(item["scaledTo"], 2, "{doc}");
    let yaml: Value =
        serde_yaml_ng::from_str(mc(&env, &["status", "-o", "yaml"]).await.ok()).unwrap();
    assert_eq!(yaml["items"][0]["mode"], "replace-one");
    assert_eq!(yaml["items"][0]["scaledTo"], 2);

    let del = mc(&env, &["delete", &pod, "-v"]).await;
    del.ok();
    del.stderr_has(&["restored deployment/rep to 3 replicas"]);
    assert_eq!(replicas(&env, "Deployment", "deployments", "rep").await, 3);
    let ann = deployment_annotations(&env, "rep").await;
    for key in [ORIGINAL, SCALED_TO, SCALED_DOWN_BY, NOTE] {
        assert!(ann.get(key).is_none_or(Value::is_null), "{key} left: {ann}");
    }
    assert_nothing_left(&env).await;
}

/// A scale-down session shows `*` and a count of 0 beside a replace-one session's `-1`.
#[tokio::test]
async fn status_tells_the_two_modes_apart() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("a", 2)).await;
    env.apply_yaml(&deployment("b", 2)).await;
    let zero = create(&env, &["deployment/a", "--scale-down"]).await;
    let one = create(&env, &["deployment/b", "--replace-one"]).await;
    let ns = env.namespace.clone();
    let expected = reference_table(
        &STATUS_HEADERS,
        &[
            row("deployment/a", &ns, &zero, true),
            vec!["deployment/b".into(), ns.clone(), one.clone(), "-1".into()],
        ],
    );
    assert_eq!(mc(&env, &["status"]).await.ok(), expected);
    let doc: Value = serde_json::from_str(mc(&env, &["status", "-o", "json"]).await.ok()).unwrap();
    let modes: Vec<(Value, Value, Value)> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["mode"].clone(),
                s["originalReplicas"].clone(),
                s["scaledTo"].clone(),
            )
        })
        .collect();
    assert_eq!(
        modes,
        [
            (json!("scale-down"), json!(2), json!(0)),
            (json!("replace-one"), json!(2), json!(1)),
        ]
    );
    mc(&env, &["delete", &zero, &one]).await.ok();
    assert_eq!(replicas(&env, "Deployment", "deployments", "a").await, 2);
    assert_eq!(replicas(&env, "Deployment", "deployments", "b").await, 2);
    assert_nothing_left(&env).await;
}

/// A session whose copy is gone is dead as a target: gc ends it at once, restoring N (the
/// way back read from the lock).
#[tokio::test]
async fn gc_restores_n_after_the_copy_is_lost() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("lost", 3)).await;
    let pod = create(&env, &["deployment/lost", "--replace-one"]).await;
    assert_eq!(replicas(&env, "Deployment", "deployments", "lost").await, 2);
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(env.client.clone(), &env.namespace);
    pods.delete(&pod, &Default::default()).await.unwrap();
    wait_pod_gone(&env, &pod).await;
    mc(&env, &["status"])
        .await
        .stderr_has(&["still holds deployment/lost at 2 of 3 replicas"]);
    let gc = mc(&env, &["gc"]).await;
    assert_eq!(
        gc.ok().matches("ended session:").count(),
        1,
        "{}",
        gc.stdout
    );
    assert_eq!(replicas(&env, "Deployment", "deployments", "lost").await, 3);
    assert!(deployment_annotations(&env, "lost")
        .await
        .get(SCALED_DOWN_BY)
        .is_none_or(Value::is_null));
    assert_nothing_left(&env).await;
}

/// `run --replace-one` SIGKILLed (by its own command) leaves its session with the workload at
/// N-1; gc leaves it alone while the lease runs (60 s after the last heartbeat), then restores
/// N. The fake's clock is moved past the lease; a real cluster's is waited out.
#[tokio::test]
async fn gc_restores_n_after_a_killed_run() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("killed", 3)).await;
    let run = mc(
        &env,
        &[
            "run",
            "deployment/killed",
            "--replace-one",
            "--",
            "sh",
            "-c",
            "kill -9 $PPID; sleep 5",
        ],
    )
    .await;
    assert_eq!(run.code, None, "killed by SIGKILL: {run:?}");
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "killed").await,
        2
    );
    assert_eq!(mc(&env, &["gc"]).await.ok(), "nothing to collect\n");

    let gc = match env.fake() {
        Some(fake) => {
            fake.set_clock_offset(chrono::Duration::minutes(2));
            let gc = mc(&env, &["gc"]).await;
            fake.set_clock_offset(chrono::Duration::zero());
            gc
        }
        None => {
            tokio::time::sleep(Duration::from_secs(66)).await;
            mc(&env, &["gc"]).await
        }
    };
    assert_eq!(
        gc.ok().matches("ended session:").count(),
        1,
        "{}",
        gc.stdout
    );
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "killed").await,
        3
    );
    assert_nothing_left(&env).await;
}

/// Someone scales the workload during the session: restore keeps their count, and says so.
#[tokio::test]
async fn someone_elses_count_is_kept_with_a_warning() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("theirs", 3)).await;
    let pod = create(&env, &["deployment/theirs", "--replace-one"]).await;
    scale(&env, "theirs", 5).await;
    let del = mc(&env, &["delete", &pod]).await;
    del.ok();
    del.stderr_has(&["was scaled to 5 during the session; keeping that instead of the original 3"]);
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "theirs").await,
        5
    );
    assert!(deployment_annotations(&env, "theirs")
        .await
        .get(SCALED_DOWN_BY)
        .is_none_or(Value::is_null));
    assert_nothing_left(&env).await;
}

/// One session at a time: a second one, of either mode, exits 9 naming the holder, and the
/// first keeps the workload at N-1 and its lock.
#[tokio::test]
async fn a_second_session_is_refused_and_the_first_is_undisturbed() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("held", 3)).await;
    let pod = create(&env, &["deployment/held", "--replace-one"]).await;
    let before = lock_data(&env, "held").await.expect("the lock");
    for flag in ["--scale-down", "--replace-one"] {
        mc(&env, &["create", "deployment/held", flag])
            .await
            .code(9)
            .stderr_has(&[
                "already scaled down by another session",
                &before["holderSession"],
                &pod,
            ]);
    }
    assert_eq!(replicas(&env, "Deployment", "deployments", "held").await, 2);
    let after = lock_data(&env, "held").await.expect("the lock");
    assert_eq!(after, before);
    assert_eq!(
        deployment_annotations(&env, "held").await[SCALED_DOWN_BY],
        before["holderSession"].as_str()
    );
    let left = session_config_maps(&env, &env.namespace).await;
    assert_eq!(left.len(), 2, "the session and its lock only: {left:?}");
    mc(&env, &["delete", &pod]).await.ok();
    assert_eq!(replicas(&env, "Deployment", "deployments", "held").await, 3);
    assert_nothing_left(&env).await;
}

/// A StatefulSet with a ReadWriteOnce claim: 3 -> 2 removes db-2, whose claim the copy
/// takes (the StatefulSet is scaled first, as with scale-down); delete gives it back.
#[tokio::test]
async fn a_statefulsets_copy_takes_the_highest_ordinals_claim() {
    let env = TestEnv::new().await;
    running_db(&env, "db", 3, "ReadWriteOnce").await;
    let run = mc(&env, &["create", "statefulset/db", "--replace-one", "-v"]).await;
    let pod = run.ok().trim().to_string();
    run.stderr_has(&[
        "waiting for db-2 to stop and release data-db-2",
        "scaled statefulset/db down from 3 to 2",
    ]);
    let copy = env.get_pod(&pod).await.unwrap();
    assert_eq!(
        volume(&copy, "data")["persistentVolumeClaim"]["claimName"],
        "data-db-2"
    );
    assert_eq!(copy["status"]["phase"], "Running");
    assert_eq!(replicas(&env, "StatefulSet", "statefulsets", "db").await, 2);
    assert!(
        env.get_pod("db-2").await.is_none(),
        "db-2 released its claim"
    );
    assert!(env.get_pod("db-0").await.is_some() && env.get_pod("db-1").await.is_some());
    mc(&env, &["delete", &pod]).await.ok();
    assert_eq!(replicas(&env, "StatefulSet", "statefulsets", "db").await, 3);
    assert_nothing_left(&env).await;
    env.wait_until(
        "db-2 back on its claim",
        Duration::from_secs(120),
        || async {
            let p = env.get_pod("db-2").await?;
            (p["status"]["phase"] == "Running").then_some(())
        },
    )
    .await;
}

/// `run --replace-one`: a heartbeat that finds the workload at N-1 (the count the session set)
/// reports nothing; one that finds another count names who set it.
#[tokio::test]
async fn run_reports_a_count_other_than_the_one_it_set() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("beat", 3)).await;
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let script = format!("echo up > {}; sleep 40", started.display());
    let mut run = crate::plugin_session_safety::spawn_plugin(
        &env,
        &[
            "run",
            "deployment/beat",
            "--replace-one",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    wait_file(&env, &started).await;
    assert_eq!(replicas(&env, "Deployment", "deployments", "beat").await, 2);
    let mut lines = BufReader::new(run.stderr.take().unwrap()).lines();
    // A heartbeat (every 15 s) passes with the workload where the session put it.
    let early = tokio::time::timeout(Duration::from_secs(18), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("was scaled to") {
                return Some(line);
            }
        }
        None
    })
    .await;
    assert!(matches!(early, Err(_) | Ok(None)), "{early:?}");
    scale(&env, "beat", 4).await;
    let warned = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("was scaled to 4") {
                return line;
            }
        }
        String::new()
    })
    .await
    .expect("warned within a heartbeat");
    assert!(warned.starts_with("warning: Deployment"), "{warned}");
    let status = run.wait().await.unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "beat").await,
        4,
        "their count is kept"
    );
    assert_nothing_left(&env).await;
}
