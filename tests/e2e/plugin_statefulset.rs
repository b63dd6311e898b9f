//! StatefulSets with volumeClaimTemplates (README "StatefulSets with volume claims"): the copy
//! mounts ordinal 0's claims; a ReadWriteOnce claim is handed over by `--scale-down` (the
//! StatefulSet stops first, then the copy mounts the claim) or replaced by empty volumes with
//! `--claims-as-emptydir`; without either, exit 4 before anything is written.

use std::time::Duration;

use fakekube::harness::TestEnv;
use serde_json::Value;

use crate::plugin_support::*;

const STS: (&str, &str, &str, &str) = ("apps", "v1", "StatefulSet", "statefulsets");

/// A StatefulSet `name` whose container mounts claim template `data` (`access` mode).
fn db(name: &str, replicas: i32, access: &str, image: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}
spec:
  replicas: {replicas}
  serviceName: {name}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: postgres
          image: {image}
          readinessProbe: {{exec: {{command: ["pg_isready"]}}}}
          volumeMounts:
            - {{name: data, mountPath: /var/lib/postgresql/data}}
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [{access}]
        resources:
          requests:
            storage: 1Gi
"#
    )
}

/// Applies the StatefulSet and waits until all its pods run (so ordinal 0 holds its claim).
pub(crate) async fn running_db(env: &TestEnv, name: &str, replicas: i32, access: &str) {
    env.apply_yaml(&db(name, replicas, access, "postgres:16"))
        .await;
    env.wait_until(
        &format!("statefulset/{name} has {replicas} ready replicas"),
        Duration::from_secs(120),
        || async {
            let sts = env.get_json(STS.0, STS.1, STS.2, STS.3, name).await?;
            (sts["status"]["readyReplicas"].as_i64() == Some(replicas as i64)).then_some(())
        },
    )
    .await;
}

pub(crate) fn volume<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no volume {name:?} in {}", pod["spec"]["volumes"]))
}

#[tokio::test]
async fn a_readwriteonce_claim_without_scale_down_exits_4_and_writes_nothing() {
    let env = TestEnv::new().await;
    running_db(&env, "db", 2, "ReadWriteOnce").await;
    for extra in [&[][..], &["--dry-run=client"][..]] {
        let mut args = vec!["create", "statefulset/db"];
        args.extend_from_slice(extra);
        mc(&env, &args).await.code(4).stderr_has(&[
            "statefulset/db mounts the ReadWriteOnce volume claim data-db-0",
            "db-0 is using it",
            "--scale-down",
            "--claims-as-emptydir",
        ]);
    }
    assert_nothing_left(&env).await;
    assert_eq!(replicas(&env, "StatefulSet", "statefulsets", "db").await, 2);
}

#[tokio::test]
async fn claims_as_emptydir_runs_beside_the_original() {
    let env = TestEnv::new().await;
    running_db(&env, "db", 2, "ReadWriteOnce").await;
    let pod = create(&env, &["statefulset/db", "--claims-as-emptydir"]).await;
    let copy = check_copy(&env, &pod, "statefulset/db", "db").await;
    let data = volume(&copy.pod, "data");
    assert!(data["emptyDir"].is_object(), "{data}");
    assert!(data.get("persistentVolumeClaim").is_none(), "{data}");
    assert_eq!(replicas(&env, "StatefulSet", "statefulsets", "db").await, 2);
    assert!(
        env.get_pod("db-0").await.is_some(),
        "the original keeps running"
    );
    mc(&env, &["delete", &pod]).await.ok();
    wait_pod_gone(&env, &pod).await;
}

#[tokio::test]
async fn scale_down_hands_ordinal_zeros_claim_to_the_copy_and_gives_it_back() {
    let env = TestEnv::new().await;
    running_db(&env, "db", 2, "ReadWriteOnce").await;
    if let Some(fake) = env.fake() {
        fake.request_log().clear();
    }
    let run = mc(&env, &["create", "statefulset/db", "--scale-down", "-v"]).await;
    let pod = run.ok().trim().to_string();
    run.stderr_has(&["waiting for db-0 to stop and release data-db-0"]);
    let copy = check_copy(&env, &pod, "statefulset/db", "db").await;
    assert_eq!(
        volume(&copy.pod, "data")["persistentVolumeClaim"]["claimName"],
        "data-db-0"
    );
    assert_eq!(copy.pod["status"]["phase"], "Running");
    assert_eq!(replicas(&env, "StatefulSet", "statefulsets", "db").await, 0);
    assert!(
        env.get_pod("db-0").await.is_none(),
        "db-0 released its claim"
    );
    if let Some(fake) = env.fake() {
        // The order that makes a ReadWriteOnce hand-over work: scale to zero, then the copy.
        let requests = fake.requests();
        let position = |what: &dyn Fn(&fakekube::RequestRecord) -> bool| {
            requests.iter().position(what).unwrap_or_else(|| {
                panic!(
                    "request missing from {:#?}",
                    requests
                        .iter()
                        .map(|r| (&r.verb, &r.path))
                        .collect::<Vec<_>>()
                )
            })
        };
        let scaled = position(&|r| r.verb == "patch" && r.path.ends_with("/statefulsets/db"));
        let copied = position(&|r| r.verb == "create" && r.path.ends_with("/pods"));
        assert!(
            scaled < copied,
            "scaled at request {scaled}, copy created at {copied}"
        );
    }
    mc(&env, &["delete", &pod]).await.ok();
    assert_eq!(replicas(&env, "StatefulSet", "statefulsets", "db").await, 2);
    assert_nothing_left(&env).await;
}

#[tokio::test]
async fn a_failed_copy_gives_the_claim_back_and_restores_the_statefulset() {
    let env = TestEnv::new().await;
    // An image the registry does not hold fails to pull (ImagePullBackOff): bad-0 never
    // becomes Ready but holds its claim, and the copy fails the same way once it has the claim.
    let bad = db("bad", 1, "ReadWriteOnce", "ghcr.io/example/missing:1");
    env.apply_yaml(&bad).await;
    mc(
        &env,
        &[
            "create",
            "statefulset/bad",
            "--scale-down",
            "--timeout",
            "60s",
        ],
    )
    .await
    .code(6)
    .stderr_has(&[
        "ImagePullBackOff",
        "everything this run created was removed",
    ]);
    assert_nothing_left(&env).await;
    assert_eq!(
        replicas(&env, "StatefulSet", "statefulsets", "bad").await,
        1
    );
}

#[tokio::test]
async fn a_readwritemany_claim_is_shared_without_scale_down() {
    let env = TestEnv::new().await;
    running_db(&env, "shared", 1, "ReadWriteMany").await;
    let pod = create(&env, &["statefulset/shared"]).await;
    let copy = check_copy(&env, &pod, "statefulset/shared", "shared").await;
    assert_eq!(
        volume(&copy.pod, "data")["persistentVolumeClaim"]["claimName"],
        "data-shared-0"
    );
    assert_eq!(
        replicas(&env, "StatefulSet", "statefulsets", "shared").await,
        1
    );
    mc(&env, &["delete", &pod]).await.ok();
    wait_pod_gone(&env, &pod).await;
}
