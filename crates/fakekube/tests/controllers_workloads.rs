//! Deployment / ReplicaSet / StatefulSet / Job / Rollout / KEDA controllers over FakeCluster,
//! with the adoption rules of rs-adoption.json.

use std::sync::Arc;
use std::time::Duration;

use fakekube::selectors::LabelSelector;
use fakekube::store::Store;
use fakekube::{FakeCluster, ServerOptions};
use serde_json::{json, Value};

async fn cluster() -> FakeCluster {
    FakeCluster::start(ServerOptions::default()).await.unwrap()
}

fn get(store: &Store, group: &str, plural: &str, name: &str) -> Option<Arc<Value>> {
    let rt = store.resource(group, plural).unwrap().clone();
    store.get(&rt, Some("default"), name).ok()
}

fn pods(store: &Store, selector: &str) -> Vec<Arc<Value>> {
    let rt = store.resource("", "pods").unwrap().clone();
    store
        .list_matching(
            &rt,
            Some("default"),
            &LabelSelector::parse(selector).unwrap(),
        )
        .0
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn controller_kind(p: &Value) -> Option<String> {
    p["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .map(|r| {
            format!(
                "{}/{}",
                r["kind"].as_str().unwrap(),
                r["name"].as_str().unwrap()
            )
        })
}

async fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn set_replicas(store: &Store, group: &str, plural: &str, name: &str, n: i64) {
    let rt = store.resource(group, plural).unwrap().clone();
    let mut o = (*store.get(&rt, Some("default"), name).unwrap()).clone();
    o["spec"]["replicas"] = json!(n);
    store
        .update(&rt, Some("default"), name, o, None, false)
        .unwrap();
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "ghcr.io/example/py-serv:1.0"}]}
"#;

fn running_ready(store: &Store, sel: &str, n: usize) -> Option<Vec<Arc<Value>>> {
    let ps = pods(store, sel);
    (ps.len() == n
        && ps
            .iter()
            .all(|p| p["status"]["phase"] == "Running" && ready(p)))
    .then_some(ps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_creates_replicaset_and_ready_pods_and_scales_to_zero_and_back() {
    let fake = cluster().await;
    let store = fake.store();
    fake.seed_yaml(WEB).unwrap();
    let ps = eventually("2 ready pods", 5, || running_ready(&store, "app=web", 2)).await;
    let hash = ps[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!hash.is_empty() && hash.len() <= 10);
    assert!(
        hash.chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{hash}"
    );
    let rs_name = format!("web-{hash}");
    let rs = get(&store, "apps", "replicasets", &rs_name).expect("rs");
    assert_eq!(
        rs["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        json!(hash)
    );
    assert_eq!(
        rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"],
        json!(hash)
    );
    assert_eq!(controller_kind(&rs).unwrap(), "Deployment/web");
    for p in &ps {
        assert_eq!(controller_kind(p).unwrap(), format!("ReplicaSet/{rs_name}"));
        assert!(p["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{rs_name}-")));
        assert_eq!(p["spec"]["nodeName"], "fake-node");
        assert!(p["status"]["podIP"].is_string() && p["status"]["startTime"].is_string());
    }
    let d = eventually("deployment status", 5, || {
        get(&store, "apps", "deployments", "web").filter(|d| d["status"]["availableReplicas"] == 2)
    })
    .await;
    assert_eq!(d["status"]["readyReplicas"], 2);
    assert_eq!(d["status"]["updatedReplicas"], 2);
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    let conds = d["status"]["conditions"].as_array().unwrap();
    assert!(conds
        .iter()
        .any(|c| c["type"] == "Available" && c["status"] == "True"));

    set_replicas(&store, "apps", "deployments", "web", 0);
    eventually("no pods", 5, || {
        pods(&store, "app=web").is_empty().then_some(())
    })
    .await;
    let rs = get(&store, "apps", "replicasets", &rs_name).unwrap();
    assert_eq!(rs["spec"]["replicas"], 0);
    eventually("status 0", 5, || {
        get(&store, "apps", "deployments", "web").filter(|d| d["status"]["replicas"].is_null())
    })
    .await;
    set_replicas(&store, "apps", "deployments", "web", 2);
    eventually("2 ready pods again", 5, || {
        running_ready(&store, "app=web", 2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_adoption_follows_controller_ref_rules() {
    let fake = cluster().await;
    let store = fake.store();
    fake.seed_yaml(WEB).unwrap();
    let ps = eventually("2 ready pods", 5, || running_ready(&store, "app=web", 2)).await;
    let hash = ps[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    let originals: Vec<String> = ps
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let session = fake
        .store()
        .create(
            store.resource("", "configmaps").unwrap(),
            Some("default"),
            json!({"metadata": {"name": "session"}}),
            false,
        )
        .unwrap();
    let pod = |name: &str, labels: Value, owner: Option<&Value>| {
        let mut p = json!({"metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "web", "image": "ghcr.io/example/py-serv:1.0"}]}});
        if let Some(o) = owner {
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap",
                "name": o["metadata"]["name"], "uid": o["metadata"]["uid"], "controller": true}]);
        }
        store
            .create(
                store.resource("", "pods").unwrap(),
                Some("default"),
                p,
                false,
            )
            .unwrap();
    };
    pod(
        "copy-with-hash",
        json!({"app": "web", "pod-template-hash": hash}),
        None,
    );
    pod(
        "copy-owned",
        json!({"app": "web", "pod-template-hash": hash}),
        Some(&session),
    );
    pod("copy-no-hash", json!({"app": "web"}), None);
    // Adopted, then deleted as the excess (the newest, least ready pod).
    eventually("copy-with-hash deleted", 5, || {
        get(&store, "", "pods", "copy-with-hash")
            .is_none()
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let owned = get(&store, "", "pods", "copy-owned")
        .expect("a pod with a foreign controller ref is untouched");
    assert_eq!(controller_kind(&owned).unwrap(), "ConfigMap/session");
    let no_hash = get(&store, "", "pods", "copy-no-hash")
        .expect("a pod without pod-template-hash is untouched");
    assert!(no_hash["metadata"]["ownerReferences"].is_null());
    for n in &originals {
        assert!(get(&store, "", "pods", n).is_some(), "original {n} kept");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_adopts_a_pod_with_its_labels_and_deletes_it() {
    let fake = cluster().await;
    let store = fake.store();
    fake.seed_yaml(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    metadata: {labels: {app: migrate}}
    spec: {restartPolicy: Never, containers: [{name: m, image: busybox, command: [sh, -c, "sleep 3"]}]}
"#,
    )
    .unwrap();
    let ps = eventually("job pod", 5, || {
        let ps = pods(&store, "app=migrate");
        (ps.len() == 1 && ps[0]["status"]["phase"] == "Running").then_some(ps)
    })
    .await;
    let labels = ps[0]["metadata"]["labels"].clone();
    for k in [
        "batch.kubernetes.io/controller-uid",
        "controller-uid",
        "batch.kubernetes.io/job-name",
        "job-name",
    ] {
        assert!(labels[k].is_string(), "{k} in {labels}");
    }
    assert_eq!(controller_kind(&ps[0]).unwrap(), "Job/migrate");
    store
        .create(
            store.resource("", "pods").unwrap(),
            Some("default"),
            json!({"metadata": {"name": "migrate-copy", "labels": labels},
            // pause exits at once on SIGTERM: the excess pod's graceful delete is quick
            "spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "registry.k8s.io/pause:3.10"}]}}),
            false,
        )
        .unwrap();
    eventually("migrate-copy deleted", 5, || {
        get(&store, "", "pods", "migrate-copy")
            .is_none()
            .then_some(())
    })
    .await;
    let job = eventually("job active 1", 5, || {
        get(&store, "batch", "jobs", "migrate").filter(|j| j["status"]["active"] == 1)
    })
    .await;
    assert!(job["status"]["startTime"].is_string());
    // Completion once the pod Succeeds (its `sleep 3` ends).
    let job = eventually("job complete", 5, || {
        get(&store, "batch", "jobs", "migrate").filter(|j| j["status"]["succeeded"] == 1)
    })
    .await;
    let _ = job;
    eventually("Complete condition", 5, || {
        get(&store, "batch", "jobs", "migrate").filter(|j| {
            j["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Complete" && c["status"] == "True")
            })
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pods_are_ordinal_and_non_ordinal_orphans_are_left_alone() {
    let fake = cluster().await;
    let store = fake.store();
    fake.seed_yaml(
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 3
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: "postgres:16"}]}
"#,
    )
    .unwrap();
    let ps = eventually("3 ready pods", 8, || running_ready(&store, "app=db", 3)).await;
    let mut names: Vec<&str> = ps
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["db-0", "db-1", "db-2"]);
    let l = &ps[1]["metadata"]["labels"];
    assert_eq!(l["statefulset.kubernetes.io/pod-name"], "db-1");
    assert_eq!(l["apps.kubernetes.io/pod-index"], "1");
    assert!(l["controller-revision-hash"]
        .as_str()
        .unwrap()
        .starts_with("db-"));
    store
        .create(
            store.resource("", "pods").unwrap(),
            Some("default"),
            json!({"metadata": {"name": "db-copy", "labels": {"app": "db"}},
            "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}),
            false,
        )
        .unwrap();
    set_replicas(&store, "apps", "statefulsets", "db", 1);
    eventually("scaled to 1", 5, || {
        let mut n: Vec<String> = pods(&store, "app=db")
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        (n == ["db-0", "db-copy"]).then_some(())
    })
    .await;
    let copy = get(&store, "", "pods", "db-copy").unwrap();
    assert!(copy["metadata"]["ownerReferences"].is_null());
    let sts = eventually("sts status", 5, || {
        get(&store, "apps", "statefulsets", "db").filter(|s| s["status"]["replicas"] == 1)
    })
    .await;
    assert_eq!(sts["status"]["readyReplicas"], 1);
}

fn claims(store: &Store, selector: &str) -> Vec<Arc<Value>> {
    let rt = store
        .resource("", "persistentvolumeclaims")
        .unwrap()
        .clone();
    let mut cs = store
        .list_matching(
            &rt,
            Some("default"),
            &LabelSelector::parse(selector).unwrap(),
        )
        .0;
    cs.sort_by_key(|c| c["metadata"]["name"].as_str().unwrap().to_string());
    cs
}

fn names_of(objs: &[Arc<Value>]) -> Vec<String> {
    let mut n: Vec<String> = objs
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

const DB_WITH_CLAIMS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 3
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: db
        image: "postgres:16"
        volumeMounts: [{name: data, mountPath: /var/lib/postgresql}, {name: config, mountPath: /etc/pg}]
      volumes:
      - {name: data, emptyDir: {}}
      - {name: config, emptyDir: {}}
  volumeClaimTemplates:
  - metadata: {name: data, labels: {tier: storage}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

/// volumeClaimTemplates: one claim `data-db-<ordinal>` per pod, created before it, mounted in
/// place of the template's own `data` volume, Bound by the binder, kept on scale-down (Retain)
/// and reused by the pod of the same ordinal when scaling up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_claims_from_volume_claim_templates_outlive_scale_down() {
    let fake = cluster().await;
    let store = fake.store();
    fake.seed_yaml(DB_WITH_CLAIMS).unwrap();
    let ps = eventually("3 ready pods", 8, || running_ready(&store, "app=db", 3)).await;
    let cs = eventually("3 bound claims", 5, || {
        let cs = claims(&store, "app=db");
        (cs.len() == 3 && cs.iter().all(|c| c["status"]["phase"] == "Bound")).then_some(cs)
    })
    .await;
    assert_eq!(names_of(&cs), ["data-db-0", "data-db-1", "data-db-2"]);
    for c in &cs {
        assert_eq!(
            c["metadata"]["labels"],
            json!({"app": "db", "tier": "storage"})
        );
        assert!(c["metadata"]["ownerReferences"].is_null(), "{c}");
        assert_eq!(
            c["metadata"]["finalizers"],
            json!(["kubernetes.io/pvc-protection"])
        );
        assert_eq!(c["spec"]["volumeMode"], "Filesystem");
        assert_eq!(
            c["spec"]["volumeName"],
            format!("pvc-{}", c["metadata"]["uid"].as_str().unwrap())
        );
        assert_eq!(c["status"]["accessModes"], json!(["ReadWriteOnce"]));
        assert_eq!(c["status"]["capacity"], json!({"storage": "1Gi"}));
    }
    for p in &ps {
        let n = p["metadata"]["name"].as_str().unwrap();
        let vols = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(
            vols[0],
            json!({"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{n}")}})
        );
        assert_eq!(vols[1], json!({"name": "config", "emptyDir": {}}));
        assert_eq!(
            vols.iter().filter(|v| v["name"] == "data").count(),
            1,
            "{vols:?}"
        );
    }
    let uid1 = cs[1]["metadata"]["uid"].clone();
    set_replicas(&store, "apps", "statefulsets", "db", 1);
    eventually("scaled to 1", 5, || {
        (names_of(&pods(&store, "app=db")) == ["db-0"]).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        names_of(&claims(&store, "app=db")),
        ["data-db-0", "data-db-1", "data-db-2"]
    );
    set_replicas(&store, "apps", "statefulsets", "db", 2);
    eventually("db-1 back", 8, || running_ready(&store, "app=db", 2)).await;
    let c1 = get(&store, "", "persistentvolumeclaims", "data-db-1").unwrap();
    assert_eq!(c1["metadata"]["uid"], uid1, "the same claim is reused");
}

/// `persistentVolumeClaimRetentionPolicy.whenDeleted: Delete`: the claims get a controller
/// reference to the StatefulSet, and go with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_claims_with_when_deleted_delete_go_with_the_set() {
    let fake = cluster().await;
    let store = fake.store();
    fake.seed_yaml(&DB_WITH_CLAIMS.replace(
        "  replicas: 3\n",
        "  replicas: 2\n  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete}\n",
    ))
    .unwrap();
    eventually("2 ready pods", 8, || running_ready(&store, "app=db", 2)).await;
    let sts = get(&store, "apps", "statefulsets", "db").unwrap();
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Delete", "whenScaled": "Retain"})
    );
    let cs = eventually("owned claims", 5, || {
        let cs = claims(&store, "app=db");
        (cs.len() == 2 && cs.iter().all(|c| controller_kind(c).is_some())).then_some(cs)
    })
    .await;
    for c in &cs {
        let refs = c["metadata"]["ownerReferences"].as_array().unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0]["uid"], sts["metadata"]["uid"]);
        assert_eq!(controller_kind(c).unwrap(), "StatefulSet/db");
    }
    let rt = store.resource("apps", "statefulsets").unwrap().clone();
    store
        .delete(&rt, Some("default"), "db", &Default::default())
        .unwrap();
    eventually("pods and claims gone", 8, || {
        (pods(&store, "app=db").is_empty() && claims(&store, "app=db").is_empty()).then_some(())
    })
    .await;
}

/// `whenScaled: Delete`: the claim of a scaled-down ordinal gets a controller reference to its
/// pod before the pod goes, and goes with it; the others stay unowned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_claims_with_when_scaled_delete_go_with_their_pod() {
    let fake = cluster().await;
    let store = fake.store();
    fake.seed_yaml(&DB_WITH_CLAIMS.replace(
        "  replicas: 3\n",
        "  replicas: 2\n  persistentVolumeClaimRetentionPolicy: {whenScaled: Delete}\n",
    ))
    .unwrap();
    eventually("2 ready pods", 8, || running_ready(&store, "app=db", 2)).await;
    set_replicas(&store, "apps", "statefulsets", "db", 1);
    eventually("data-db-1 gone", 5, || {
        (names_of(&claims(&store, "app=db")) == ["data-db-0"]).then_some(())
    })
    .await;
    assert_eq!(names_of(&pods(&store, "app=db")), ["db-0"]);
    let c0 = get(&store, "", "persistentvolumeclaims", "data-db-0").unwrap();
    assert!(c0["metadata"]["ownerReferences"].is_null(), "{c0}");
}

/// A claim the API server refuses (no access mode) holds the pod back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pod_waits_for_a_claim_the_server_refuses() {
    let fake = cluster().await;
    let store = fake.store();
    fake.seed_yaml(
        &DB_WITH_CLAIMS
            .replace("  replicas: 3\n", "  replicas: 1\n")
            .replace("      accessModes: [ReadWriteOnce]\n", ""),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pods(&store, "app=db").is_empty());
    assert!(claims(&store, "app=db").is_empty());
    let crt = store
        .resource("", "persistentvolumeclaims")
        .unwrap()
        .clone();
    let err = store
        .create(
            &crt,
            Some("default"),
            json!({"metadata": {"name": "data-db-0"}, "spec": {}}),
            false,
        )
        .unwrap_err();
    assert_eq!(err.code, 422);
    assert_eq!(
        err.message,
        "PersistentVolumeClaim \"data-db-0\" is invalid: [spec.accessModes: Required value: at least 1 access mode is required, spec.resources[storage]: Required value]"
    );
}

/// createMissingPersistentVolumeClaims: the claim of a Pending pod, deleted, is made again,
/// and the pod starts once the kubelet (and the scheduler) run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_remakes_the_missing_claim_of_a_pending_pod() {
    let fake = cluster().await;
    let store = fake.store();
    fake.controllers().set("kubelet", false);
    fake.seed_yaml(&DB_WITH_CLAIMS.replace("  replicas: 3\n", "  replicas: 1\n"))
        .unwrap();
    let first = eventually("pod and bound claim", 5, || {
        let c = get(&store, "", "persistentvolumeclaims", "data-db-0")?;
        (get(&store, "", "pods", "db-0").is_some() && c["status"]["phase"] == "Bound").then_some(c)
    })
    .await;
    let crt = store
        .resource("", "persistentvolumeclaims")
        .unwrap()
        .clone();
    store
        .delete(&crt, Some("default"), "data-db-0", &Default::default())
        .unwrap();
    let again = eventually("claim made again", 5, || {
        get(&store, "", "persistentvolumeclaims", "data-db-0")
            .filter(|c| c["metadata"]["uid"] != first["metadata"]["uid"])
    })
    .await;
    assert!(again["metadata"]["deletionTimestamp"].is_null());
    fake.controllers().set("kubelet", true);
    eventually("db-0 ready", 5, || running_ready(&store, "app=db", 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_with_workload_ref_uses_the_deployment_template() {
    let fake = cluster().await;
    let store = fake.store();
    fake.seed_yaml(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: checkout-base}
spec:
  replicas: 0
  selector: {matchLabels: {app: checkout}}
  template:
    metadata: {labels: {app: checkout}}
    spec: {containers: [{name: c, image: "ghcr.io/example/checkout:2.1"}]}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: checkout}
spec:
  replicas: 2
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: checkout-base}
  strategy: {canary: {}}
"#,
    )
    .unwrap();
    let ps = eventually("2 ready rollout pods", 5, || {
        running_ready(&store, "app=checkout", 2)
    })
    .await;
    let hash = ps[0]["metadata"]["labels"]["rollouts-pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(controller_kind(&ps[0])
        .unwrap()
        .starts_with(&format!("ReplicaSet/checkout-{hash}")));
    let ro = eventually("rollout status", 5, || {
        get(&store, "argoproj.io", "rollouts", "checkout")
            .filter(|r| r["status"]["availableReplicas"] == 2)
    })
    .await;
    assert_eq!(ro["status"]["readyReplicas"], 2);
    let sel = ro["status"]["selector"].as_str().unwrap();
    assert!(sel.contains("app=checkout") && sel.contains(&hash), "{sel}");
    // /scale reads status.HPAReplicas and status.selector.
    let rt = store.resource("argoproj.io", "rollouts").unwrap();
    let scale = fakekube::scale::to_scale(rt, &ro);
    assert_eq!(scale["status"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], sel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keda_scales_from_zero_unless_paused() {
    let fake = cluster().await;
    let store = fake.store();
    fake.seed_yaml(&WEB.replace("replicas: 2", "replicas: 0"))
        .unwrap();
    fake.seed_yaml(
        r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: web, annotations: {autoscaling.keda.sh/paused-replicas: "0"}}
spec:
  scaleTargetRef: {name: web}
  minReplicaCount: 1
  triggers: [{type: cpu, metricType: Utilization, metadata: {value: "50"}}]
"#,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        get(&store, "apps", "deployments", "web").unwrap()["spec"]["replicas"],
        0,
        "paused at 0"
    );
    let rt = store.resource("keda.sh", "scaledobjects").unwrap().clone();
    let mut so = (*store.get(&rt, Some("default"), "web").unwrap()).clone();
    so["metadata"]["annotations"] = json!({});
    store
        .update(&rt, Some("default"), "web", so, None, false)
        .unwrap();
    eventually("scaled from zero to 1", 5, || {
        running_ready(&store, "app=web", 1)
    })
    .await;
    assert_eq!(
        get(&store, "apps", "deployments", "web").unwrap()["spec"]["replicas"],
        1
    );
    // Pausing at 2 scales the target to 2 once; a later write to the target is not reverted
    // (KEDA's scale loop is stopped while paused).
    let mut so = (*store.get(&rt, Some("default"), "web").unwrap()).clone();
    so["metadata"]["annotations"] = json!({"autoscaling.keda.sh/paused-replicas": "2"});
    store
        .update(&rt, Some("default"), "web", so, None, false)
        .unwrap();
    eventually("paused at 2", 5, || {
        get(&store, "apps", "deployments", "web").filter(|d| d["spec"]["replicas"] == 2)
    })
    .await;
    set_replicas(&store, "apps", "deployments", "web", 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        get(&store, "apps", "deployments", "web").unwrap()["spec"]["replicas"],
        3
    );
    // Unpaused with pollingInterval 1: the scale loop brings a target at 0 back to minReplicaCount.
    let mut so = (*store.get(&rt, Some("default"), "web").unwrap()).clone();
    so["metadata"]["annotations"] = json!({});
    so["spec"]["pollingInterval"] = json!(1);
    store
        .update(&rt, Some("default"), "web", so, None, false)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    set_replicas(&store, "apps", "deployments", "web", 0);
    eventually("polled back to 1", 5, || {
        get(&store, "apps", "deployments", "web").filter(|d| d["spec"]["replicas"] == 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_can_be_switched_off() {
    let fake = cluster().await;
    let store = fake.store();
    fake.controllers().set("replicaset", false);
    fake.seed_yaml(WEB).unwrap();
    eventually("rs created", 5, || {
        let rt = store.resource("apps", "replicasets").unwrap().clone();
        (store.list(&rt, Some("default"), &|_| true).0.len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(pods(&store, "app=web").is_empty());
    fake.controllers().set("replicaset", true);
    eventually("pods", 5, || running_ready(&store, "app=web", 2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_deployment_cascades_to_replicasets_and_pods() {
    use fakekube::store::{DeleteOptions, Propagation};
    let fake = cluster().await;
    let store = fake.store();
    fake.seed_yaml(WEB).unwrap();
    eventually("2 ready pods", 5, || running_ready(&store, "app=web", 2)).await;
    let rt = store.resource("apps", "deployments").unwrap().clone();
    let opts = DeleteOptions {
        propagation: Propagation::Foreground,
        ..Default::default()
    };
    store.delete(&rt, Some("default"), "web", &opts).unwrap();
    eventually("everything gone", 5, || {
        let rss = store.resource("apps", "replicasets").unwrap().clone();
        (pods(&store, "app=web").is_empty()
            && store.list(&rss, Some("default"), &|_| true).0.is_empty()
            && get(&store, "apps", "deployments", "web").is_none())
        .then_some(())
    })
    .await;
}
