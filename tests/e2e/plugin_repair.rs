//! Nothing left at zero. Restore trusts the lock over the workload's annotations,
//! a malformed lock is reported and nothing changed.

use fakekube::harness::TestEnv;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;

use crate::plugin_support::*;

const ORIGINAL: &str = "mirrord-copy.io/original-replicas";
const SCALED_DOWN_BY: &str = "mirrord-copy.io/scaled-down-by";

/// Merge-patch the annotations of the Deployment `name` (a `null` value removes one), as
/// someone with rights to the workload may.
async fn annotate(env: &TestEnv, name: &str, annotations: serde_json::Value) {
    let ar = kube::discovery::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("apps", "v1", "Deployment"),
        "deployments",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &env.namespace, &ar);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
    )
    .await
    .expect("annotate the deployment");
}

async fn annotation(env: &TestEnv, name: &str, key: &str) -> Option<String> {
    let d = env
        .get_json("apps", "v1", "Deployment", "deployments", name)
        .await
        .expect("the deployment");
    d["metadata"]["annotations"][key].as_str().map(String::from)
}

fn config_maps(env: &TestEnv) -> Api<ConfigMap> {
    Api::namespaced(env.client.clone(), &env.namespace)
}

/// `mirrord-copy-lock-deployment-NAME`.
fn lock_name(name: &str) -> String {
    format!("mirrord-copy-lock-deployment-{name}")
}

/// Someone strips `scaled-down-by` from a workload held at zero: `delete` puts it back to the
/// lock's count (warning), and the lock goes only after that.
#[tokio::test]
async fn delete_restores_the_locks_count_when_our_annotation_was_stripped() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("strip", 3)).await;
    let pod = create(&env, &["deployment/strip", "--scale-down"]).await;
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "strip").await,
        0
    );
    annotate(&env, "strip", json!({ SCALED_DOWN_BY: null })).await;

    let run = mc(&env, &["delete", &pod]).await;
    run.ok();
    run.stderr_has(&[
        "carries no mirrord-copy.io/scaled-down-by annotation",
        "records 3 replicas; restoring 3",
    ]);
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "strip").await,
        3
    );
    assert_eq!(annotation(&env, "strip", ORIGINAL).await, None);
    assert_nothing_left(&env).await;
}

/// Someone edits `original-replicas` to 50 on a workload held at zero: `delete` restores the
/// lock's count, with a warning naming both.
#[tokio::test]
async fn delete_restores_the_locks_count_when_original_replicas_was_edited() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("edit", 2)).await;
    let pod = create(&env, &["deployment/edit", "--scale-down"]).await;
    annotate(&env, "edit", json!({ ORIGINAL: "50" })).await;

    let run = mc(&env, &["delete", &pod]).await;
    run.ok();
    run.stderr_has(&[
        "records mirrord-copy.io/original-replicas=\"50\" but the scale-down lock",
        "records 2; the lock is the record that counts: restoring 2",
    ]);
    assert_eq!(replicas(&env, "Deployment", "deployments", "edit").await, 2);
    assert_eq!(annotation(&env, "edit", SCALED_DOWN_BY).await, None);
    assert_nothing_left(&env).await;
}

/// A lock whose `originalReplicas` is "abc": `delete` and `gc` report it and change nothing
/// (workload, copy, lock and session stay); once it is fixed, `delete` ends the session.
#[tokio::test]
async fn a_malformed_lock_is_reported_and_nothing_is_changed() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("bad", 2)).await;
    let pod = create(&env, &["deployment/bad", "--scale-down"]).await;
    let lock = lock_name("bad");
    let set_count = |count: &'static str| {
        let cms = config_maps(&env);
        let lock = lock.clone();
        async move {
            cms.patch(
                &lock,
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"originalReplicas": count}})),
            )
            .await
            .expect("edit the lock");
        }
    };
    set_count("abc").await;

    let run = mc(&env, &["delete", &pod]).await;
    run.code(1);
    run.stderr_has(&[
        &format!("the scale-down lock {}/{lock}", env.namespace),
        "is malformed",
        "\"abc\"",
        "nothing was changed",
    ]);
    let gc = mc(&env, &["gc"]).await;
    gc.ok();
    assert!(
        gc.stdout.contains("left alone") && gc.stdout.contains("\"abc\""),
        "{}",
        gc.stdout
    );
    assert_eq!(replicas(&env, "Deployment", "deployments", "bad").await, 0);
    assert!(env.get_pod(&pod).await.is_some(), "the copy is kept");
    let cms = session_config_maps(&env, &env.namespace).await;
    assert_eq!(cms.len(), 2, "the session and its lock are kept: {cms:?}");

    set_count("2").await;
    mc(&env, &["delete", &pod]).await.ok();
    assert_eq!(replicas(&env, "Deployment", "deployments", "bad").await, 2);
    assert_nothing_left(&env).await;
}

/// `create ARGS` in the background, output piped, killed when dropped.
fn spawn_create(env: &TestEnv, args: &[&str]) -> tokio::process::Child {
    let mut c = tokio::process::Command::from(env.command(plugin_bin()));
    c.arg("create")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    c.spawn().expect("spawn the plugin")
}

/// `gc` with the API server's clock `ahead` (the fake's `Date` header), as if that much time
/// had passed; the clock is put back after.
async fn gc_later(env: &TestEnv, ahead: chrono::Duration) -> Run {
    let fake = env.fake().expect("the fake API server");
    fake.set_clock_offset(ahead);
    let run = mc(env, &["gc"]).await;
    fake.set_clock_offset(chrono::Duration::zero());
    run
}

/// A `create --scale-down` SIGKILLed while it waits for the copy to be Ready, and one killed
/// after the scale to zero but before it confirmed its session: neither is live for its TTL
/// (8 h). `gc` leaves them alone while their provisional lease runs (60 s), then ends them,
/// restoring the exact count.
#[tokio::test]
#[cfg_attr(
    real_cluster,
    ignore = "moves the fake API server's clock and switches its kubelet"
)]
async fn a_killed_create_is_ended_by_gc_once_its_provisional_lease_lapsed() {
    let env = TestEnv::new().await;
    let fake = env.fake().expect("the fake API server").clone();
    env.apply_yaml(&deployment("waiting", 3)).await;
    env.apply_yaml(&deployment("scaled", 2)).await;

    // Killed during the wait for Ready (the kubelet is off: the copy stays Pending).
    fake.controllers().set("kubelet", false);
    let mut child = spawn_create(&env, &["deployment/waiting", "--scale-down"]);
    env.wait_until(
        "the copy pod",
        std::time::Duration::from_secs(30),
        || async { (!env.list_pods("mirrord-copy.io/role=copy").await.is_empty()).then_some(()) },
    )
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    fake.controllers().set("kubelet", true);

    // Killed once the workload is at zero, with the confirmation in flight (held by the
    // server until after the kill; it fails then, the session gone).
    fake.faults().latency(
        "PATCH",
        "/configmaps/mirrord-copy-session-",
        std::time::Duration::from_secs(2),
    );
    let mut child = spawn_create(&env, &["deployment/scaled", "--scale-down"]);
    env.wait_until(
        "the scale to zero",
        std::time::Duration::from_secs(30),
        || async {
            (replicas(&env, "Deployment", "deployments", "scaled").await == 0).then_some(())
        },
    )
    .await;
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    fake.faults().clear();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;

    // Within the provisional lease: both are still being created, as far as anyone knows.
    let early = mc(&env, &["gc"]).await;
    early.ok();
    assert_eq!(early.stdout, "nothing to collect\n");
    let status = mc(&env, &["status", "-o", "json"]).await;
    let doc: serde_json::Value = serde_json::from_str(status.ok()).unwrap();
    let items = doc["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{doc}");
    assert!(items.iter().all(|s| s["provisional"] == true), "{doc}");

    let gc = gc_later(&env, chrono::Duration::minutes(2)).await;
    gc.ok();
    assert_eq!(
        gc.stdout.matches("ended session:").count(),
        2,
        "{}\n{}",
        gc.stdout,
        gc.stderr
    );
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "waiting").await,
        3
    );
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "scaled").await,
        2,
        "the name may have been printed ({stdout:?}), but the create never confirmed its session"
    );
    assert_eq!(annotation(&env, "scaled", SCALED_DOWN_BY).await, None);
    assert_nothing_left(&env).await;
}

/// A finished create is confirmed: its TTL counts, gc leaves it alone long after the
/// provisional lease; status says it is not provisional.
#[tokio::test]
#[cfg_attr(real_cluster, ignore = "moves the fake API server's clock")]
async fn a_confirmed_create_lives_for_its_ttl() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("done", 2)).await;
    let pod = create(&env, &["deployment/done", "--scale-down", "--ttl", "1h"]).await;
    let cms = config_maps(&env);
    let session = cms
        .list(&kube::api::ListParams::default().labels("mirrord-copy.io/role=session"))
        .await
        .unwrap()
        .items
        .remove(0);
    let data = session.data.unwrap();
    assert!(!data.contains_key("provisional"), "{data:?}");
    assert!(data.contains_key("confirmed"), "{data:?}");
    let gc = gc_later(&env, chrono::Duration::minutes(30)).await;
    assert_eq!(gc.ok(), "nothing to collect\n");
    assert_eq!(replicas(&env, "Deployment", "deployments", "done").await, 0);
    let gc = gc_later(&env, chrono::Duration::minutes(61)).await;
    assert!(gc.ok().contains("ended session:"), "{}", gc.stdout);
    assert_eq!(replicas(&env, "Deployment", "deployments", "done").await, 2);
    wait_pod_gone(&env, &pod).await;
    assert_nothing_left(&env).await;
}

/// A session whose copy pod was deleted by hand (a bare pod is not recreated) holds its
/// workload at zero: `status` names it, in every form; `gc` ends it at once, restoring first.
#[tokio::test]
async fn a_session_whose_copy_is_gone_is_marked_and_ended_by_gc() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("lost", 2)).await;
    env.apply_yaml(&deployment("kept", 1)).await;
    let pod = create(&env, &["deployment/lost", "--scale-down"]).await;
    let other = create(&env, &["deployment/kept"]).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(env.client.clone(), &env.namespace);
    pods.delete(&pod, &Default::default()).await.unwrap();
    wait_pod_gone(&env, &pod).await;

    let status = mc(&env, &["status"]).await;
    status.ok();
    status.stderr_has(&[
        &format!("the copy pod {pod} of session"),
        "is gone, and still holds deployment/lost at zero",
        &format!(
            "`kubectl mirrord-copy gc -n {}` ends the session",
            env.namespace
        ),
    ]);
    assert!(!status.stderr.contains(&other), "{}", status.stderr);
    let wide = mc(&env, &["status", "-o", "wide"]).await;
    assert!(
        wide.ok().contains("Gone") && wide.stdout.contains("copy pod gone: gc ends the session"),
        "{}",
        wide.stdout
    );
    let doc: serde_json::Value =
        serde_json::from_str(mc(&env, &["status", "-o", "json"]).await.ok()).unwrap();
    let gone: Vec<&serde_json::Value> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["copyGone"] == true)
        .collect();
    assert_eq!(gone.len(), 1, "{doc}");
    assert_eq!(gone[0]["copyPod"], pod.as_str(), "{doc}");

    let gc = mc(&env, &["gc"]).await;
    assert_eq!(
        gc.ok().matches("ended session:").count(),
        1,
        "{}",
        gc.stdout
    );
    assert_eq!(replicas(&env, "Deployment", "deployments", "lost").await, 2);
    assert_eq!(annotation(&env, "lost", SCALED_DOWN_BY).await, None);
    // The other session, whose copy is there, is left alone.
    assert!(env.get_pod(&other).await.is_some());
    let left = session_config_maps(&env, &env.namespace).await;
    assert_eq!(left.len(), 1, "{left:?}");
    mc(&env, &["delete", &other]).await.ok();
    assert_nothing_left(&env).await;
}

/// An evicted copy (node pressure: Failed with reason Evicted, never restarted) is gone as a
/// target too: marked, and ended by gc.
#[tokio::test]
#[cfg_attr(
    real_cluster,
    ignore = "only a kubelet evicts, and a real one overwrites a pod status the test patches"
)]
async fn an_evicted_copy_is_marked_and_ended_by_gc() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("evicted", 1)).await;
    let evicted = create(&env, &["deployment/evicted"]).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(env.client.clone(), &env.namespace);
    pods.patch_status(
        &evicted,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory."}})),
    )
    .await
    .unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(mc(&env, &["status", "-o", "json"]).await.ok()).unwrap();
    let item = &doc["items"][0];
    assert_eq!(item["copyGone"], true, "{doc}");
    assert_eq!(item["phase"], "Evicted", "{doc}");
    let gc = mc(&env, &["gc"]).await;
    assert_eq!(
        gc.ok().matches("ended session:").count(),
        1,
        "{}",
        gc.stdout
    );
    wait_pod_gone(&env, &evicted).await;
    assert_nothing_left(&env).await;
}

/// Sends `signal` to the child.
fn signal(child: &tokio::process::Child, signal: i32) {
    let pid = child.id().expect("still running") as libc::pid_t;
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

async fn exit_of(child: tokio::process::Child) -> (Option<i32>, String) {
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("exited within 60s")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A StatefulSet `name` (1 replica, pause image, or `image`) whose pods mount a ReadWriteOnce
/// claim: `--scale-down` stops it before the copy is made.
fn rwo_statefulset(name: &str, image: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}
spec:
  replicas: 1
  serviceName: {name}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: db
          image: {image}
          volumeMounts:
            - {{name: data, mountPath: /data}}
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        resources:
          requests:
            storage: 1Gi
"#
    )
}

/// Ctrl-C (SIGINT) while `create --scale-down` waits for the copy to be Ready: exit 130, and
/// nothing of it is left (no session, lock or copy). SIGTERM while the copy of a StatefulSet,
/// already scaled to zero to hand its claim over, waits: exit 143, the StatefulSet back to its
/// count first, nothing left.
#[tokio::test]
#[cfg_attr(
    real_cluster,
    ignore = "switches the fake kubelet off and uses its failing images"
)]
async fn a_signal_during_create_undoes_it_and_exits_128_plus_n() {
    let env = TestEnv::new().await;
    let fake = env.fake().expect("the fake API server").clone();
    env.apply_yaml(&deployment("ctrlc", 2)).await;
    fake.controllers().set("kubelet", false);
    let child = spawn_create(&env, &["deployment/ctrlc", "--scale-down"]);
    env.wait_until(
        "the copy pod",
        std::time::Duration::from_secs(30),
        || async { (!env.list_pods("mirrord-copy.io/role=copy").await.is_empty()).then_some(()) },
    )
    .await;
    signal(&child, libc::SIGINT);
    let (code, stderr) = exit_of(child).await;
    fake.controllers().set("kubelet", true);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted by SIGINT: undoing what this create did")
            && stderr.contains("scale-down first"),
        "{stderr}"
    );
    assert!(stderr.contains("error: interrupted by SIGINT"), "{stderr}");
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "ctrlc").await,
        2
    );
    assert_nothing_left(&env).await;
    assert!(state_sessions(&env).is_empty(), "not remembered locally");

    // A copy that never becomes Ready, of a StatefulSet already at zero.
    env.apply_yaml(&rwo_statefulset("term", "notready")).await;
    env.wait_until("term-0", std::time::Duration::from_secs(30), || async {
        env.get_pod("term-0").await.map(|_| ())
    })
    .await;
    let child = spawn_create(&env, &["statefulset/term", "--scale-down"]);
    env.wait_until(
        "the copy, the StatefulSet at zero",
        std::time::Duration::from_secs(30),
        || async {
            let copy = !env.list_pods("mirrord-copy.io/role=copy").await.is_empty();
            let zero = replicas(&env, "StatefulSet", "statefulsets", "term").await == 0;
            (copy && zero).then_some(())
        },
    )
    .await;
    signal(&child, libc::SIGTERM);
    let (code, stderr) = exit_of(child).await;
    assert_eq!(code, Some(143), "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert_eq!(
        replicas(&env, "StatefulSet", "statefulsets", "term").await,
        1
    );
    assert_nothing_left(&env).await;
}

/// SIGINT once the copy is Ready, the name printed, the confirmation in flight: the session
/// is ended all the same (exit 130).
#[tokio::test]
#[cfg_attr(
    real_cluster,
    ignore = "holds a request open with the fake's latency injection"
)]
async fn a_signal_after_ready_but_before_the_confirmation_undoes_the_create() {
    let env = TestEnv::new().await;
    let fake = env.fake().expect("the fake API server").clone();
    env.apply_yaml(&deployment("late", 3)).await;
    fake.faults().latency(
        "PATCH",
        "/configmaps/mirrord-copy-session-",
        std::time::Duration::from_secs(3),
    );
    let child = spawn_create(&env, &["deployment/late", "--scale-down"]);
    env.wait_until(
        "the scale to zero",
        std::time::Duration::from_secs(30),
        || async { (replicas(&env, "Deployment", "deployments", "late").await == 0).then_some(()) },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    signal(&child, libc::SIGINT);
    let (code, stderr) = exit_of(child).await;
    fake.faults().clear();
    assert_eq!(code, Some(130), "{stderr}");
    // The held confirmation lands after the end, on nothing (the PATCH of a deleted session).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(replicas(&env, "Deployment", "deployments", "late").await, 3);
    assert_nothing_left(&env).await;
}

/// Ctrl-C while `run` waits for its copy, before its command starts: exit 130, the command
/// never ran, nothing left.
#[tokio::test]
#[cfg_attr(real_cluster, ignore = "switches the fake kubelet off")]
async fn a_signal_before_runs_command_starts_undoes_it() {
    let env = TestEnv::new().await;
    let fake = env.fake().expect("the fake API server").clone();
    env.apply_yaml(&deployment("r", 2)).await;
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    fake.controllers().set("kubelet", false);
    let mut c = tokio::process::Command::from(env.command(plugin_bin()));
    c.args(["run", "deployment/r", "--scale-down", "--", "touch"])
        .arg(&ran)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = c.spawn().unwrap();
    env.wait_until(
        "the copy pod",
        std::time::Duration::from_secs(30),
        || async { (!env.list_pods("mirrord-copy.io/role=copy").await.is_empty()).then_some(()) },
    )
    .await;
    signal(&child, libc::SIGINT);
    let (code, stderr) = exit_of(child).await;
    fake.controllers().set("kubelet", true);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(!ran.exists(), "the command never started");
    assert_eq!(replicas(&env, "Deployment", "deployments", "r").await, 2);
    assert_nothing_left(&env).await;
}

/// Merge-patch the data of our ConfigMap `name`.
async fn edit_data(env: &TestEnv, name: &str, data: serde_json::Value) {
    config_maps(env)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": data })),
        )
        .await
        .expect("edit the ConfigMap");
}

/// The session ConfigMap of the copy pod `pod` (its owner).
async fn session_of(env: &TestEnv, pod: &str) -> String {
    let p = env.get_pod(pod).await.expect("the copy pod");
    p["metadata"]["ownerReferences"][0]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A session whose record does not read back (here an unknown version, and
/// an earlier build's `--ttl 10000y`, whose expiry and lease are past the year 9999) holds its
/// workload at zero. `status` and `gc` name it with the command that ends it; `delete POD`
/// and `delete --all` end it through its labels and owner references, restoring the count
/// its lock records.
#[tokio::test]
async fn a_session_whose_record_does_not_read_back_can_be_ended() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("garbled", 3)).await;
    env.apply_yaml(&deployment("forever", 2)).await;
    let garbled = create(&env, &["deployment/garbled", "--scale-down"]).await;
    let forever = create(&env, &["deployment/forever", "--scale-down"]).await;
    // A record this build cannot read (a later build's version, say).
    let cm = session_of(&env, &garbled).await;
    edit_data(&env, &cm, json!({"version": "9"})).await;
    // What an earlier build wrote for `--ttl 10000y`.
    let far = "+12027-01-01T00:00:00Z";
    edit_data(
        &env,
        &session_of(&env, &forever).await,
        json!({"expires": far}),
    )
    .await;
    edit_data(&env, &lock_name("forever"), json!({"leaseExpires": far})).await;

    let status = mc(&env, &["status"]).await;
    status.ok();
    status.stderr_has(&[
        "has a record that does not read back",
        "unknown version \"9\"",
        &format!(
            "`kubectl mirrord-copy delete {garbled} -n {}` ends it",
            env.namespace
        ),
    ]);
    assert!(status.stdout.contains(&forever), "{}", status.stdout);
    let gc = mc(&env, &["gc"]).await;
    assert!(
        gc.ok()
            .contains("left alone (gc cannot tell whether it expired)")
            && gc
                .stdout
                .contains(&format!("kubectl mirrord-copy delete {garbled}")),
        "{}",
        gc.stdout
    );
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "garbled").await,
        0
    );

    let run = mc(&env, &["delete", &garbled]).await;
    run.ok();
    run.stderr_has(&[
        "its record does not read back",
        "ending it through its labels",
    ]);
    assert!(
        run.stdout.contains(&format!("pod/{garbled} deleted")),
        "{}",
        run.stdout
    );
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "garbled").await,
        3
    );
    assert_eq!(annotation(&env, "garbled", SCALED_DOWN_BY).await, None);

    // The other one reads back (its far expiry too): `delete --all` ends it.
    mc(&env, &["delete", "--all"]).await.ok();
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "forever").await,
        2
    );
    assert_nothing_left(&env).await;
}

/// `delete --all` ends an unreadable session this machine made.
#[tokio::test]
async fn delete_all_ends_an_unreadable_session_made_here() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("mine", 2)).await;
    let pod = create(&env, &["deployment/mine", "--scale-down"]).await;
    edit_data(
        &env,
        &session_of(&env, &pod).await,
        json!({"scaleDown": "yes"}),
    )
    .await;
    let run = mc(&env, &["delete", "--all"]).await;
    run.ok();
    assert!(
        run.stdout.contains("(unreadable record) ended"),
        "{}",
        run.stdout
    );
    assert_eq!(replicas(&env, "Deployment", "deployments", "mine").await, 2);
    assert_nothing_left(&env).await;
}
