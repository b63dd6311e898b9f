//! `version`: the client's, and the server's when it answers (never an error: it is a probe).

use mirrord_copy_core::Error;
use serde_json::json;

use crate::cli::{DocOutput, GlobalArgs, VersionArgs};
use crate::commands::print;
use crate::kube_client::connect;
use crate::output::{to_json, to_yaml};

pub async fn version(global: &GlobalArgs, args: &VersionArgs) -> Result<i32, Error> {
    let client_version = format!("v{}", env!("CARGO_PKG_VERSION"));
    let server = match connect(global).await {
        Ok(cluster) => cluster
            .client
            .apiserver_version()
            .await
            .map(|info| info.git_version)
            .map_err(|e| Error::from_kube(e, "get", "version").to_string()),
        Err(e) => Err(e.to_string()),
    };
    let text = match args.output {
        None => {
            let server_line = match &server {
                Ok(v) => v.clone(),
                Err(why) => format!("unreachable ({why})"),
            };
            format!("Client Version: {client_version}\nServer Version: {server_line}\n")
        }
        Some(format) => {
            let doc = json!({
                "clientVersion": { "version": client_version },
                "serverVersion": match &server {
                    Ok(v) => json!({ "gitVersion": v }),
                    Err(why) => json!({ "unreachable": why }),
                },
            });
            match format {
                DocOutput::Json => to_json(&doc)?,
                DocOutput::Yaml => to_yaml(&doc)?,
            }
        }
    };
    print(&text).map(|_| 0)
}
