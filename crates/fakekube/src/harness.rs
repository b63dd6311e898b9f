//! `TestEnv`: what an end-to-end test needs. A fresh [`FakeCluster`] per test, or the real
//! cluster named by `MIRRORD_COPY_TEST_KUBECONFIG`; a unique namespace `mc-<random>`; a
//! kubeconfig whose context defaults to that namespace; an isolated state directory.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use serde_json::{json, Value};

use crate::server::{FakeCluster, ServerOptions};
use crate::ADMIN_TOKEN;

/// The env var naming a real cluster's kubeconfig to run the e2e tests against.
pub const REAL_CLUSTER_ENV: &str = "MIRRORD_COPY_TEST_KUBECONFIG";

/// One test's cluster (fake or real), namespace, client and scratch directory; the namespace and the fake go when it is dropped.
pub struct TestEnv {
    /// The test's own namespace, `mc-<random>`.
    pub namespace: String,
    /// A kubeconfig whose current context defaults to `namespace`.
    pub kubeconfig: PathBuf,
    /// A client for the cluster, defaulting to `namespace`.
    pub client: kube::Client,
    /// `MIRRORD_COPY_STATE_DIR` for commands.
    pub state_dir: PathBuf,
    fake: Option<FakeCluster>,
    _tmp: tempfile::TempDir,
}

/// `mc-` and 8 characters of [a-z0-9].
fn random_namespace() -> String {
    format!("mc-{}", crate::validation::random_suffix(8))
}

async fn client_from(path: &Path) -> kube::Client {
    let kc = Kubeconfig::read_from(path).expect("reading kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    kube::Client::try_from(cfg).expect("kube client")
}

/// A copy of a kubeconfig with the current context's namespace set.
fn with_namespace(src: &Path, ns: &str) -> anyhow::Result<String> {
    let mut v: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(src)?)?;
    let current = v["current-context"].as_str().unwrap_or("").to_string();
    if let Some(ctxs) = v["contexts"].as_sequence_mut() {
        for c in ctxs {
            if c["name"].as_str() == Some(current.as_str()) {
                c["context"]["namespace"] = serde_yaml::Value::String(ns.to_string());
            }
        }
    }
    Ok(serde_yaml::to_string(&v)?)
}

impl TestEnv {
    /// Fake cluster, or the real cluster named by MIRRORD_COPY_TEST_KUBECONFIG; a fresh
    /// namespace per test.
    pub async fn new() -> TestEnv {
        Self::with_options(ServerOptions::default()).await
    }

    /// Like [`TestEnv::new`], with options for the fake cluster (ignored on a real cluster).
    pub async fn with_options(opts: ServerOptions) -> TestEnv {
        let tmp = tempfile::tempdir().expect("tempdir");
        let namespace = random_namespace();
        let kubeconfig = tmp.path().join("kubeconfig");
        let state_dir = tmp.path().join("state");
        std::fs::create_dir_all(&state_dir).unwrap();
        let fake = match std::env::var_os(REAL_CLUSTER_ENV) {
            Some(real) => {
                let text = with_namespace(Path::new(&real), &namespace).expect("real kubeconfig");
                std::fs::write(&kubeconfig, text).unwrap();
                None
            }
            None => {
                let fake = FakeCluster::start(opts).await.expect("start fake cluster");
                fake.write_kubeconfig(&kubeconfig, &namespace, ADMIN_TOKEN)
                    .unwrap();
                Some(fake)
            }
        };
        let client = client_from(&kubeconfig).await;
        let nss: Api<DynamicObject> = Api::all_with(client.clone(), &ns_resource());
        let ns_obj: DynamicObject = serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        )
        .unwrap();
        nss.create(&PostParams::default(), &ns_obj)
            .await
            .expect("create test namespace");
        TestEnv {
            namespace,
            kubeconfig,
            client,
            state_dir,
            fake,
            _tmp: tmp,
        }
    }

    /// The fake cluster; None on a real cluster.
    pub fn fake(&self) -> Option<&FakeCluster> {
        self.fake.as_ref()
    }

    /// Create or update every object of a multi-document YAML, through the kube client
    /// (server-side apply, field manager `fakekube-harness`), into `self.namespace` unless a
    /// document names a namespace.
    pub async fn apply_yaml(&self, yaml: &str) {
        for doc in crate::seed::parse_documents(yaml).expect("YAML") {
            let api_version = doc["apiVersion"].as_str().expect("apiVersion").to_string();
            let kind = doc["kind"].as_str().expect("kind").to_string();
            let (group, version) = match api_version.split_once('/') {
                Some((g, v)) => (g.to_string(), v.to_string()),
                None => (String::new(), api_version.clone()),
            };
            let gvk = GroupVersionKind::gvk(&group, &version, &kind);
            let (ar, caps) = kube::discovery::pinned_kind(&self.client, &gvk)
                .await
                .unwrap_or_else(|e| panic!("discovering {api_version} {kind}: {e}"));
            let name = doc["metadata"]["name"]
                .as_str()
                .expect("metadata.name")
                .to_string();
            let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
                let ns = doc["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or(&self.namespace)
                    .to_string();
                Api::namespaced_with(self.client.clone(), &ns, &ar)
            } else {
                Api::all_with(self.client.clone(), &ar)
            };
            api.patch(
                &name,
                &PatchParams::apply("fakekube-harness").force(),
                &Patch::Apply(&doc),
            )
            .await
            .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
        }
    }

    /// A kubeconfig for the same cluster and namespace that authenticates as ServiceAccount
    /// `sa` of the test namespace, bound to the Roles/ClusterRoles in `rbac_yaml` (e.g. the
    /// project's `plugin-manifest/role.yaml`). Fake cluster only: None on a real cluster.
    pub fn kubeconfig_with_roles(&self, sa: &str, rbac_yaml: &str) -> Option<PathBuf> {
        let fake = self.fake.as_ref()?;
        let token = fake
            .token_with_roles(&self.namespace, sa, rbac_yaml)
            .expect("binding roles");
        let path = self._tmp.path().join(format!("kubeconfig-{sa}"));
        fake.write_kubeconfig(&path, &self.namespace, &token)
            .unwrap();
        Some(path)
    }

    /// A command for `bin` with KUBECONFIG, an isolated MIRRORD_COPY_STATE_DIR and NO_COLOR.
    pub fn command(&self, bin: &str) -> std::process::Command {
        let mut c = std::process::Command::new(bin);
        c.env("KUBECONFIG", &self.kubeconfig)
            .env("MIRRORD_COPY_STATE_DIR", &self.state_dir)
            .env("NO_COLOR", "1");
        c
    }

    /// Poll `check` every 50 ms until it returns Some or `timeout` passes (then panic with `what`).
    pub async fn wait_until<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn dynamic(&self, group: &str, version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
        let ar = kube::discovery::ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, kind),
            plural,
        );
        Api::namespaced_with(self.client.clone(), &self.namespace, &ar)
    }

    /// Any object of the test namespace as JSON, None if absent (`("apps","v1","Deployment","deployments")`).
    pub async fn get_json(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        name: &str,
    ) -> Option<Value> {
        let o = self
            .dynamic(group, version, kind, plural)
            .get_opt(name)
            .await
            .expect("GET");
        o.map(|o| serde_json::to_value(o).unwrap())
    }

    /// A pod of the test namespace as JSON, None if absent.
    pub async fn get_pod(&self, name: &str) -> Option<Value> {
        self.get_json("", "v1", "Pod", "pods", name).await
    }

    /// Pods of the test namespace matching a label selector (`app=web`), as JSON.
    pub async fn list_pods(&self, selector: &str) -> Vec<Value> {
        let api = self.dynamic("", "v1", "Pod", "pods");
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .expect("LIST pods");
        list.items
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap())
            .collect()
    }
}

fn ns_resource() -> kube::discovery::ApiResource {
    kube::discovery::ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("", "v1", "Namespace"),
        "namespaces",
    )
}

impl Drop for TestEnv {
    /// On a real cluster the namespace is deleted (in the background: the test is over). On the
    /// fake, the whole cluster goes away with the handle.
    fn drop(&mut self) {
        if self.fake.is_some() {
            return;
        }
        let kubeconfig = self.kubeconfig.clone();
        let ns = self.namespace.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let client = client_from(&kubeconfig).await;
                let nss: Api<DynamicObject> = Api::all_with(client, &ns_resource());
                let _ = nss.delete(&ns, &Default::default()).await;
            });
        })
        .join();
    }
}
