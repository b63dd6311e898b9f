//! `status`: the reference table, or -o wide|json|yaml.

use mirrord_copy_core::{session, Error};
use mirrord_copy_lock::clock;

use crate::cli::{GlobalArgs, StatusArgs, StatusOutput};
use crate::commands::{forget_ended, listed_at, print, warn_stranded, Yours};
use crate::kube_client::connect;
use crate::output::{to_json, to_yaml, ListDoc, SessionDoc};
use crate::status_table;

pub(crate) async fn status(global: &GlobalArgs, args: &StatusArgs) -> Result<i32, Error> {
    let cluster = connect(global).await?;
    let namespace = (!args.all_namespaces).then_some(cluster.namespace.as_str());
    // One LIST of our ConfigMaps and one of copy pods, whatever the form: the reference table
    // shows no phase, but a session whose copy is gone is named below it.
    let started = std::time::Instant::now();
    let overview = session::overview(&cluster.client, namespace, true).await?;
    let listed_at = listed_at(started);
    // On stderr, so the table and -o json|yaml stay as they are for scripts.
    for s in &overview.stranded {
        warn_stranded(s);
    }
    for u in &overview.unreadable {
        eprintln!(
            "warning: session {} in namespace {} has a record that does not read back ({}); {}",
            u.id,
            u.namespace,
            u.why,
            u.remedy()
        );
    }
    for s in overview.sessions.iter().filter(|s| s.copy_gone()) {
        // The count its lock records as set (0 for a scale-down, N-1 for a replace-one).
        let at = match s.replicas {
            Some(r) if r.scaled_to > 0 => format!("at {} of {} replicas", r.scaled_to, r.original),
            _ => "at zero".to_string(),
        };
        let holds = match (&s.workload, s.scale_down) {
            (Some(w), true) => format!(", and still holds {w} {at}"),
            (None, true) => format!(", and may still hold its workload {at}"),
            _ => String::new(),
        };
        eprintln!(
            "warning: the copy pod {} of session {} ({}) in namespace {} is gone{holds}; `kubectl mirrord-copy gc -n {}` ends the session{}",
            s.copy_pod,
            s.id,
            s.target,
            s.namespace,
            s.namespace,
            if s.scale_down { ", restoring the workload first" } else { "" }
        );
    }
    let sessions = overview.sessions;
    // A complete list: what this machine recorded and the cluster no longer has ended elsewhere.
    forget_ended(&cluster, namespace, &sessions, listed_at);
    // Only the forms that show it ask who is yours (one request at most, cached for a day).
    let yours = match args.output {
        Some(_) => Some(Yours::of(&cluster, &sessions).await),
        None => None,
    };
    let is_yours = |s: &mirrord_copy_core::Session| yours.as_ref().is_some_and(|y| y.is(s));
    let docs = || {
        sessions
            .iter()
            .map(|s| SessionDoc {
                yours: Some(is_yours(s)),
                copy_gone: s.copy_gone(),
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
