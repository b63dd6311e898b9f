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
    /// Cluster-scoped objects a test made on a real cluster (plural, name): deleted with it.
    cluster_scoped: std::sync::Mutex<Vec<(&'static str, String)>>,
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

/// A copy of a kubeconfig whose current context's user authenticates with `token` alone.
fn with_token(text: &str, token: &str) -> anyhow::Result<String> {
    let mut v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)?;
    let current = v["current-context"].as_str().unwrap_or("").to_string();
    let user = v["contexts"]
        .as_sequence()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["name"].as_str() == Some(current.as_str()))
        })
        .and_then(|c| c["context"]["user"].as_str())
        .unwrap_or("")
        .to_string();
    if let Some(users) = v["users"].as_sequence_mut() {
        for u in users {
            if u["name"].as_str() == Some(user.as_str()) {
                let mut only_token = serde_yaml_ng::Mapping::new();
                only_token.insert("token".into(), token.into());
                u["user"] = serde_yaml_ng::Value::Mapping(only_token);
            }
        }
    }
    Ok(serde_yaml_ng::to_string(&v)?)
}

/// A copy of a kubeconfig with the current context's namespace set.
fn with_namespace(src: &Path, ns: &str) -> anyhow::Result<String> {
    let mut v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(src)?)?;
    let current = v["current-context"].as_str().unwrap_or("").to_string();
    if let Some(ctxs) = v["contexts"].as_sequence_mut() {
        for c in ctxs {
            if c["name"].as_str() == Some(current.as_str()) {
                c["context"]["namespace"] = serde_yaml_ng::Value::String(ns.to_string());
            }
        }
    }
    Ok(serde_yaml_ng::to_string(&v)?)
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
            cluster_scoped: Default::default(),
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

    /// Make sure the custom resource type `crd_yaml` (a CustomResourceDefinition) defines is
    /// served. The fake serves the types it knows (Argo Rollouts and CD Applications, KEDA
    /// ScaledObjects) always: nothing to do. On a real cluster the CRD is applied (server-side,
    /// idempotent) and awaited until Established. It is left installed, unlike the test's other
    /// cluster-scoped objects: tests running at once share it, and deleting a CRD deletes every
    /// object of its type, theirs too.
    pub async fn install_crd(&self, crd_yaml: &str) {
        if self.fake.is_some() {
            return;
        }
        self.apply_yaml(crd_yaml).await;
        let doc = crate::seed::parse_documents(crd_yaml).expect("CRD YAML");
        let name = doc[0]["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        self.wait_until(
            &format!("CustomResourceDefinition {name} Established"),
            Duration::from_secs(60),
            || async {
                let crd = self
                    .get_cluster_json(
                        "apiextensions.k8s.io",
                        "v1",
                        "CustomResourceDefinition",
                        "customresourcedefinitions",
                        &name,
                    )
                    .await?;
                let established = crd["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Established" && c["status"] == "True");
                established.then_some(())
            },
        )
        .await;
        // Established does not mean discoverable: the API server's discovery documents are
        // rebuilt asynchronously after the CRD is accepted, so a client that discovers the kind
        // right away can still be told it is missing. Wait until discovery serves every version.
        let group = doc[0]["spec"]["group"]
            .as_str()
            .expect("spec.group")
            .to_string();
        let kind = doc[0]["spec"]["names"]["kind"]
            .as_str()
            .expect("spec.names.kind")
            .to_string();
        let versions: Vec<String> = doc[0]["spec"]["versions"]
            .as_array()
            .expect("spec.versions")
            .iter()
            .filter(|v| v["served"].as_bool().unwrap_or(true))
            .filter_map(|v| v["name"].as_str().map(str::to_string))
            .collect();
        for version in versions {
            let gvk = GroupVersionKind::gvk(&group, &version, &kind);
            self.wait_until(
                &format!("discovery to serve {group}/{version} {kind}"),
                Duration::from_secs(60),
                || async { kube::discovery::pinned_kind(&self.client, &gvk).await.ok() },
            )
            .await;
        }
    }

    /// A cluster-scoped object as JSON, if it exists.
    pub async fn get_cluster_json(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        name: &str,
    ) -> Option<Value> {
        let ar = kube::discovery::ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, kind),
            plural,
        );
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        let o = api.get_opt(name).await.ok()??;
        serde_json::to_value(o).ok()
    }

    /// A kubeconfig for the same cluster and namespace that authenticates as ServiceAccount
    /// `sa` of the test namespace, bound to the Roles/ClusterRoles in `rbac_yaml` (e.g. the
    /// project's `plugin-manifest/role.yaml`): a Role by a RoleBinding in the test namespace, a
    /// ClusterRole by a ClusterRoleBinding (removed with the test). On a real cluster the
    /// objects are created there and the token comes from the TokenRequest API, as `kubectl
    /// create token` gets one.
    pub async fn kubeconfig_with_roles(&self, sa: &str, rbac_yaml: &str) -> PathBuf {
        let path = self._tmp.path().join(format!("kubeconfig-{sa}"));
        if let Some(fake) = &self.fake {
            let token = fake
                .token_with_roles(&self.namespace, sa, rbac_yaml)
                .expect("binding roles");
            fake.write_kubeconfig(&path, &self.namespace, &token)
                .unwrap();
            return path;
        }
        let g = "rbac.authorization.k8s.io";
        let subject = json!([{"kind": "ServiceAccount", "name": sa, "namespace": self.namespace}]);
        let mut docs = vec![json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": sa}})];
        for mut doc in crate::seed::parse_documents(rbac_yaml).expect("RBAC YAML") {
            let name = doc["metadata"]["name"].as_str().unwrap_or("").to_string();
            match doc["kind"].as_str() {
                Some("Role") => {
                    doc["metadata"]["namespace"] = json!(self.namespace);
                    docs.push(
                        json!({"apiVersion": format!("{g}/v1"), "kind": "RoleBinding",
                        "metadata": {"name": format!("{name}-{sa}")}, "subjects": subject,
                        "roleRef": {"apiGroup": g, "kind": "Role", "name": name}}),
                    );
                    docs.insert(1, doc);
                }
                Some("ClusterRole") => {
                    // Named per test, so tests running at once never share (or delete) one.
                    let unique = format!("{name}-{}", self.namespace);
                    doc["metadata"]["name"] = json!(unique);
                    self.cluster_scoped.lock().unwrap().extend([
                        ("clusterroles", unique.clone()),
                        ("clusterrolebindings", unique.clone()),
                    ]);
                    docs.push(
                        json!({"apiVersion": format!("{g}/v1"), "kind": "ClusterRoleBinding",
                        "metadata": {"name": unique}, "subjects": subject,
                        "roleRef": {"apiGroup": g, "kind": "ClusterRole", "name": unique}}),
                    );
                    docs.insert(1, doc);
                }
                _ => {}
            }
        }
        for doc in docs {
            self.apply_yaml(&serde_json::to_string(&doc).unwrap()).await;
        }
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let request = k8s_openapi::api::authentication::v1::TokenRequest {
            spec: Some(k8s_openapi::api::authentication::v1::TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let token = accounts
            .create_token_request(sa, &PostParams::default(), &request)
            .await
            .expect("TokenRequest")
            .status
            .and_then(|s| s.token)
            .expect("a token");
        let text = std::fs::read_to_string(&self.kubeconfig).unwrap();
        std::fs::write(&path, with_token(&text, &token).expect("kubeconfig")).unwrap();
        path
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

    /// Objects of the test namespace matching a label selector, as JSON
    /// (`("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")`).
    pub async fn list_json(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        selector: &str,
    ) -> Vec<Value> {
        let list = self
            .dynamic(group, version, kind, plural)
            .list(&ListParams::default().labels(selector))
            .await
            .expect("LIST");
        list.items
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap())
            .collect()
    }

    /// Waits, watching, until no pod of the test namespace matches `selector`, at most
    /// `timeout` (then panics naming those left). A deleted pod stays until its kubelet has
    /// stopped it (its grace period, see the fake's `Store::delete`), on the fake as on a real
    /// cluster.
    pub async fn wait_pods_gone(&self, selector: &str, timeout: Duration) {
        use futures::TryStreamExt;
        use kube::api::{WatchEvent, WatchParams};
        let api = self.dynamic("", "v1", "Pod", "pods");
        let gone = async {
            loop {
                let list = api
                    .list(&ListParams::default().labels(selector))
                    .await
                    .expect("LIST pods");
                let mut left: std::collections::BTreeSet<String> = list
                    .items
                    .iter()
                    .filter_map(|p| p.metadata.name.clone())
                    .collect();
                if left.is_empty() {
                    return;
                }
                let rv = list.metadata.resource_version.clone().unwrap_or_default();
                let params = WatchParams::default().labels(selector).timeout(290);
                let Ok(stream) = api.watch(&params, &rv).await else {
                    continue;
                };
                let mut stream = Box::pin(stream);
                while let Ok(Some(ev)) = stream.try_next().await {
                    match ev {
                        WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                            left.extend(o.metadata.name);
                        }
                        WatchEvent::Deleted(o) => {
                            if let Some(n) = &o.metadata.name {
                                left.remove(n);
                            }
                        }
                        WatchEvent::Bookmark(_) => {}
                        WatchEvent::Error(_) => break, // e.g. 410 Gone: list again
                    }
                    if left.is_empty() {
                        return;
                    }
                }
            }
        };
        if tokio::time::timeout(timeout, gone).await.is_err() {
            let left: Vec<String> = self
                .list_pods(selector)
                .await
                .iter()
                .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
                .collect();
            panic!("timed out after {timeout:?} waiting for pods {selector} to be gone: {left:?}");
        }
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
        let cluster_scoped = std::mem::take(&mut *self.cluster_scoped.lock().unwrap());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let client = client_from(&kubeconfig).await;
                for (plural, name) in cluster_scoped {
                    let kind = if plural == "clusterroles" {
                        "ClusterRole"
                    } else {
                        "ClusterRoleBinding"
                    };
                    let ar = kube::discovery::ApiResource::from_gvk_with_plural(
                        &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind),
                        plural,
                    );
                    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
                    let _ = api.delete(&name, &Default::default()).await;
                }
                // A test that left a crashed session's lock behind would keep its namespace
                // Terminating (the lock's restore finalizer waits for gc): let it go.
                let cms: Api<DynamicObject> = Api::namespaced_with(
                    client.clone(),
                    &ns,
                    &kube::discovery::ApiResource::from_gvk_with_plural(
                        &GroupVersionKind::gvk("", "v1", "ConfigMap"),
                        "configmaps",
                    ),
                );
                let ours = ListParams::default()
                    .labels("app.kubernetes.io/managed-by=kubectl-mirrord-copy");
                if let Ok(list) = cms.list(&ours).await {
                    for cm in list
                        .items
                        .iter()
                        .filter(|c| c.metadata.finalizers.is_some())
                    {
                        let unfinalized = Patch::Merge(json!({"metadata": {"finalizers": null}}));
                        let name = cm.metadata.name.clone().unwrap_or_default();
                        let _ = cms
                            .patch(&name, &PatchParams::default(), &unfinalized)
                            .await;
                    }
                }
                let nss: Api<DynamicObject> = Api::all_with(client, &ns_resource());
                let _ = nss.delete(&ns, &Default::default()).await;
            });
        })
        .join();
    }
}
