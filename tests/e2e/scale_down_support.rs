//! Helpers for the scale-down tests: workloads, hand-made sessions (so a test can stop after
//! any step of create, as SIGKILL would), counts and annotations.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use fakekube::harness::TestEnv;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use mirrord_copy_core::labels::{self, Role};
use mirrord_copy_core::scale_down::{self, ScaleDownPlan, ScaleKind};
use mirrord_copy_core::{
    resolve, CopyOptions, Error, Progress, ProgressFn, ResolvedTarget, SessionHandle, TargetRef,
};
use serde_json::{json, Value};

pub fn deployment(name: &str, replicas: i32) -> String {
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
      containers:
        - name: app
          image: registry.k8s.io/pause:3.10
"#
    )
}

pub fn statefulset(name: &str, replicas: i32) -> String {
    deployment(name, replicas)
        .replace("kind: Deployment", "kind: StatefulSet")
        .replace(
            "spec:\n  replicas",
            &format!("spec:\n  serviceName: {name}\n  replicas"),
        )
}

pub fn replicaset(name: &str, replicas: i32) -> String {
    deployment(name, replicas).replace("kind: Deployment", "kind: ReplicaSet")
}

pub fn rollout(name: &str, replicas: i32) -> String {
    deployment(name, replicas)
        .replace("apiVersion: apps/v1", "apiVersion: argoproj.io/v1alpha1")
        .replace("kind: Deployment", "kind: Rollout")
}

pub fn cronjob(name: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: {name}
spec:
  schedule: "0 3 * * *"
  suspend: false
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: job
              image: busybox
"#
    )
}

/// Collects progress events.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<Progress>>>);

impl Events {
    pub fn sink(&self) -> impl Fn(Progress) + Send + Sync + 'static {
        let events = self.0.clone();
        move |p| events.lock().unwrap().push(p)
    }

    pub fn warnings(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|p| match p {
                Progress::Warning(w) => Some(w.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn all(&self) -> Vec<Progress> {
        self.0.lock().unwrap().clone()
    }
}

/// A session ConfigMap as `session::create` writes it, so a test controls each later step.
/// `expired`: its `expires` is already in the past (gc will end it).
pub async fn session(env: &TestEnv, id: &str, target: &str, expired: bool) -> SessionHandle {
    let now = Utc::now();
    let expires = if expired {
        now - chrono::Duration::seconds(1)
    } else {
        now + chrono::Duration::hours(1)
    };
    let ts = |t: chrono::DateTime<Utc>| mirrord_copy_core::copy::timestamp(t);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {
            "name": labels::session_config_map_name(id),
            "labels": labels::managed_labels(id, Role::Session),
        },
        "data": {
            labels::DATA_VERSION: labels::SESSION_VERSION,
            labels::DATA_TARGET: target,
            labels::DATA_COPY_POD: format!("{id}-copy"),
            labels::DATA_SCALE_DOWN: "true",
            labels::DATA_OWNER: format!("{id}@test-host"),
            labels::DATA_CREATED: ts(now),
            labels::DATA_HEARTBEAT: ts(now),
            labels::DATA_EXPIRES: ts(expires),
            labels::DATA_OPTIONS: CopyOptions::default().to_json(),
        }
    }))
    .unwrap();
    let created = config_maps(env)
        .create(&PostParams::default(), &cm)
        .await
        .expect("create session ConfigMap");
    SessionHandle {
        id: id.to_string(),
        namespace: env.namespace.clone(),
        config_map: created.name_any(),
        uid: created.uid().unwrap(),
    }
}

/// A lease no test outlives.
pub const LONG: Duration = Duration::from_secs(3600);

/// `scale_down::prepare` of `target` for the session `handle`, with `lease`.
pub async fn prepare(
    env: &TestEnv,
    handle: &SessionHandle,
    target: &str,
    lease: Duration,
    on_progress: &ProgressFn,
) -> Result<ScaleDownPlan, Error> {
    let resolved = resolved(env, target).await;
    scale_down::prepare(&env.client, &resolved, handle, lease, on_progress).await
}

/// A live session `id` that has scaled `target` down (prepared and applied, LONG lease).
pub async fn scaled_down(env: &TestEnv, id: &str, target: &str, events: &Events) -> ScaleDownPlan {
    let handle = session(env, id, target, false).await;
    let plan = prepare(env, &handle, target, LONG, &events.sink())
        .await
        .unwrap_or_else(|e| panic!("{target}: {e}"));
    scale_down::apply(&env.client, &plan, &events.sink())
        .await
        .unwrap();
    plan
}

pub fn config_maps(env: &TestEnv) -> Api<ConfigMap> {
    Api::namespaced(env.client.clone(), &env.namespace)
}

pub async fn resolved(env: &TestEnv, target: &str) -> ResolvedTarget {
    let t: TargetRef = target.parse().unwrap();
    resolve(&env.client, &env.namespace, &t)
        .await
        .unwrap_or_else(|e| panic!("resolving {target}: {e}"))
}

pub fn api(env: &TestEnv, kind: ScaleKind) -> Api<DynamicObject> {
    Api::namespaced_with(env.client.clone(), &env.namespace, &kind.resource())
}

pub async fn object(env: &TestEnv, kind: ScaleKind, name: &str) -> Option<Value> {
    api(env, kind)
        .get_opt(name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}

/// spec.replicas (a CronJob: 0 when suspended, 1 otherwise).
pub async fn replicas(env: &TestEnv, kind: ScaleKind, name: &str) -> i64 {
    let o = object(env, kind, name).await.expect("workload exists");
    if kind == ScaleKind::CronJob {
        return if o["spec"]["suspend"].as_bool() == Some(true) {
            0
        } else {
            1
        };
    }
    o["spec"]["replicas"].as_i64().unwrap_or(1)
}

pub async fn annotation(env: &TestEnv, kind: ScaleKind, name: &str, key: &str) -> Option<String> {
    object(env, kind, name).await.expect("workload exists")["metadata"]["annotations"][key]
        .as_str()
        .map(String::from)
}

pub async fn scale_to(env: &TestEnv, kind: ScaleKind, name: &str, n: i32) {
    api(env, kind)
        .patch_scale(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": n}})),
        )
        .await
        .expect("scale");
}

/// Lock ConfigMaps in the test namespace.
pub async fn locks(env: &TestEnv) -> Vec<ConfigMap> {
    mirrord_copy_lock::list(&env.client, Some(&env.namespace), None)
        .await
        .unwrap()
}

/// Session ConfigMaps in the test namespace.
pub async fn sessions(env: &TestEnv) -> Vec<String> {
    config_maps(env)
        .list(&ListParams::default().labels(&labels::role_selector(Role::Session)))
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect()
}

/// Let a lease written with zero length be strictly in the past.
pub async fn let_leases_expire() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

/// Is this kind served? (A real cluster may lack Argo Rollouts or KEDA: those cases are skipped.)
pub async fn served(env: &TestEnv, group: &str, version: &str, kind: &str) -> bool {
    let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
    kube::discovery::pinned_kind(&env.client, &gvk)
        .await
        .is_ok()
}

/// Plays kubelet on the fake (the real one does it on a real cluster): every copy pod that
/// appears is marked Running and Ready. Aborted when dropped.
pub struct CopyKubelet(Option<tokio::task::JoinHandle<()>>);

impl Drop for CopyKubelet {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

pub fn copy_kubelet(env: &TestEnv) -> CopyKubelet {
    if env.fake().is_none() {
        return CopyKubelet(None);
    }
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(env.client.clone(), &env.namespace);
    CopyKubelet(Some(tokio::spawn(async move {
        loop {
            let selector = labels::role_selector(Role::Copy);
            if let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await {
                for pod in list.items {
                    let ready = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| {
                            c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    if ready || pod.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    let status = json!({"status": {
                        "phase": "Running",
                        "conditions": [{"type": "Ready", "status": "True"}],
                    }});
                    let _ = pods
                        .patch_status(
                            &pod.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(status),
                        )
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })))
}

/// A `create --scale-down` request as the CLI makes it.
pub fn scale_down_request(
    env: &TestEnv,
    target: &str,
    owner: &str,
) -> mirrord_copy_core::CreateRequest {
    mirrord_copy_core::CreateRequest {
        namespace: env.namespace.clone(),
        target: target.parse().unwrap(),
        options: CopyOptions::default(),
        scale_down: true,
        ttl: Some(Duration::from_secs(3600)),
        owner: owner.to_string(),
        wait: true,
        timeout: Duration::from_secs(30),
        reuse: false,
    }
}
