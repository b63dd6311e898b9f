//! A kube client configured the way kubectl would be: --kubeconfig, else $KUBECONFIG (several
//! files merged, first wins), else ~/.kube/config; --context; the context's namespace unless -n.

use kube::config::{KubeConfigOptions, Kubeconfig};
use mirrord_copy_core::Error;

use crate::cli::GlobalArgs;

pub struct Cluster {
    pub client: kube::Client,
    /// The namespace commands act in: -n, else the context's, else "default".
    pub namespace: String,
    /// The kubeconfig context in use, recorded in the local state file.
    pub context: String,
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

pub async fn connect(global: &GlobalArgs) -> Result<Cluster, Error> {
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
    let client = kube::Client::try_from(config)
        .map_err(|e| Error::Unreachable(format!("cannot build a client: {e}")))?;
    Ok(Cluster {
        client,
        namespace,
        context,
    })
}
