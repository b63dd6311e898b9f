//! The copy is a target, not a second instance (README "What runs in the copy"): its target
//! container runs a placeholder that never exits, so the copy outlives a crashing original or
//! an ended Job, works in images without a shell, ends at once on delete, and stays out of its
//! Services' ready endpoints unless it replaces a scaled-down workload. `--keep-command` runs
//! the application itself. Every test here holds on a real cluster too (the kit's images).

use std::time::Duration;

use fakekube::harness::TestEnv;
use serde_json::Value;

use crate::plugin_support::*;

/// A Deployment whose one container runs `command` in `image`, with `extra` pod spec lines.
fn deployment_running(
    name: &str,
    replicas: i32,
    image: &str,
    command: &str,
    extra: &str,
) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
{extra}      containers:
        - name: app
          image: {image}
          command: {command}
"#
    )
}

/// The copy's pod, after checking it runs the placeholder in container `app`.
async fn placeholder_copy(env: &TestEnv, pod: &str) -> Value {
    let copy = env.get_pod(pod).await.expect("the copy exists");
    let app = &copy["spec"]["containers"][0];
    assert_eq!(app["name"], "app");
    assert_eq!(app["command"][0], "/.mirrord-copy/busybox", "{app}");
    assert_eq!(
        copy["metadata"]["annotations"]["mirrord-copy.io/runs"],
        "placeholder"
    );
    copy
}

fn restarts(pod: &Value) -> i64 {
    pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["restartCount"].as_i64().unwrap_or(0))
        .sum()
}

/// The pod stays Running with no restart while `window` passes (polled, so a crash is seen).
async fn stays_running(env: &TestEnv, pod: &str, window: Duration) {
    let until = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < until {
        let p = env.get_pod(pod).await.expect("the copy is still there");
        assert_eq!(p["status"]["phase"], "Running", "{}", p["status"]);
        assert_eq!(restarts(&p), 0, "the copy restarted: {}", p["status"]);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_copy_of_a_crash_looping_deployment_stays_up() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment_running(
        "crashy",
        1,
        "busybox",
        r#"["sh", "-c", "echo boom; exit 1"]"#,
        "",
    ))
    .await;
    let pod = create(&env, &["deployment/crashy"]).await;
    placeholder_copy(&env, &pod).await;
    stays_running(&env, &pod, Duration::from_secs(30)).await;
    // Meanwhile the original really crashes: the copy is not up because nothing crashes here.
    let originals = env.list_pods("app=crashy,!mirrord-copy.io/role").await;
    assert!(
        originals.iter().any(|p| restarts(p) > 0),
        "the original crash-loops: {originals:?}"
    );
    mc(&env, &["delete", &pod]).await.ok();
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn keep_command_runs_the_application_and_reports_its_crash() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment_running(
        "crashy",
        1,
        "busybox",
        r#"["sh", "-c", "echo boom; exit 1"]"#,
        "",
    ))
    .await;
    let run = mc(&env, &["create", "deployment/crashy", "--keep-command"]).await;
    run.code(6)
        .stderr_has(&["failed to start", "container app", "exit code 1"]);
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn a_copy_of_a_job_outlives_the_jobs_own_pod() {
    let env = TestEnv::new().await;
    env.apply_yaml(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
spec:
  backoffLimit: 0
  template:
    metadata:
      labels: {app: migrate}
    spec:
      restartPolicy: Never
      containers:
        - name: app
          image: busybox
          command: ["sh", "-c", "sleep 1"]
"#,
    )
    .await;
    let pod = create(&env, &["job/migrate"]).await;
    placeholder_copy(&env, &pod).await;
    env.wait_until(
        "the Job's own pod Succeeded",
        Duration::from_secs(60),
        || async {
            let done = env
                .list_pods("batch.kubernetes.io/job-name=migrate")
                .await
                .iter()
                .any(|p| p["status"]["phase"] == "Succeeded");
            done.then_some(())
        },
    )
    .await;
    stays_running(&env, &pod, Duration::from_secs(3)).await;
    mc(&env, &["delete", &pod]).await.ok();
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn a_scaled_down_queue_worker_copy_does_not_run_the_worker() {
    let env = TestEnv::new().await;
    env.apply_yaml(&plain::deployment_of(
        "worker",
        2,
        "ghcr.io/example/worker:3",
    ))
    .await;
    let pod = create(&env, &["deployment/worker", "--scale-down"]).await;
    let copy = placeholder_copy(&env, &pod).await;
    assert_eq!(
        copy["spec"]["containers"][0]["image"],
        "ghcr.io/example/worker:3"
    );
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "worker").await,
        0
    );
    if env.fake().is_none() {
        // On a real kubelet, what ran is in the log: the worker prints a line when it starts.
        let log = kubectl_logs(&env, &pod).await;
        assert!(!log.contains("worker: started"), "the worker ran: {log}");
    }
    mc(&env, &["delete", &pod]).await.ok();
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "worker").await,
        2
    );
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn a_distroless_image_without_sleep_or_shell_gets_a_placeholder_too() {
    let env = TestEnv::new().await;
    // The pause image holds one static binary and nothing else: no sh, no sleep.
    env.apply_yaml(&plain::deployment_of(
        "static",
        1,
        "registry.k8s.io/pause:3.10",
    ))
    .await;
    let pod = create(&env, &["deployment/static"]).await;
    let copy = placeholder_copy(&env, &pod).await;
    let ready = copy["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "ContainersReady" && c["status"] == "True");
    assert!(ready, "{}", copy["status"]);
    stays_running(&env, &pod, Duration::from_secs(3)).await;
    mc(&env, &["delete", &pod]).await.ok();
    assert_nothing_left(&env).await;
}

/// The copy's endpoint conditions in the Service's EndpointSlices, once it is listed.
async fn endpoint_of(env: &TestEnv, service: &str, pod: &str) -> Value {
    env.wait_until(
        &format!("pod {pod} in the EndpointSlices of {service}"),
        Duration::from_secs(60),
        || async {
            let slices = env
                .list_json(
                    "discovery.k8s.io",
                    "v1",
                    "EndpointSlice",
                    "endpointslices",
                    &format!("kubernetes.io/service-name={service}"),
                )
                .await;
            slices
                .iter()
                .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
                .find(|e| e["targetRef"]["name"] == pod)
                .map(|e| e["conditions"].clone())
        },
    )
    .await
}

fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{port: 80}}]\n"
    )
}

#[tokio::test]
async fn the_copy_is_not_a_ready_endpoint_unless_it_replaces_the_workload_or_a_replica() {
    let env = TestEnv::new().await;
    env.apply_yaml(&plain::deployment_of(
        "web",
        1,
        "ghcr.io/example/py-serv:1.0",
    ))
    .await;
    env.apply_yaml(&service("web")).await;
    let pod = create(&env, &["deployment/web"]).await;
    let conditions = endpoint_of(&env, "web", &pod).await;
    assert_eq!(conditions["ready"], false, "{conditions}");
    mc(&env, &["delete", &pod]).await.ok();

    let pod = create(&env, &["deployment/web", "--scale-down"]).await;
    let conditions = env
        .wait_until(
            "the copy a ready endpoint",
            Duration::from_secs(60),
            || async {
                let c = endpoint_of(&env, "web", &pod).await;
                (c["ready"] == true).then_some(c)
            },
        )
        .await;
    assert_eq!(conditions["serving"], true);
    mc(&env, &["delete", &pod]).await.ok();

    // Replacing one of two replicas, the copy takes its place in the Service too.
    env.apply_yaml(&plain::deployment_of(
        "web",
        2,
        "ghcr.io/example/py-serv:1.0",
    ))
    .await;
    let pod = create(&env, &["deployment/web", "--replace-one"]).await;
    let conditions = env
        .wait_until(
            "the replacing copy a ready endpoint",
            Duration::from_secs(60),
            || async {
                let c = endpoint_of(&env, "web", &pod).await;
                (c["ready"] == true).then_some(c)
            },
        )
        .await;
    assert_eq!(conditions["serving"], true);
    mc(&env, &["delete", &pod]).await.ok();
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn delete_does_not_wait_out_the_grace_period_of_a_placeholder() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment_running(
        "slow",
        1,
        "busybox",
        r#"["sleep", "infinity"]"#,
        "      terminationGracePeriodSeconds: 300\n",
    ))
    .await;
    let pod = create(&env, &["deployment/slow"]).await;
    placeholder_copy(&env, &pod).await;
    // `sleep` as PID 1 ignores SIGTERM and would hold the pod for 300 s; the placeholder ends
    // on it. delete waits until the pod is gone, well within its 30 s timeout.
    mc(&env, &["delete", &pod, "--timeout", "30s"]).await.ok();
    assert!(env.get_pod(&pod).await.is_none(), "{pod} is gone");
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn status_and_the_emitted_mirrord_config_name_the_placeholder_container() {
    let env = TestEnv::new().await;
    env.apply_yaml(&plain::deployment_of(
        "api",
        1,
        "registry.k8s.io/pause:3.10",
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirrord.json");
    let pod = create(
        &env,
        &[
            "deployment/api",
            "--emit-mirrord-config",
            config.to_str().unwrap(),
        ],
    )
    .await;
    let emitted: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(
        emitted["target"]["path"],
        format!("pod/{pod}/container/app")
    );
    let doc: Value = serde_json::from_str(mc(&env, &["status", "-o", "json"]).await.ok()).unwrap();
    let runs = &doc["items"][0]["runs"];
    assert_eq!(runs["mode"], "placeholder", "{doc}");
    assert_eq!(runs["container"], "app");
    assert_eq!(runs["placeholderImage"], "docker.io/library/busybox:1.36");
    let wide = mc(&env, &["status", "-o", "wide"]).await;
    assert!(wide.ok().contains("placeholder in app"), "{}", wide.stdout);
    mc(&env, &["delete", &pod]).await.ok();
    assert_nothing_left(&env).await;
}
