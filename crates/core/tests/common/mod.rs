//! Shared fixtures for core's integration tests against the fake API server (or a real
//! cluster, for the tests that do not need the fake): [`scale_down`] for the scale-down tests
//! (from `mirrord-copy-testkit`, the fixtures' one home).

#![allow(dead_code)]
// A test crate exports nothing: `pub` in its helper modules only shares them between test
// files, so unreachable_pub does not apply.
#![allow(unreachable_pub)]

/// The scale-down fixtures, shared with the plugin's end-to-end tests. Not every test file uses
/// them, as with the rest of this module.
#[allow(unused_imports)]
pub mod scale_down {
    pub use mirrord_copy_testkit::manifests::plain::*;
    pub use mirrord_copy_testkit::scale_down::*;
}

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fakekube::harness::TestEnv;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use mirrord_copy_core::{CreateRequest, Progress, ProgressFn};
use serde_json::json;

use scale_down::{client_from_kubeconfig, scale_down_request, Events};

/// One object of every target kind, each with probes to strip.
pub const WORKLOADS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: py-serv-deployment}
spec:
  replicas: 2
  selector: {matchLabels: {app: py-serv}}
  template:
    metadata: {labels: {app: py-serv}}
    spec:
      initContainers:
      - name: proxy
        image: envoy:1
        restartPolicy: Always
        readinessProbe: {tcpSocket: {port: 15000}}
      containers:
      - name: app
        image: py-serv:1
        livenessProbe: {httpGet: {path: /health, port: 80}}
        readinessProbe: {httpGet: {path: /ready, port: 80}}
        startupProbe: {httpGet: {path: /started, port: 80}}
      - name: metrics
        image: exporter:1
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 1
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: postgres, image: postgres:16}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: bare-rs}
spec:
  replicas: 1
  selector: {matchLabels: {app: bare}}
  template:
    metadata: {labels: {app: bare}}
    spec:
      containers: [{name: bare, image: bare:1}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    metadata: {labels: {app: migrate}}
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: migrate:1}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        metadata: {labels: {app: nightly}}
        spec:
          restartPolicy: OnFailure
          containers: [{name: report, image: report:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: debug-me, labels: {app: debug}}
spec:
  containers: [{name: shell, image: busybox:1, readinessProbe: {exec: {command: ["true"]}}}]
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: checkout}
spec:
  replicas: 2
  selector: {matchLabels: {app: checkout}}
  template:
    metadata: {labels: {app: checkout}}
    spec:
      containers: [{name: checkout, image: checkout:1}]
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: by-ref}
spec:
  replicas: 1
  selector: {matchLabels: {app: py-serv}}
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: py-serv-deployment}
"#;

/// A fake cluster with [`WORKLOADS`]. Core's integration tests play kubelet and use the fake's
/// RBAC and faults, so they are fake-only: built with `cfg(real_cluster)` they are ignored.
pub async fn env_with_workloads() -> TestEnv {
    let env = TestEnv::new().await;
    assert!(
        env.fake().is_some(),
        "core's integration tests need the fake API server: unset MIRRORD_COPY_TEST_KUBECONFIG"
    );
    env.apply_yaml(WORKLOADS).await;
    env
}

/// A `create` of `target` without scale-down or waiting, owned by `tester`.
pub fn request(env: &TestEnv, target: &str) -> CreateRequest {
    CreateRequest {
        scale_down: false,
        host: "tester@host".into(),
        wait: false,
        timeout: Duration::from_secs(10),
        ..scale_down_request(env, target, "tester")
    }
}

/// A progress callback that records every event.
pub fn recorder() -> (Arc<Mutex<Vec<Progress>>>, Box<ProgressFn>) {
    let events = Events::default();
    (events.0.clone(), Box::new(events.sink()))
}

pub fn quiet() -> Box<ProgressFn> {
    Box::new(|_| {})
}

/// A client for the same fake cluster authenticating with `token`.
pub async fn client_with_token(env: &TestEnv, token: &str) -> kube::Client {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    env.fake()
        .expect("fake cluster")
        .write_kubeconfig(&path, &env.namespace, token)
        .unwrap();
    client_from_kubeconfig(&path).await
}

/// Play kubelet for the copy pods of `env`: once a pod labelled as a copy appears, give it
/// `status` (merge-patched on /status).
pub fn set_copy_status(env: &TestEnv, status: serde_json::Value) -> tokio::task::JoinHandle<()> {
    set_copy_status_after_event(env, status, None)
}

/// Like [`set_copy_status`], first recording a Warning event `(reason, message)` for the pod.
pub fn set_copy_status_after_event(
    env: &TestEnv,
    status: serde_json::Value,
    event: Option<(&'static str, &'static str)>,
) -> tokio::task::JoinHandle<()> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.namespace);
    let ns = env.namespace.clone();
    tokio::spawn(async move {
        for _ in 0..200 {
            let list = pods
                .list(&kube::api::ListParams::default().labels("mirrord-copy.io/role=copy"))
                .await
                .unwrap();
            if let Some(pod) = list.items.first() {
                let name = pod.metadata.name.clone().unwrap();
                if let Some((reason, message)) = event {
                    let ev: Event = serde_json::from_value(json!({
                        "metadata": {"name": format!("{name}.1")},
                        "involvedObject": {"kind": "Pod", "name": name, "namespace": ns},
                        "type": "Warning", "reason": reason, "message": message
                    }))
                    .unwrap();
                    events.create(&PostParams::default(), &ev).await.unwrap();
                }
                pods.patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": status })),
                )
                .await
                .unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

pub fn ready_status() -> serde_json::Value {
    json!({
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "app", "image": "py-serv:1", "imageID": "", "ready": true,
            "restartCount": 0, "state": {"running": {}}}]
    })
}
