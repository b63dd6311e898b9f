//! [`FakeCluster`]: the store, the HTTP/1.1 listener on 127.0.0.1, RBAC, faults, the request
//! log and the simulated controllers, behind one cheap-to-clone handle. `stop()` closes the
//! listener and every open connection (watches included); `restart()` serves again on the same
//! port with the same state, like an API server that restarted over a persistent etcd.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::controllers::{self, Controllers};
use crate::faults::{Faults, RequestLog, RequestRecord};
use crate::rbac::{Identity, Rbac};
use crate::state::ServerState;
use crate::store::Store;

/// How to start a [`FakeCluster`].
#[derive(Default, Clone)]
pub struct ServerOptions {
    /// Listen on this port (127.0.0.1); a free one when None.
    pub port: Option<u16>,
    /// The controller switches to run with; defaults when None.
    pub controllers: Option<Arc<Controllers>>,
    /// Serve plain HTTP instead of HTTPS. kubectl sends no bearer token over plain HTTP, so
    /// only kube-rs clients work then.
    pub plain_http: bool,
    /// Refuse TLS connections that present no client certificate signed by the fake's CA
    /// (see `tls.rs`); by default one is asked for and optional, as kube-apiserver does.
    pub require_client_cert: bool,
}

struct Serving {
    accept: JoinHandle<()>,
    shutdown: watch::Sender<bool>,
}

struct Inner {
    state: Arc<ServerState>,
    controllers: Arc<Controllers>,
    controller_handles: Mutex<Vec<JoinHandle<()>>>,
    serving: Mutex<Option<Serving>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(s) = self.serving.lock().unwrap().take() {
            let _ = s.shutdown.send(true);
            s.accept.abort();
        }
        for h in self.controller_handles.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

/// A running fake kube-apiserver; clone freely.
#[derive(Clone)]
pub struct FakeCluster {
    inner: Arc<Inner>,
}

/// The namespaces a fresh cluster has.
const INITIAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// `client` is who the connection's client certificate authenticates as, if it gave one.
async fn serve_connection<IO>(
    io: IO,
    state: Arc<ServerState>,
    client: Option<Identity>,
    mut shutdown: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let kill = Arc::new(Notify::new());
    let k2 = kill.clone();
    let svc = service_fn(move |req| {
        let state = state.clone();
        let kill = k2.clone();
        let client = client.clone();
        async move {
            Ok::<_, std::convert::Infallible>(crate::http::handle(state, req, kill, client).await)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    tokio::select! {
        _ = conn => {}
        _ = kill.notified() => {}
        _ = shutdown.changed() => {}
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((stream, _)) = r else { continue };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    if state.tls {
                        let material = crate::tls::material();
                        let acceptor = if state.require_client_cert {
                            &material.strict_acceptor
                        } else {
                            &material.acceptor
                        };
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let client = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .and_then(|cert| crate::tls::certificate_identity(cert));
                            serve_connection(tls, state, client, shutdown).await;
                        }
                    } else {
                        serve_connection(stream, state, None, shutdown).await;
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}

impl FakeCluster {
    /// Start on 127.0.0.1 (a random free port unless `opts.port`), with the namespaces a new
    /// cluster has and every controller running.
    pub async fn start(opts: ServerOptions) -> anyhow::Result<FakeCluster> {
        let store = Store::new(crate::registry::builtin());
        let ns_rt = store.resource("", "namespaces").unwrap().clone();
        for ns in INITIAL_NAMESPACES {
            store.create(
                &ns_rt,
                None,
                serde_json::json!({"metadata": {"name": ns}}),
                false,
            )?;
        }
        Self::start_with_store(store, opts).await
    }

    /// Start over an existing store (e.g. one seeded beforehand).
    pub async fn start_with_store(
        store: Arc<Store>,
        opts: ServerOptions,
    ) -> anyhow::Result<FakeCluster> {
        let listener =
            TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], opts.port.unwrap_or(0)))).await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(ServerState {
            store: store.clone(),
            port,
            tls: !opts.plain_http,
            require_client_cert: opts.require_client_cert,
            rbac: Rbac::default(),
            faults: Faults::default(),
            log: RequestLog::default(),
            clock_offset_ms: AtomicI64::new(0),
        });
        let controllers = opts.controllers.unwrap_or_default();
        let handles = controllers::spawn_all(store, controllers.clone());
        let (tx, rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, state.clone(), rx));
        Ok(FakeCluster {
            inner: Arc::new(Inner {
                state,
                controllers,
                controller_handles: Mutex::new(handles),
                serving: Mutex::new(Some(Serving {
                    accept,
                    shutdown: tx,
                })),
            }),
        })
    }

    /// `https://127.0.0.1:<port>` (`http://` with `plain_http`).
    pub fn url(&self) -> String {
        let scheme = if self.inner.state.tls {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.inner.state.port)
    }

    /// The CA certificate (PEM) that signs the serving certificate; None for plain HTTP.
    pub fn ca_pem(&self) -> Option<&'static str> {
        self.inner
            .state
            .tls
            .then(|| crate::tls::material().ca_pem.as_str())
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.inner.state.port
    }

    /// The object store behind the API, for direct reads and writes in tests.
    pub fn store(&self) -> Arc<Store> {
        self.inner.state.store.clone()
    }

    /// A kubeconfig with one cluster, a token user and a context whose default namespace is
    /// `namespace`.
    pub fn write_kubeconfig(
        &self,
        path: &Path,
        namespace: &str,
        token: &str,
    ) -> anyhow::Result<()> {
        std::fs::write(
            path,
            crate::kubeconfig::kubeconfig_yaml(&self.url(), self.ca_pem(), namespace, token),
        )?;
        Ok(())
    }

    /// Its authorization: tokens and the roles bound to them.
    pub fn rbac(&self) -> &Rbac {
        &self.inner.state.rbac
    }

    /// The faults armed on it: arm one to fail, delay or drop matching requests.
    pub fn faults(&self) -> &Faults {
        &self.inner.state.faults
    }

    /// Move the API server's clock as its clients see it: from now on the `Date` header of
    /// every response is this machine's time plus `offset` (kube-apiserver's `Date` is its own
    /// clock, and the plugin judges every lease and expiry on it). `+3m` is "three minutes
    /// later" for lease decisions, without waiting; the fake's own timestamps
    /// (`creationTimestamp`, events) keep this machine's time. Zero restores the default.
    pub fn set_clock_offset(&self, offset: chrono::Duration) {
        let ms = offset.num_milliseconds();
        self.inner
            .state
            .clock_offset_ms
            .store(ms, Ordering::Relaxed);
    }

    /// The offset [`FakeCluster::set_clock_offset`] set (zero by default).
    pub fn clock_offset(&self) -> chrono::Duration {
        let ms = self.inner.state.clock_offset_ms.load(Ordering::Relaxed);
        chrono::Duration::milliseconds(ms)
    }

    /// Every request served so far (bounded), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.state.log.all()
    }

    /// The request log, for counters (`request_log().count("patch", "/scale")`) and clearing.
    pub fn request_log(&self) -> &RequestLog {
        &self.inner.state.log
    }

    /// Its simulated controllers: switch one off, or change the kubelet's timing.
    pub fn controllers(&self) -> &Arc<Controllers> {
        &self.inner.controllers
    }

    /// The image registry its kubelet pulls from (the real-cluster kit's images): push an
    /// image a test needs, as one would push it to a registry.
    pub fn images(&self) -> &crate::images::Registry {
        &self.inner.controllers.images
    }

    /// Create every object of a multi-document YAML (namespace from the document or `default`;
    /// missing namespaces are created).
    pub fn seed_yaml(&self, yaml: &str) -> anyhow::Result<()> {
        crate::seed::seed_yaml(&self.inner.state.store, yaml)
    }

    /// A token for ServiceAccount `ns/sa`, bound to every Role and ClusterRole in `rbac_yaml`
    /// (e.g. the project's shipped `plugin-manifest/role.yaml`): Roles are created in `ns`
    /// with a RoleBinding, ClusterRoles with a ClusterRoleBinding, as an administrator would.
    pub fn token_with_roles(&self, ns: &str, sa: &str, rbac_yaml: &str) -> anyhow::Result<String> {
        use serde_json::json;
        let store = self.store();
        let g = "rbac.authorization.k8s.io";
        let find = |plural: &str| {
            store
                .resource(g, plural)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("{plural} not served"))
        };
        let subject = json!([{"kind": "ServiceAccount", "name": sa, "namespace": ns}]);
        for mut doc in crate::seed::parse_documents(rbac_yaml)? {
            let name = doc["metadata"]["name"].as_str().unwrap_or("").to_string();
            let binding_name = format!("{name}-{sa}");
            match doc["kind"].as_str() {
                Some("Role") => {
                    doc["metadata"]["namespace"] = json!(ns);
                    store.create(&find("roles")?, Some(ns), doc, false)?;
                    let rb = json!({"metadata": {"name": binding_name}, "subjects": subject,
                        "roleRef": {"apiGroup": g, "kind": "Role", "name": name}});
                    store.create(&find("rolebindings")?, Some(ns), rb, false)?;
                }
                Some("ClusterRole") => {
                    let cr = find("clusterroles")?;
                    if store.get(&cr, None, &name).is_err() {
                        store.create(&cr, None, doc, false)?;
                    }
                    let crb = json!({"metadata": {"name": binding_name}, "subjects": subject,
                        "roleRef": {"apiGroup": g, "kind": "ClusterRole", "name": name}});
                    store.create(&find("clusterrolebindings")?, None, crb, false)?;
                }
                _ => {}
            }
        }
        // A real token carries the ServiceAccount's uid (SelfSubjectReview shows it); the
        // object may not exist here, as the fake does not require it.
        let uid = store
            .resource("", "serviceaccounts")
            .and_then(|rt| store.get(rt, Some(ns), sa).ok())
            .and_then(|o| o["metadata"]["uid"].as_str().map(String::from));
        Ok(self.rbac().service_account_token_with_uid(ns, sa, uid))
    }

    /// Stop serving: the listener and every open connection close. State is kept.
    pub async fn stop(&self) {
        let serving = self.inner.serving.lock().unwrap().take();
        if let Some(s) = serving {
            let _ = s.shutdown.send(true);
            let _ = s.accept.await;
        }
    }

    /// Serve again on the same port with the same state (stops first if still serving).
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.stop().await;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port()));
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    tracing::debug!("rebind {addr}: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let (tx, rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, self.inner.state.clone(), rx));
        *self.inner.serving.lock().unwrap() = Some(Serving {
            accept,
            shutdown: tx,
        });
        Ok(())
    }
}
