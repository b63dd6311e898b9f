//! Shared fixtures of the `plugin_*` end-to-end tests: running the binary, the workloads they
//! copy (probes everywhere, a sidecar, template labels and annotations), the checks every copy
//! pod must pass, and the reference status table built from real names.

pub use crate::plugin_bin;
pub use mirrord_copy_testkit::manifests::plain::{self, failing_deployment};
pub use mirrord_copy_testkit::manifests::probed::*;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use fakekube::harness::TestEnv;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use serde_json::Value;

pub const RS: (&str, &str, &str, &str) = ("apps", "v1", "ReplicaSet", "replicasets");

/// Labels that tie a pod to a controller: never on a copy (README, "create"). Written out from
/// the README rather than imported from core's list, so a label dropped there fails a test.
pub const CONTROLLER_LABELS: &[&str] = &[
    "pod-template-hash",
    "rollouts-pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
];

/// The fields of every session document (`-o json|yaml` of create, status, delete).
pub const SESSION_DOC_FIELDS: [&str; 10] = [
    "session",
    "namespace",
    "target",
    "copyPod",
    "scaleDown",
    "owner",
    "host",
    "created",
    "expires",
    "options",
];

/// The result of one run of the plugin.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Asserts exit 0; stdout.
    pub fn ok(&self) -> &str {
        self.code(0);
        &self.stdout
    }

    /// Asserts the exit code; self.
    pub fn code(&self, want: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(want),
            "exit code\n--- stdout\n{}--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts stderr contains every part.
    pub fn stderr_has(&self, parts: &[&str]) -> &Run {
        for p in parts {
            assert!(
                self.stderr.contains(p),
                "stderr lacks {p:?}:\n{}",
                self.stderr
            );
        }
        self
    }
}

/// `kubectl-mirrord_copy ARGS` with the test's kubeconfig and state dir.
pub async fn mc(env: &TestEnv, args: &[&str]) -> Run {
    mc_with(env, args, |_| {}).await
}

/// Like [`mc`], after `tweak` adjusted the command (extra env, another kubeconfig...).
pub async fn mc_with(
    env: &TestEnv,
    args: &[&str],
    tweak: impl FnOnce(&mut tokio::process::Command),
) -> Run {
    let mut c = tokio::process::Command::from(env.command(plugin_bin()));
    c.args(args).kill_on_drop(true);
    tweak(&mut c);
    let out = tokio::time::timeout(Duration::from_secs(90), c.output())
        .await
        .unwrap_or_else(|_| panic!("plugin {args:?} did not finish in 90s"))
        .expect("spawn the plugin");
    Run::from(out)
}

/// `create ARGS`, asserting success and that stdout is exactly the pod name and a newline.
pub async fn create(env: &TestEnv, args: &[&str]) -> String {
    let mut all = vec!["create"];
    all.extend_from_slice(args);
    let run = mc(env, &all).await;
    let out = run.ok();
    let pod = out.strip_suffix('\n').unwrap_or_else(|| panic!("{out:?}"));
    assert!(
        !pod.is_empty() && !pod.contains(['\n', ' ', '/']),
        "stdout is not a pod name: {out:?}"
    );
    pod.to_string()
}

pub fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A copy pod read back from the cluster, and the session ConfigMap that owns it.
pub struct Copy {
    pub pod: Value,
    pub session: ConfigMap,
}

/// Reads the copy pod and asserts every rule a copy obeys (README "create" and DESIGN.md):
/// no probes anywhere, no controller labels, the template's labels (`app`) and annotations
/// kept, ours added, one controller ownerReference: its session ConfigMap, which records it.
pub async fn check_copy(env: &TestEnv, pod_name: &str, target: &str, app: &str) -> Copy {
    let pod = env
        .get_pod(pod_name)
        .await
        .unwrap_or_else(|| panic!("copy pod {pod_name} does not exist"));
    let spec = &pod["spec"];
    for list in ["containers", "initContainers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                assert!(
                    c.get(probe).is_none_or(Value::is_null),
                    "{list} {} of {pod_name} still has {probe}: {c}",
                    c["name"]
                );
            }
        }
    }
    let labels = pod["metadata"]["labels"].as_object().expect("labels");
    for l in CONTROLLER_LABELS {
        assert!(
            !labels.contains_key(*l),
            "controller label {l} kept on {pod_name}: {labels:?}"
        );
    }
    assert_eq!(labels["app"], app, "app label kept");
    assert_eq!(
        labels["app.kubernetes.io/managed-by"],
        "kubectl-mirrord-copy"
    );
    assert_eq!(labels["mirrord-copy.io/role"], "copy");
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["mirrord-copy.io/original-target"], target);
    let created_at = ann["mirrord-copy.io/created-at"]
        .as_str()
        .expect("created-at");
    chrono::DateTime::parse_from_rfc3339(created_at).expect("created-at is RFC 3339");
    let options: Value = serde_json::from_str(
        ann["mirrord-copy.io/options"]
            .as_str()
            .expect("options annotation"),
    )
    .expect("options annotation is JSON");
    assert!(options.is_object(), "{options}");

    let owners = pod["metadata"]["ownerReferences"]
        .as_array()
        .expect("ownerReferences");
    assert_eq!(owners.len(), 1, "exactly one owner: {owners:?}");
    let owner = &owners[0];
    assert_eq!(owner["apiVersion"], "v1");
    assert_eq!(owner["kind"], "ConfigMap");
    assert_eq!(owner["controller"], true);
    let cm_name = owner["name"].as_str().unwrap();
    assert!(cm_name.starts_with("mirrord-copy-session-"), "{cm_name}");
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    let session = cms.get(cm_name).await.expect("the session ConfigMap");
    assert_eq!(owner["uid"].as_str(), session.metadata.uid.as_deref());
    let data = session.data.clone().unwrap_or_default();
    assert_eq!(data.get("copyPod").map(String::as_str), Some(pod_name));
    assert_eq!(
        data.get("target").map(String::as_str),
        Some(target),
        "session target"
    );
    assert_eq!(
        ann["mirrord-copy.io/created-by"].as_str(),
        data.get("owner").map(String::as_str),
        "the copy names the session's owner"
    );
    assert!(
        data.get("host").is_some_and(|h| h.contains('@')),
        "the session records user@host beside the owner: {data:?}"
    );
    Copy { pod, session }
}

/// Names of the session ConfigMaps (any, by our label) in the namespace.
pub async fn session_config_maps(env: &TestEnv, namespace: &str) -> Vec<String> {
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), namespace);
    cms.list(&ListParams::default().labels("app.kubernetes.io/managed-by=kubectl-mirrord-copy"))
        .await
        .expect("LIST configmaps")
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect()
}

/// Nothing of ours in the test namespace: no session or lock ConfigMap, and no copy pod once
/// the deleted ones finished terminating (a kubelet stops their containers first; the
/// placeholder ends at once, another container may take its grace period, 30 s by default).
pub async fn assert_nothing_left(env: &TestEnv) {
    let cms = session_config_maps(env, &env.namespace).await;
    assert!(cms.is_empty(), "ConfigMaps left behind: {cms:?}");
    env.wait_pods_gone("mirrord-copy.io/role=copy", Duration::from_secs(45))
        .await;
}

/// The logs of the copy's default container (a real cluster's kubelet serves them).
pub async fn kubectl_logs(env: &TestEnv, pod: &str) -> String {
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(env.client.clone(), &env.namespace);
    pods.logs(pod, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("logs of {pod}: {e}"))
}

/// Waits until the copy pod is gone (the garbage collector removes it with its session).
pub async fn wait_pod_gone(env: &TestEnv, pod: &str) {
    env.wait_until(
        &format!("pod {pod} deleted"),
        Duration::from_secs(30),
        || async { env.get_pod(pod).await.is_none().then_some(()) },
    )
    .await;
}

pub async fn replicas(env: &TestEnv, kind: &str, plural: &str, name: &str) -> i64 {
    let (group, version) = match kind {
        "Rollout" => ("argoproj.io", "v1alpha1"),
        _ => ("apps", "v1"),
    };
    let o = env
        .get_json(group, version, kind, plural, name)
        .await
        .unwrap_or_else(|| panic!("{kind} {name} exists"));
    o["spec"]["replicas"].as_i64().unwrap_or(1)
}

/// The ReplicaSet a Deployment's controller made (`<name>-<hash>`), once it exists.
pub async fn replicaset_of(env: &TestEnv, deployment: &str) -> String {
    env.wait_until(
        "the Deployment's ReplicaSet",
        Duration::from_secs(60),
        || async {
            let rs = list_json(env, RS, &format!("app={deployment}")).await;
            rs.into_iter().find_map(|r| {
                let owned = r["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|o| o["name"] == deployment));
                owned.then(|| r["metadata"]["name"].as_str().unwrap().to_string())
            })
        },
    )
    .await
}

/// Objects of the test namespace matching a label selector, as JSON.
pub async fn list_json(
    env: &TestEnv,
    (group, version, kind, plural): (&str, &str, &str, &str),
    selector: &str,
) -> Vec<Value> {
    let ar = kube::discovery::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk(group, version, kind),
        plural,
    );
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(env.client.clone(), &env.namespace, &ar);
    api.list(&ListParams::default().labels(selector))
        .await
        .expect("LIST")
        .items
        .into_iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect()
}

/// The reference table (`status`), widths computed from the content: `Active Copy Targets:`,
/// then an ASCII table with a rule under the header and under every row.
pub fn reference_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([headers[i].chars().count()])
                .max()
                .unwrap()
        })
        .collect();
    let rule: String = widths
        .iter()
        .map(|w| format!("{}+", "-".repeat(w + 2)))
        .fold("+".to_string(), |a, b| a + &b)
        + "\n";
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c:<w$} |"))
            .fold("|".to_string(), |a, b| a + &b)
            + "\n"
    };
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = format!("Active Copy Targets:\n{rule}{}{rule}", line(&header));
    for r in rows {
        out.push_str(&line(r));
        out.push_str(&rule);
    }
    out
}

pub const STATUS_HEADERS: [&str; 4] = [
    "Original Target",
    "Namespace",
    "Copy Pod Name",
    "Scale Down?",
];

/// One row of the reference table.
pub fn row(target: &str, namespace: &str, pod: &str, scale_down: bool) -> Vec<String> {
    vec![
        target.to_string(),
        namespace.to_string(),
        pod.to_string(),
        if scale_down { "*" } else { "" }.to_string(),
    ]
}

/// The cells of a rendered table's body rows (between `|`), trimmed.
pub fn table_rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// A copy of the test's kubeconfig whose server is a local port nothing listens on.
pub fn unreachable_kubeconfig(env: &TestEnv, dir: &Path) -> PathBuf {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut kc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&env.kubeconfig).unwrap()).unwrap();
    for c in kc["clusters"].as_sequence_mut().expect("clusters") {
        c["cluster"]["server"] = serde_yaml_ng::Value::String(format!("https://127.0.0.1:{port}"));
    }
    let path = dir.join("unreachable.kubeconfig");
    std::fs::write(&path, serde_yaml_ng::to_string(&kc).unwrap()).unwrap();
    path
}

/// The session ids recorded in the local state file.
pub fn state_sessions(env: &TestEnv) -> Vec<Value> {
    let text = std::fs::read_to_string(env.state_dir.join("sessions.json")).expect("sessions.json");
    let v: Value = serde_json::from_str(&text).expect("sessions.json is JSON");
    v["sessions"].as_array().cloned().unwrap_or_default()
}

/// Waits for a file to exist and be non-empty; its content.
pub async fn wait_file(env: &TestEnv, path: &Path) -> String {
    env.wait_until(
        &format!("{} written", path.display()),
        Duration::from_secs(60),
        || async {
            std::fs::read_to_string(path)
                .ok()
                .filter(|s| s.ends_with('\n'))
        },
    )
    .await
}

/// Argo CD's Application CRD, as much of it as the tests use (Argo CD's own: namespaced,
/// short names app and apps, no subresources; its schema here keeps every field).
pub const APPLICATION_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: applications.argoproj.io
spec:
  group: argoproj.io
  scope: Namespaced
  names:
    kind: Application
    listKind: ApplicationList
    plural: applications
    singular: application
    shortNames: [app, apps]
  versions:
    - name: v1alpha1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [metadata, spec]
          properties:
            spec:
              type: object
              x-kubernetes-preserve-unknown-fields: true
            status:
              type: object
              x-kubernetes-preserve-unknown-fields: true
"#;

/// An Argo CD Application `name` in `namespace` with automated sync, prune and `selfHeal`.
pub fn application(namespace: &str, name: &str, self_heal: bool) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: {name}
  namespace: {namespace}
spec:
  project: default
  source:
    repoURL: https://github.com/example/shop.git
    targetRevision: HEAD
    path: deploy
  destination:
    server: https://kubernetes.default.svc
    namespace: {namespace}
  syncPolicy:
    automated:
      prune: true
      selfHeal: {self_heal}
"#
    )
}

/// A Deployment `name` of `replicas` that Argo CD application `app_id` applies (annotation
/// tracking: `<app_id>:apps/Deployment:<namespace>/<name>`).
pub fn tracked_deployment(env: &TestEnv, name: &str, replicas: i32, app_id: &str) -> String {
    plain::deployment_of(name, replicas, "registry.k8s.io/pause:3.10").replacen(
        &format!("metadata:\n  name: {name}\n"),
        &format!(
            "metadata:\n  name: {name}\n  annotations:\n    argocd.argoproj.io/tracking-id: {app_id}:apps/Deployment:{}/{name}\n",
            env.namespace
        ),
        1,
    )
}

/// The Deployment's annotations (null when it has none).
pub async fn deployment_annotations(env: &TestEnv, name: &str) -> Value {
    env.get_json("apps", "v1", "Deployment", "deployments", name)
        .await
        .expect("the deployment")["metadata"]["annotations"]
        .clone()
}

/// `kubectl describe KIND NAME` in the test namespace, as a teammate without the plugin reads it.
pub async fn kubectl_describe(env: &TestEnv, kind: &str, name: &str) -> String {
    let out = tokio::process::Command::from(env.command("kubectl"))
        .args(["describe", kind, name])
        .output()
        .await
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl describe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
