//! `status`: the reference table, or -o wide|json|yaml.

use mirrord_copy_core::{session, Error};
use mirrord_copy_lock::clock;

use crate::cli::{GlobalArgs, StatusArgs, StatusOutput};
use crate::commands::{print, recorded_here, state_entries};
use crate::kube_client::connect;
use crate::output::{to_json, to_yaml, ListDoc, SessionDoc};
use crate::status_table;

pub(crate) async fn status(global: &GlobalArgs, args: &StatusArgs) -> Result<i32, Error> {
    let cluster = connect(global).await?;
    let namespace = (!args.all_namespaces).then_some(cluster.namespace.as_str());
    // The reference table shows no phase: its sessions come from one LIST of ConfigMaps, and
    // the copy pods are listed only for the forms that show their phase.
    let overview = session::overview(&cluster.client, namespace, args.output.is_some()).await?;
    // On stderr, so the table and -o json|yaml stay as they are for scripts.
    for s in &overview.stranded {
        eprintln!(
            "warning: {} in namespace {} is held by the scale-down lock of session {}, which no longer exists; `kubectl mirrord-copy gc -n {}` restores it and releases the lock",
            s.workload, s.namespace, s.session, s.namespace
        );
    }
    let sessions = overview.sessions;
    let mine = state_entries();
    let is_yours = |s: &mirrord_copy_core::Session| recorded_here(&mine, s);
    let docs = || {
        sessions
            .iter()
            .map(|s| SessionDoc {
                yours: Some(is_yours(s)),
                ..SessionDoc::new(s)
            })
            .collect::<Vec<_>>()
    };
    let text = match args.output {
        None => status_table::render(&sessions),
        Some(StatusOutput::Wide) => status_table::render_wide(&sessions, clock::now(), &is_yours),
        Some(StatusOutput::Json) => to_json(&ListDoc::new("CopySessionList", docs()))?,
        Some(StatusOutput::Yaml) => to_yaml(&ListDoc::new("CopySessionList", docs()))?,
    };
    print(&text).map(|_| 0)
}
