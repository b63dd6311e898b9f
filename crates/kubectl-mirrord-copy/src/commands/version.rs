//! `version`: the client's, and the server's when it answers (never an error: it is a probe).

use mirrord_copy_core::Error;
use serde_json::json;

use crate::cli::{DocOutput, GlobalArgs, VersionArgs};
use crate::commands::print;
use crate::kube_client::connect;
use crate::output::{to_json, to_yaml};

pub(crate) async fn version(global: &GlobalArgs, args: &VersionArgs) -> Result<i32, Error> {
    let client_version = format!("v{}", env!("CARGO_PKG_VERSION"));
    // None: not asked for (--client).
    let server = if args.client {
        None
    } else {
        Some(server_version(global).await)
    };
    let text = match args.output {
        None => {
            let mut text = format!("Client Version: {client_version}\n");
            match &server {
                Some(Ok(v)) => text.push_str(&format!("Server Version: {v}\n")),
                Some(Err(why)) => text.push_str(&format!("Server Version: unreachable ({why})\n")),
                None => {}
            }
            text
        }
        Some(format) => {
            let mut doc = json!({ "clientVersion": { "version": client_version } });
            match &server {
                Some(Ok(v)) => doc["serverVersion"] = json!({ "gitVersion": v }),
                Some(Err(why)) => doc["serverVersion"] = json!({ "unreachable": why }),
                None => {}
            }
            match format {
                DocOutput::Json => to_json(&doc)?,
                DocOutput::Yaml => to_yaml(&doc)?,
            }
        }
    };
    print(&text).map(|_| 0)
}

/// The API server's gitVersion, or why it could not be had.
async fn server_version(global: &GlobalArgs) -> Result<String, String> {
    match connect(global).await {
        Ok(cluster) => cluster
            .client
            .apiserver_version()
            .await
            .map(|info| info.git_version)
            .map_err(|e| Error::from_kube(e, "get", "version").to_string()),
        Err(e) => Err(e.to_string()),
    }
}
