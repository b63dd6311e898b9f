//! `create` for every target kind, asserting the copy rules on the pod the cluster holds, the
//! output forms, and that no workload controller adopts (or deletes) a copy.

use std::time::Duration;

use fakekube::harness::TestEnv;
use serde_json::Value;

use crate::plugin_support::*;

/// Creates a copy of `target`, checks the rules, and the containers of the copy.
async fn copy_of(env: &TestEnv, target: &str, canonical: &str, app: &str) -> Copy {
    let pod = create(env, &[target, "--timeout", "90s"]).await;
    let copy = check_copy(env, &pod, canonical, app).await;
    assert_eq!(names(&copy.pod["spec"]["containers"]), ["app", "side"]);
    assert_eq!(
        names(&copy.pod["spec"]["initContainers"]),
        ["mirrord-copy-placeholder", "setup", "proxy"],
        "the placeholder's installer first, then the template's own"
    );
    let sidecar = &copy.pod["spec"]["initContainers"][2];
    assert_eq!(
        sidecar["restartPolicy"], "Always",
        "the sidecar stays a sidecar"
    );
    assert_eq!(
        copy.pod["spec"]["containers"][0]["image"],
        "registry.k8s.io/pause:3.10"
    );
    assert_eq!(copy.pod["metadata"]["labels"]["tier"], "backend");
    assert_eq!(
        copy.pod["metadata"]["annotations"]["team"], "payments",
        "template annotations kept"
    );
    copy
}

#[tokio::test]
async fn deployment_copy_has_no_probes_and_keeps_the_template() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("api", 2)).await;
    let copy = copy_of(&env, "deployment/api", "deployment/api", "api").await;
    let name = copy.pod["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("api-copy-"), "{name}");
    // The workload is not touched without --scale-down.
    assert_eq!(replicas(&env, "Deployment", "deployments", "api").await, 2);
    let data = copy.session.data.unwrap();
    assert_eq!(data["scaleDown"], "false");
}

#[tokio::test]
async fn statefulset_copy() {
    let env = TestEnv::new().await;
    env.apply_yaml(&workload("StatefulSet", "db", 1)).await;
    copy_of(&env, "statefulset/db", "statefulset/db", "db").await;
}

#[tokio::test]
async fn replicaset_copy() {
    let env = TestEnv::new().await;
    env.apply_yaml(&workload("ReplicaSet", "cache", 1)).await;
    copy_of(&env, "replicaset/cache", "replicaset/cache", "cache").await;
}

#[tokio::test]
async fn replicaset_of_a_deployment_loses_pod_template_hash() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("web", 1)).await;
    let rs = replicaset_of(&env, "web").await;
    let rs_json = env
        .get_json("apps", "v1", "ReplicaSet", "replicasets", &rs)
        .await
        .unwrap();
    assert!(
        rs_json["spec"]["template"]["metadata"]["labels"]["pod-template-hash"].is_string(),
        "fixture: the ReplicaSet's template carries pod-template-hash"
    );
    let target = format!("rs/{rs}");
    copy_of(&env, &target, &format!("replicaset/{rs}"), "web").await;
}

#[tokio::test]
async fn rollout_copy() {
    let env = TestEnv::new().await;
    env.apply_yaml(&workload("Rollout", "checkout", 1)).await;
    copy_of(&env, "rollout/checkout", "rollout/checkout", "checkout").await;
}

#[tokio::test]
async fn rollout_with_workload_ref_copies_the_deployments_template() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("pay-template", 0)).await;
    env.apply_yaml(
        "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: pay\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: pay-template}\n  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: pay-template}\n",
    )
    .await;
    let copy = copy_of(&env, "ro/pay", "rollout/pay", "pay-template").await;
    assert!(copy.pod["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("pay-copy-"));
}

#[tokio::test]
async fn job_copy_keeps_restart_policy_and_drops_job_labels() {
    let env = TestEnv::new().await;
    env.apply_yaml(&job("migrate")).await;
    let j = env
        .get_json("batch", "v1", "Job", "jobs", "migrate")
        .await
        .unwrap();
    let tl = &j["spec"]["template"]["metadata"]["labels"];
    assert!(
        tl["job-name"].is_string() || tl["batch.kubernetes.io/job-name"].is_string(),
        "fixture: the API server labels the Job's template: {tl}"
    );
    let copy = copy_of(&env, "job/migrate", "job/migrate", "migrate").await;
    assert_eq!(copy.pod["spec"]["restartPolicy"], "Never");
}

#[tokio::test]
async fn cronjob_copy_uses_the_job_template() {
    let env = TestEnv::new().await;
    env.apply_yaml(&cronjob("nightly")).await;
    let copy = copy_of(&env, "cj/nightly", "cronjob/nightly", "nightly").await;
    assert_eq!(copy.pod["spec"]["restartPolicy"], "OnFailure");
}

#[tokio::test]
async fn bare_pod_copy() {
    let env = TestEnv::new().await;
    env.apply_yaml(&bare_pod("debug-me")).await;
    copy_of(&env, "pod/debug-me", "pod/debug-me", "debug-me").await;
}

/// A pod made by a StatefulSet carries controller-revision-hash, pod-name and pod-index; a
/// copy of that pod carries none of them, nor what the scheduler filled in.
#[tokio::test]
async fn statefulset_pod_copy_drops_controller_labels_and_node() {
    let env = TestEnv::new().await;
    env.apply_yaml(&workload("StatefulSet", "pg", 1)).await;
    let original = env
        .wait_until("pod pg-0 scheduled", Duration::from_secs(60), || async {
            env.get_pod("pg-0")
                .await
                .filter(|p| p["spec"]["nodeName"].is_string())
        })
        .await;
    let labels = &original["metadata"]["labels"];
    for l in [
        "controller-revision-hash",
        "statefulset.kubernetes.io/pod-name",
    ] {
        assert!(labels[l].is_string(), "fixture: pg-0 has {l}: {labels}");
    }
    // What would be created: the scheduler's nodeName is not copied.
    let preview: Value = serde_json::from_str(
        mc(
            &env,
            &["create", "po/pg-0", "--dry-run=client", "-o", "json"],
        )
        .await
        .ok(),
    )
    .unwrap();
    assert!(preview["spec"]["nodeName"].is_null(), "{}", preview["spec"]);
    assert!(preview["status"].is_null() || preview["status"] == Value::Object(Default::default()));
    copy_of(&env, "po/pg-0", "pod/pg-0", "pg").await;
}

#[tokio::test]
async fn container_selection_is_recorded_and_everything_is_copied() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("api", 1)).await;
    let out = mc(&env, &["create", "deploy/api/container/side", "-o", "json"]).await;
    let doc: Value = serde_json::from_str(out.ok()).expect("-o json");
    assert_eq!(doc["target"], "deployment/api/container/side");
    let pod = doc["copyPod"].as_str().unwrap();
    let copy = check_copy(&env, pod, "deployment/api/container/side", "api").await;
    assert_eq!(names(&copy.pod["spec"]["containers"]), ["app", "side"]);
}

#[tokio::test]
async fn exclusions_remove_containers_and_are_recorded() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("api", 1)).await;
    let pod = create(
        &env,
        &[
            "deployments/api",
            "--exclude-container",
            "side",
            "--exclude-init-container",
            "setup",
        ],
    )
    .await;
    let copy = check_copy(&env, &pod, "deployment/api", "api").await;
    assert_eq!(names(&copy.pod["spec"]["containers"]), ["app"]);
    assert_eq!(
        names(&copy.pod["spec"]["initContainers"]),
        ["mirrord-copy-placeholder", "proxy"]
    );
    let options: Value = serde_json::from_str(
        copy.pod["metadata"]["annotations"]["mirrord-copy.io/options"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(options["excludeContainers"], serde_json::json!(["side"]));
    assert_eq!(
        options["excludeInitContainers"],
        serde_json::json!(["setup"])
    );
    let st: Value = serde_json::from_str(mc(&env, &["status", "-o", "json"]).await.ok()).unwrap();
    assert_eq!(st["items"][0]["options"], options);
}

/// kubectl's short, plural and grouped kind names all resolve to the canonical target.
#[tokio::test]
async fn kubectl_kind_names_are_accepted() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("a", 0)).await;
    env.apply_yaml(&workload("StatefulSet", "b", 0)).await;
    env.apply_yaml(&workload("ReplicaSet", "c", 0)).await;
    env.apply_yaml(&workload("Rollout", "d", 0)).await;
    env.apply_yaml(&job("e")).await;
    env.apply_yaml(&cronjob("f")).await;
    env.apply_yaml(&bare_pod("g")).await;
    let cases = [
        ("deploy/a", "deployment/a"),
        ("deployments/a", "deployment/a"),
        ("deployment.apps/a", "deployment/a"),
        ("Deployment/a/container/app", "deployment/a/container/app"),
        ("sts/b", "statefulset/b"),
        ("statefulsets/b", "statefulset/b"),
        ("rs/c", "replicaset/c"),
        ("replicasets/c", "replicaset/c"),
        ("ro/d", "rollout/d"),
        ("rollouts/d", "rollout/d"),
        ("jobs/e", "job/e"),
        ("job.batch/e", "job/e"),
        ("cj/f", "cronjob/f"),
        ("cronjobs/f", "cronjob/f"),
        ("po/g", "pod/g"),
        ("pods/g", "pod/g"),
    ];
    for (given, canonical) in cases {
        let out = mc(&env, &["create", given, "--dry-run=client", "-o", "json"]).await;
        let pod: Value = serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("{given}: {e}"));
        assert_eq!(
            pod["metadata"]["annotations"]["mirrord-copy.io/original-target"], canonical,
            "{given}"
        );
    }
    // One real create through a short name, to see it land.
    let pod = create(&env, &["sts/b"]).await;
    check_copy(&env, &pod, "statefulset/b", "b").await;
}

#[tokio::test]
async fn output_forms() {
    let env = TestEnv::new().await;
    env.apply_yaml(&deployment("out", 1)).await;

    let name = mc(&env, &["create", "deployment/out", "-o", "name"]).await;
    let name = name.ok();
    let pod = name
        .strip_prefix("pod/")
        .and_then(|n| n.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("-o name: {name:?}"));
    assert!(!pod.contains('\n'));
    assert!(env.get_pod(pod).await.is_some());

    let before = chrono::Utc::now() - chrono::Duration::seconds(2);
    let json = mc(
        &env,
        &["create", "deployment/out", "-o", "json", "--ttl", "1h"],
    )
    .await;
    let doc: Value = serde_json::from_str(json.ok()).expect("-o json parses");
    check_session_doc(&env, &doc, false).await;
    let created = chrono::DateTime::parse_from_rfc3339(doc["created"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(doc["expires"].as_str().unwrap()).unwrap();
    assert!(created >= before, "{created}");
    // The TTL counts from the confirmation (the copy Ready, its name printed).
    let ttl = |e: chrono::Duration| (0..=60).contains(&(e.num_seconds() - 3600));
    assert!(ttl(expires - created), "--ttl 1h: {created} -> {expires}");

    let yaml = mc(
        &env,
        &["create", "deployment/out", "-o", "yaml", "--scale-down"],
    )
    .await;
    let doc: Value = serde_yaml_ng::from_str(yaml.ok()).expect("-o yaml parses");
    check_session_doc(&env, &doc, true).await;
    // Default ttl 8h, from the confirmation.
    let created = chrono::DateTime::parse_from_rfc3339(doc["created"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(doc["expires"].as_str().unwrap()).unwrap();
    let late = (expires - created).num_seconds() - 8 * 3600;
    assert!((0..=60).contains(&late), "{created} -> {expires}");
}

fn check_session_doc_fields(doc: &Value) {
    for field in ["apiVersion", "kind"].into_iter().chain(SESSION_DOC_FIELDS) {
        assert!(doc.get(field).is_some(), "no {field} in {doc}");
    }
}

async fn check_session_doc(env: &TestEnv, doc: &Value, scale_down: bool) {
    check_session_doc_fields(doc);
    assert_eq!(doc["apiVersion"], "mirrord-copy.io/v1");
    assert_eq!(doc["kind"], "CopySession");
    assert_eq!(doc["namespace"], env.namespace.as_str());
    assert_eq!(doc["target"], "deployment/out");
    assert_eq!(doc["scaleDown"], scale_down);
    // The Kubernetes user the cluster names; the machine's user@host beside it.
    assert!(!doc["owner"].as_str().unwrap().is_empty(), "{doc}");
    assert!(doc["host"].as_str().unwrap().contains('@'), "{doc}");
    assert_eq!(doc["lapsed"], false, "{doc}");
    let session = doc["session"].as_str().unwrap();
    let pod = doc["copyPod"].as_str().unwrap();
    let copy = check_copy(env, pod, "deployment/out", "out").await;
    assert_eq!(
        copy.session.metadata.name.unwrap(),
        format!("mirrord-copy-session-{session}")
    );
}

/// The fake's (or the cluster's) ReplicaSet, StatefulSet and Job controllers neither adopt nor
/// delete a copy whose labels match their selectors.
#[tokio::test]
async fn workload_controllers_leave_copies_alone() {
    let env = TestEnv::new().await;
    env.apply_yaml(&workload("ReplicaSet", "rs1", 1)).await;
    env.apply_yaml(&workload("StatefulSet", "ss1", 1)).await;
    env.apply_yaml(&job("jb1")).await;
    let mut copies = Vec::new();
    for (target, app) in [
        ("replicaset/rs1", "rs1"),
        ("statefulset/ss1", "ss1"),
        ("job/jb1", "jb1"),
    ] {
        let pod = create(&env, &[target]).await;
        let owners = env.get_pod(&pod).await.unwrap()["metadata"]["ownerReferences"].clone();
        copies.push((pod, app, owners));
    }
    // Controllers react within tens to hundreds of milliseconds; give them ample passes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (pod, app, owners) in &copies {
        let now = env
            .get_pod(pod)
            .await
            .unwrap_or_else(|| panic!("copy {pod} was deleted by a controller"));
        assert!(
            now["metadata"]["deletionTimestamp"].is_null(),
            "{pod} is being deleted"
        );
        assert_eq!(
            &now["metadata"]["ownerReferences"], owners,
            "{pod} gained or lost owners"
        );
        // The workload still runs its own pod and only it: the copy was not counted.
        let all = env.list_pods(&format!("app={app}")).await;
        let own: Vec<_> = all
            .iter()
            .filter(|p| {
                p["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|o| o["kind"] != "ConfigMap"))
            })
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        assert_eq!(own.len(), 1, "{app}: its own pods: {own:?}");
    }
}
