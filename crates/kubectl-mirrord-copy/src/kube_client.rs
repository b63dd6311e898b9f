//! A kube client configured the way kubectl would be: --kubeconfig, else $KUBECONFIG (several
//! files merged, first wins), else ~/.kube/config; --context; the context's namespace unless -n.

use http::Response;
use kube::client::DynBody;
use kube::config::{KubeConfigOptions, Kubeconfig};
use mirrord_copy_core::Error;
use tower::buffer::BufferLayer;
use tower::retry::RetryLayer;
use tower::util::MapResponseLayer;

use crate::cli::GlobalArgs;
use crate::http_stack::{observe_server_date, TransientRetry};

pub(crate) struct Cluster {
    pub client: kube::Client,
    /// The namespace commands act in: -n, else the context's, else "default".
    pub namespace: String,
    /// The kubeconfig context in use, recorded in the local state file.
    pub context: String,
    /// Names these credentials on this cluster (a hash: no secret is stored), so the identity
    /// the cluster reported for them can be cached.
    pub identity_key: String,
}

/// A hash of the cluster URL and the kubeconfig user (token, certificate, exec command...):
/// other credentials, another key.
fn identity_key(config: &kube::Config) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    config.cluster_url.to_string().hash(&mut hasher);
    serde_json::to_string(&config.auth_info)
        .unwrap_or_default()
        .hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn load_kubeconfig(global: &GlobalArgs) -> Result<Kubeconfig, Error> {
    let loaded = match &global.kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        // Kubeconfig::read handles $KUBECONFIG with several paths (merged as kubectl does)
        // and falls back to ~/.kube/config.
        None => Kubeconfig::read(),
    };
    loaded.map_err(|e| {
        Error::Unreachable(format!(
            "cannot load a kubeconfig ({e}); pass --kubeconfig FILE or set KUBECONFIG"
        ))
    })
}

pub(crate) async fn connect(global: &GlobalArgs) -> Result<Cluster, Error> {
    let kubeconfig = load_kubeconfig(global)?;
    let context = global
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone())
        .unwrap_or_default();
    if let Some(wanted) = &global.context {
        if !kubeconfig.contexts.iter().any(|c| &c.name == wanted) {
            let known: Vec<&str> = kubeconfig
                .contexts
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            return Err(Error::Usage(format!(
                "context {wanted:?} not found in the kubeconfig (contexts: {})",
                known.join(", ")
            )));
        }
    }
    let options = KubeConfigOptions {
        context: global.context.clone(),
        ..Default::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| Error::Unreachable(format!("invalid kubeconfig: {e}")))?;
    config.connect_timeout = Some(global.request_timeout);
    config.read_timeout = Some(global.request_timeout);
    config.write_timeout = Some(global.request_timeout);
    let namespace = global
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let identity_key = identity_key(&config);
    // Our own retry policy replaces kube's (which waits up to 15 times for as long as a server
    // asks): bounded, and never a write that may have been applied (crate::http_stack).
    config.default_retry = false;
    let client = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| Error::Unreachable(format!("cannot build a client: {e}")))?
        .with_layer(&MapResponseLayer::new(
            observe_server_date as fn(Response<Box<DynBody>>) -> Response<Box<DynBody>>,
        ))
        // Retry needs a service it can clone: a Buffer shares the boxed stack.
        .with_layer(&BufferLayer::new(1024))
        .with_layer(&RetryLayer::new(TransientRetry::default()))
        .build();
    Ok(Cluster {
        client,
        namespace,
        context,
        identity_key,
    })
}
