//! `gc`: end expired sessions and repair what crashed ones left behind.

use mirrord_copy_core::{gc, Error};

use crate::cli::{DocOutput, GcArgs, GlobalArgs};
use crate::commands::print;
use crate::kube_client::connect;
use crate::output::{to_json, to_yaml};
use crate::progress::Reporter;

pub(crate) async fn gc(global: &GlobalArgs, args: &GcArgs) -> Result<i32, Error> {
    let cluster = connect(global).await?;
    let scope = (!args.all_namespaces).then_some(cluster.namespace.as_str());
    let reporter = Reporter::new(global.verbose);
    let result = gc::gc(&cluster.client, scope, &reporter.sink()).await;
    reporter.finish();
    let report = result?;
    let text = match args.output {
        Some(DocOutput::Json) => to_json(&report)?,
        Some(DocOutput::Yaml) => to_yaml(&report)?,
        None => {
            let mut lines = Vec::new();
            let sections = [
                ("ended session", &report.ended_sessions),
                ("restored", &report.restored),
                ("deleted", &report.deleted),
                ("unpaused", &report.unpaused),
                ("left alone", &report.skipped),
            ];
            for (what, items) in sections {
                lines.extend(items.iter().map(|i| format!("{what}: {i}\n")));
            }
            if lines.is_empty() {
                "nothing to collect\n".to_string()
            } else {
                lines.concat()
            }
        }
    };
    print(&text).map(|_| 0)
}
