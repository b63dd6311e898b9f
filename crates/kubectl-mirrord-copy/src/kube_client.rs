//! A kube client configured the way kubectl would be: --kubeconfig, else $KUBECONFIG (several
//! files merged, first wins), else ~/.kube/config; --context; the context's namespace unless -n.
//!
//! The HTTP stack under kube's client is built here, from kube's own layers in kube's order
//! (base URI, authentication, extra headers), over a hyper client with connect/read/write
//! timeouts whose TLS is the plugin's own ([`crate::tls`]: no Apple framework, so macOS builds
//! need no Apple SDK). kube's retry is off ([`crate::http_stack`] retries instead) and proxies
//! are refused, as kube built without its proxy features refuses them.

use http::{Request, Response};
use hyper_util::rt::TokioExecutor;
use kube::client::{Body, ClientBuilder, ConfigExt, DynBody};
use kube::config::{KubeConfigOptions, Kubeconfig};
use mirrord_copy_core::Error;
use tower::buffer::BufferLayer;
use tower::retry::RetryLayer;
use tower::util::{BoxService, MapResponseLayer};
use tower::{BoxError, ServiceBuilder, ServiceExt};

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
    let client = client_builder(config)
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

type BaseService = BoxService<Request<Body>, Response<Box<DynBody>>, BoxError>;

/// What kube's `ClientBuilder::try_from(config)` builds, with the plugin's TLS.
fn client_builder(config: kube::Config) -> Result<ClientBuilder<BaseService>, BoxError> {
    if let Some(proxy) = &config.proxy_url {
        return Err(format!("proxy-url {proxy} is not supported").into());
    }
    // kube's Auth: a token (static, from a file, from an auth provider or from an exec plugin,
    // refreshed when it expires), or None. An exec plugin answering with a client certificate
    // is None here: that certificate is the TLS identity instead, so the plugin is run again
    // for it (kube runs it for each of these too).
    let auth = config.auth_layer()?;
    let exec_identity = match (&auth, &config.auth_info.exec) {
        (None, Some(exec)) => crate::tls::exec_identity(exec)?,
        _ => None,
    };
    let mut connector =
        hyper_timeout::TimeoutConnector::new(crate::tls::https_connector(&config, exec_identity)?);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let http_client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, Body>(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(auth)
        .layer(config.extra_headers_layer()?)
        .map_request(log_request)
        .map_result(log_result)
        .service(http_client)
        .map_response(|response| {
            response.map(|body| {
                Box::new(http_body_util::BodyExt::map_err(body, BoxError::from)) as Box<DynBody>
            })
        });
    Ok(ClientBuilder::new(
        BoxService::new(service),
        config.default_namespace.clone(),
    ))
}

/// -vv shows every request, as kube's trace layer did.
fn log_request(request: Request<Body>) -> Request<Body> {
    tracing::debug!(method = %request.method(), url = %request.uri(), "requesting");
    request
}

/// Server errors and failed requests are logged as errors, as kube's trace layer did.
fn log_result<B>(
    result: Result<Response<B>, hyper_util::client::legacy::Error>,
) -> Result<Response<B>, BoxError> {
    match &result {
        Ok(response) if response.status().is_server_error() => {
            tracing::error!("failed with status {}", response.status())
        }
        Err(e) => tracing::error!("failed with error {e}"),
        Ok(_) => {}
    }
    result.map_err(BoxError::from)
}
