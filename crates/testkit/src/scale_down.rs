//! Helpers for the scale-down tests: hand-made sessions (so a test can stop after any step of
//! create, as SIGKILL would), counts, annotations, locks, and a stand-in kubelet for copies.
//! Used by core's scale-down tests and the plugin's process-level ones.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use fakekube::harness::TestEnv;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use mirrord_copy_core::gc::{gc, GcReport};
use mirrord_copy_core::labels::SCALED_DOWN_BY_ANNOTATION;
use mirrord_copy_core::labels::{self, Role};
use mirrord_copy_core::scale_down::{self, ScaleDownPlan, ScaleKind};
use mirrord_copy_core::{
    resolve, CopyOptions, Error, Progress, ProgressFn, ResolvedTarget, SessionHandle, TargetRef,
};
use mirrord_copy_lock::LockRecord;
use serde_json::{json, Value};

use crate::manifests::plain::{deployment, replicaset, with_metadata};

/// Does any of `lines` contain `text`?
pub fn mentions(lines: &[String], text: &str) -> bool {
    lines.iter().any(|l| l.contains(text))
}

/// Collects progress events.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<Progress>>>);

impl Events {
    /// A progress callback that records into these events.
    pub fn sink(&self) -> impl Fn(Progress) + Send + Sync + 'static {
        let events = self.0.clone();
        move |p| events.lock().unwrap().push(p)
    }

    /// The warnings reported, in order.
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

    /// Was a warning containing `text` reported?
    pub fn warned(&self, text: &str) -> bool {
        mentions(&self.warnings(), text)
    }

    /// Every event reported, in order.
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
    let ts = |t: chrono::DateTime<Utc>| mirrord_copy_lock::rfc3339(t);
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
    // What `create` records with the session when it scales: the workload and what pauses with
    // it, from the same read-only check (a target it cannot scale records none).
    let mut cm = cm;
    let resolved = resolve(&env.client, &env.namespace, &target.parse().unwrap()).await;
    let checked = match resolved {
        Ok(r) => scale_down::check_for_create(
            &env.client,
            &r,
            mirrord_copy_core::ScaleTo::Zero,
            false,
            scale_down::DEFAULT_ARGOCD_NAMESPACE,
        )
        .await
        .ok(),
        Err(_) => None,
    };
    if let (Some(checked), Some(data)) = (checked, cm.data.as_mut()) {
        data.insert(labels::DATA_WORKLOAD.into(), checked.workload());
        data.insert(
            labels::DATA_SCALED_OBJECTS.into(),
            checked.scaled_object_names().join(","),
        );
    }
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

/// `create`'s scale-down preparation of `target` for the session `handle`, with `lease`.
pub async fn prepare(
    env: &TestEnv,
    handle: &SessionHandle,
    target: &str,
    lease: Duration,
    on_progress: &ProgressFn,
) -> Result<ScaleDownPlan, Error> {
    let zero = mirrord_copy_core::ScaleTo::Zero;
    prepare_to(env, handle, target, zero, lease, on_progress).await
}

/// [`prepare`] scaling as far as `scale_to` says (`--replace-one`: one replica fewer).
pub async fn prepare_to(
    env: &TestEnv,
    handle: &SessionHandle,
    target: &str,
    scale_to: mirrord_copy_core::ScaleTo,
    lease: Duration,
    on_progress: &ProgressFn,
) -> Result<ScaleDownPlan, Error> {
    // As `create` does: the read-only check, then the lock for the session's holder.
    let resolved = resolved(env, target).await;
    let checked = scale_down::check_for_create(
        &env.client,
        &resolved,
        scale_to,
        false,
        scale_down::DEFAULT_ARGOCD_NAMESPACE,
    )
    .await?;
    let holder = scale_down::Holder::new(
        &format!("{}@test-host", handle.id),
        None,
        &format!("{}-copy", handle.id),
    );
    scale_down::prepare_checked(
        &env.client,
        checked,
        handle,
        &holder,
        lease,
        false,
        on_progress,
    )
    .await
}

/// `prepare` of `target` for a new live session `id`, with a LONG lease.
pub async fn prepare_new(
    env: &TestEnv,
    id: &str,
    target: &str,
    events: &Events,
) -> Result<ScaleDownPlan, Error> {
    let handle = session(env, id, target, false).await;
    prepare(env, &handle, target, LONG, &events.sink()).await
}

/// `scale_down::apply` of `plan`, which must succeed.
pub async fn apply(env: &TestEnv, plan: &ScaleDownPlan, events: &Events) {
    scale_down::apply(&env.client, plan, &events.sink())
        .await
        .unwrap();
}

/// `scale_down::restore` for the session `id`, which must succeed.
pub async fn restore(env: &TestEnv, id: &str, events: &Events) {
    scale_down::restore(&env.client, &env.namespace, id, &events.sink())
        .await
        .unwrap();
}

/// A live session `id` that has scaled `target` down (prepared and applied, LONG lease).
pub async fn scaled_down(env: &TestEnv, id: &str, target: &str, events: &Events) -> ScaleDownPlan {
    let plan = prepare_new(env, id, target, events)
        .await
        .unwrap_or_else(|e| panic!("{target}: {e}"));
    apply(env, &plan, events).await;
    plan
}

/// `gc` of the test namespace (progress discarded), which must succeed.
pub async fn gc_namespace(env: &TestEnv) -> GcReport {
    gc(&env.client, Some(&env.namespace), &Events::default().sink())
        .await
        .unwrap()
}

/// The ConfigMaps of the test namespace.
pub fn config_maps(env: &TestEnv) -> Api<ConfigMap> {
    Api::namespaced(env.client.clone(), &env.namespace)
}

/// `target` resolved in the test namespace, which must succeed.
pub async fn resolved(env: &TestEnv, target: &str) -> ResolvedTarget {
    let t: TargetRef = target.parse().unwrap();
    resolve(&env.client, &env.namespace, &t)
        .await
        .unwrap_or_else(|e| panic!("resolving {target}: {e}"))
}

/// The workloads of `kind` in the test namespace.
pub fn api(env: &TestEnv, kind: ScaleKind) -> Api<DynamicObject> {
    Api::namespaced_with(env.client.clone(), &env.namespace, &kind.resource())
}

/// The workload `name` of `kind` as JSON, if it exists.
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

/// The annotation `key` of the workload `name` of `kind`, which must exist.
pub async fn annotation(env: &TestEnv, kind: ScaleKind, name: &str, key: &str) -> Option<String> {
    object(env, kind, name).await.expect("workload exists")["metadata"]["annotations"][key]
        .as_str()
        .map(String::from)
}

/// spec.replicas of the Deployment `name`.
pub async fn deployment_replicas(env: &TestEnv, name: &str) -> i64 {
    replicas(env, ScaleKind::Deployment, name).await
}

/// The scaled-down-by annotation of the Deployment `name`.
pub async fn scaled_down_by(env: &TestEnv, name: &str) -> Option<String> {
    annotation(env, ScaleKind::Deployment, name, SCALED_DOWN_BY_ANNOTATION).await
}

/// Scale the workload `name` of `kind` to `n` through its /scale, as `kubectl scale` does.
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

/// The record a lock ConfigMap holds.
pub fn parse_lock(lock: &ConfigMap) -> LockRecord {
    LockRecord::parse(lock.data.as_ref().unwrap()).unwrap()
}

/// Deletes the ConfigMap `name` in the test namespace.
pub async fn delete_config_map(env: &TestEnv, name: &str) {
    config_maps(env)
        .delete(name, &Default::default())
        .await
        .unwrap();
}

/// Deletes every session ConfigMap in the test namespace.
pub async fn delete_sessions(env: &TestEnv) {
    for name in sessions(env).await {
        delete_config_map(env, &name).await;
    }
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

/// The annotations of the KEDA ScaledObject `name`.
pub async fn scaled_object_annotations(env: &TestEnv, name: &str) -> Value {
    env.get_json("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects", name)
        .await
        .unwrap()["metadata"]["annotations"]
        .clone()
}

/// A client authenticated as ServiceAccount `account`, bound only to the roles in `rbac`.
pub async fn client_with_roles(env: &TestEnv, account: &str, rbac: &str) -> kube::Client {
    let kubeconfig = env.kubeconfig_with_roles(account, rbac).await;
    client_from_kubeconfig(&kubeconfig).await
}

/// A client from the kubeconfig at `path`.
pub async fn client_from_kubeconfig(path: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// A ReplicaSet controlled by Deployment `owner`: the Deployment controller's if it makes one
/// (a real cluster, or the fake with its controllers), else one made here.
pub async fn owned_replicaset(env: &TestEnv, owner: &str) -> String {
    let uid = object(env, ScaleKind::Deployment, owner).await.unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..30 {
        let sets = api(env, ScaleKind::ReplicaSet)
            .list(&Default::default())
            .await
            .unwrap();
        let made = sets.items.iter().find(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid && r.controller == Some(true))
        });
        if let Some(rs) = made {
            return rs.metadata.name.clone().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let name = format!("{owner}-5d8f7c9b4");
    let yaml = with_metadata(
        &replicaset(&name, 3),
        &name,
        &format!(
            "  ownerReferences:\n    - {{apiVersion: apps/v1, kind: Deployment, name: {owner}, uid: {uid}, controller: true}}\n"
        ),
    );
    env.apply_yaml(&yaml).await;
    name
}

/// The Deployment x (`replicas`) and the name of a ReplicaSet it controls, for the races.
pub async fn deployment_x_and_replicaset(env: &TestEnv, replicas: i32) -> String {
    env.apply_yaml(&deployment("x", replicas)).await;
    owned_replicaset(env, "x").await
}

/// The target racer `i` names: the Deployment x when `i` is even, its ReplicaSet `rs` when odd.
pub fn racer_target(i: usize, rs: &str) -> String {
    if i.is_multiple_of(2) {
        "deployment/x".to_string()
    } else {
        format!("replicaset/{rs}")
    }
}

/// Let a lease written with zero length be strictly in the past.
pub async fn let_leases_expire() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

/// Is this kind served? (A real cluster may lack Argo Rollouts or KEDA: tests assert it, so
/// such a cluster fails them with a message instead of passing them untested.)
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

/// Start a [`CopyKubelet`] (nothing on a real cluster, whose kubelet does it).
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
        scale_to: mirrord_copy_core::ScaleTo::Zero,
        ttl: Some(Duration::from_secs(3600)),
        owner: owner.to_string(),
        host: "e2e@test-host".into(),
        wait: true,
        timeout: Duration::from_secs(30),
        reuse: false,
        suspend_flux: false,
        suspend_argocd: false,
        argocd_namespace: "argocd".into(),
    }
}
