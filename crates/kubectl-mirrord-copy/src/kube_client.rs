//! A kube client configured the way kubectl would be: --kubeconfig, else $KUBECONFIG (several
//! files merged, first wins), else ~/.kube/config; --context; the context's namespace unless -n.
//!
//! The HTTP stack under kube's client is built here, from kube's own layers in kube's order
//! (base URI, authentication, extra headers), over a hyper client with connect/read/write
//! timeouts whose TLS is the plugin's own ([`crate::tls`]: no Apple framework, so macOS builds
//! need no Apple SDK). kube's retry is off ([`crate::http_stack`] retries instead) and proxies
//! are refused, as kube built without its proxy features refuses them.

use std::time::Duration;

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

/// A SHA-256 of the cluster URL and the kubeconfig user (token, certificate, exec command...):
/// other credentials, another key. Stable across builds and platforms, as a key written to the
/// state file must be (std's hasher is not).
fn identity_key(config: &kube::Config) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(config.cluster_url.to_string().as_bytes());
    hasher.update([0]);
    hasher.update(serde_json::to_string(&config.auth_info).unwrap_or_default());
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// --kubeconfig (which must exist), else the files `$KUBECONFIG` lists (merged, the first to
/// set a value wins; files that do not exist are skipped, as kubectl skips them), else
/// ~/.kube/config.
fn load_kubeconfig(global: &GlobalArgs) -> Result<Kubeconfig, Error> {
    let unreadable = |e: &dyn std::fmt::Display| {
        Error::Unreachable(format!(
            "cannot load a kubeconfig ({e}); pass --kubeconfig FILE or set KUBECONFIG"
        ))
    };
    if let Some(path) = &global.kubeconfig {
        return Kubeconfig::read_from(path).map_err(|e| unreadable(&e));
    }
    let listed: Vec<std::path::PathBuf> = std::env::var_os("KUBECONFIG")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if listed.is_empty() {
        return Kubeconfig::read().map_err(|e| unreadable(&e));
    }
    let (present, missing): (Vec<_>, Vec<_>) = listed.iter().partition(|p| p.exists());
    for path in &missing {
        tracing::debug!(
            "KUBECONFIG lists {}, which does not exist: skipped",
            path.display()
        );
    }
    if present.is_empty() {
        let names: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
        return Err(unreadable(&format!(
            "none of the files KUBECONFIG lists exists: {}",
            names.join(", ")
        )));
    }
    let mut merged = Kubeconfig::default();
    for path in present {
        let next = Kubeconfig::read_from(path).map_err(|e| unreadable(&e))?;
        merged = merged.merge(next).map_err(|e| unreadable(&e))?;
    }
    Ok(merged)
}

/// `kubectl-mirrord-copy/v0.1.0 (linux/amd64)`: the User-Agent of every request, in kubectl's
/// form (`kubectl/v1.36.4 (linux/amd64)`), with Go's names for the platform.
pub(crate) fn user_agent() -> String {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!(
        "{}/v{} ({os}/{arch})",
        mirrord_copy_lock::FIELD_MANAGER,
        env!("CARGO_PKG_VERSION")
    )
}

/// `--request-timeout`, or None for 0 (no timeout, as in kubectl).
fn request_timeout(global: &GlobalArgs) -> Option<std::time::Duration> {
    Some(global.request_timeout).filter(|t| !t.is_zero())
}

/// How long an exec credential plugin may take: --request-timeout (0: no limit); at least
/// [`INTERACTIVE_EXEC_TIMEOUT`] for one that may prompt a person at a terminal.
fn exec_timeout(
    global: &GlobalArgs,
    exec: &kube::config::ExecConfig,
) -> Option<std::time::Duration> {
    use std::io::IsTerminal;
    let timeout = request_timeout(global)?;
    let interactive = exec.interactive_mode != Some(kube::config::ExecInteractiveMode::Never)
        && std::io::stdin().is_terminal();
    Some(if interactive {
        timeout.max(INTERACTIVE_EXEC_TIMEOUT)
    } else {
        timeout
    })
}

/// The least time an exec plugin that may prompt (a browser or 2FA login) is given.
const INTERACTIVE_EXEC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub(crate) async fn connect(global: &GlobalArgs) -> Result<Cluster, Error> {
    // Before anything else: a namespace that is not one never gets near a URL.
    if let Some(ns) = global.explicit_namespace() {
        mirrord_copy_core::target::validate_namespace(ns)?;
    }
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
    let timeout = request_timeout(global);
    config.connect_timeout = timeout;
    config.read_timeout = timeout;
    config.write_timeout = timeout;
    let namespace = global
        .explicit_namespace()
        .map(str::to_string)
        .unwrap_or_else(|| config.default_namespace.clone());
    mirrord_copy_core::target::validate_namespace(&namespace)?;
    let identity_key = identity_key(&config);
    // Our own retry policy replaces kube's (which waits up to 15 times for as long as a server
    // asks): bounded, and never a write that may have been applied (crate::http_stack).
    config.default_retry = false;
    if let Ok(agent) = http::HeaderValue::from_str(&user_agent()) {
        config.headers.push((http::header::USER_AGENT, agent));
    }
    let builder = build_bounded(global, config).await?;
    let client = builder
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

/// [`client_builder`], which runs an exec credential plugin (kube's auth layer runs it while
/// it is built), bounded by [`exec_timeout`]: a plugin that hangs is killed and reported, and
/// one that fails is reported as kubectl reports it.
async fn build_bounded(
    global: &GlobalArgs,
    config: kube::Config,
) -> Result<ClientBuilder<BaseService>, Error> {
    let exec = config.auth_info.exec.clone();
    let program = exec
        .as_ref()
        .and_then(|e| e.command.clone())
        .unwrap_or_default();
    let bound = exec.as_ref().and_then(|e| exec_timeout(global, e));
    let mut build = tokio::task::spawn_blocking(move || client_builder(config));
    let built = match bound {
        Some(limit) => match tokio::time::timeout(limit, &mut build).await {
            Ok(joined) => joined,
            Err(_) => {
                stop_children_of(&mut build).await;
                return Err(Error::Unreachable(format!(
                    "getting credentials: exec: executable {program} did not answer within {}; it was stopped (--request-timeout bounds it; 0: no limit)",
                    humantime::format_duration(limit)
                )));
            }
        },
        None => build.await,
    };
    let built = built.map_err(|e| Error::Internal(format!("building the client: {e}")))?;
    built.map_err(|e| match exec_failure(&program, e.as_ref()) {
        Some(text) => Error::Unreachable(text),
        None => Error::Unreachable(format!(
            "cannot build a client: {}",
            mirrord_copy_lock::error_chain(e.as_ref())
        )),
    })
}

/// Kills the exec credential plugin until the build that runs it returns: kube waits for the
/// plugin's exit, so once it returns the plugin is dead and reaped. Under load the plugin may
/// not even have been started when the limit passed, so one kill is not enough. Bounded: a
/// plugin whose own children hold its pipes open is killed with them, but not waited for long.
async fn stop_children_of<T>(build: &mut tokio::task::JoinHandle<T>) {
    const GIVE_UP_AFTER: Duration = Duration::from_secs(3);
    let started = std::time::Instant::now();
    loop {
        kill_children();
        if tokio::time::timeout(Duration::from_millis(50), &mut *build)
            .await
            .is_ok()
            || started.elapsed() > GIVE_UP_AFTER
        {
            return;
        }
    }
}

/// An exec credential plugin's failure as kubectl words it (`getting credentials: exec:
/// executable /bin/sh failed with exit code 3`), with what it printed on stderr when that was
/// captured: never a dump of the process output.
fn exec_failure(program: &str, err: &(dyn std::error::Error + 'static)) -> Option<String> {
    use kube::client::AuthError;
    if let Some(text) = err.downcast_ref::<crate::tls::ExecFailed>() {
        return Some(text.to_string());
    }
    let kube::Error::Auth(auth) = err.downcast_ref::<kube::Error>()? else {
        return None;
    };
    Some(match auth {
        AuthError::AuthExecRun { out, .. } => {
            crate::tls::exec_status_text(program, &out.status, &out.stderr)
        }
        AuthError::AuthExecStart(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("getting credentials: exec: executable {program} not found")
        }
        AuthError::AuthExecStart(e) => {
            format!("getting credentials: exec: executable {program}: {e}")
        }
        AuthError::AuthExecParse(e) => {
            format!("getting credentials: decoding stdout of {program}: {e}")
        }
        other => format!(
            "getting credentials: {}",
            mirrord_copy_lock::error_chain(other)
        ),
    })
}

/// Stops every process this one started, and theirs: called only while the client is being
/// built, when the only child is an exec credential plugin that did not answer in time.
/// Linux only (from /proc); elsewhere the plugin is left to finish on its own.
fn kill_children() {
    #[cfg(target_os = "linux")]
    {
        fn children(pid: u32) -> Vec<u32> {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                return Vec::new();
            };
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
                .flat_map(|list| {
                    list.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect::<Vec<u32>>()
                })
                .collect()
        }
        let mut pending = children(std::process::id());
        let mut all = Vec::new();
        while let Some(pid) = pending.pop() {
            pending.extend(children(pid));
            all.push(pid);
        }
        for pid in all {
            // SAFETY: kill(2) on processes descended from this one, found just now.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
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

/// -vv shows server errors and failed requests too. Never at default verbosity: the error
/// reaches the user once, as the command's error (retries are told at -v).
fn log_result<B>(
    result: Result<Response<B>, hyper_util::client::legacy::Error>,
) -> Result<Response<B>, BoxError> {
    match &result {
        Ok(response) if response.status().is_server_error() => {
            tracing::debug!("failed with status {}", response.status())
        }
        Err(e) => tracing::debug!(
            "failed with error {}",
            mirrord_copy_lock::error_chain(e as &(dyn std::error::Error + 'static))
        ),
        Ok(_) => {}
    }
    result.map_err(BoxError::from)
}
