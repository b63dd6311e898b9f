//! `delete`: end sessions by copy pod, by target, or all. Idempotent: ending what is already
//! gone is a note on stderr and exit 0, like `kubectl delete --ignore-not-found`.

use mirrord_copy_core::{session, Error, Session, TargetRef};

use crate::cli::{DeleteArgs, GlobalArgs, ListOutput};
use crate::commands::create::known_identity;
use crate::commands::{local_user, print, recorded_here, state_entries, with_state};
use crate::kube_client::{connect, Cluster};
use crate::output::{to_json, to_yaml, ListDoc, SessionDoc};
use crate::progress::Reporter;

/// The sessions that are yours: made by your Kubernetes user, or recorded in this machine's
/// state file. The others are listed on stderr as skipped.
async fn only_yours(cluster: &Cluster, sessions: Vec<Session>) -> Vec<Session> {
    let mine = state_entries();
    let (mut yours, rest): (Vec<Session>, Vec<Session>) =
        sessions.into_iter().partition(|s| recorded_here(&mine, s));
    if rest.is_empty() {
        return yours;
    }
    // Only asked when needed: one request.
    let me = known_identity(cluster).await.unwrap_or_else(local_user);
    let (also_yours, others): (Vec<Session>, Vec<Session>) =
        rest.into_iter().partition(|s| s.owner == me);
    yours.extend(also_yours);
    if !others.is_empty() {
        eprintln!(
            "skipped {} session(s) of other owners (--all-owners ends them too):",
            others.len()
        );
        for s in &others {
            let host = s
                .host
                .as_deref()
                .map(|h| format!(" on {h}"))
                .unwrap_or_default();
            eprintln!(
                "  {} pod/{} in {} (owner {}{host})",
                s.target, s.copy_pod, s.namespace, s.owner
            );
        }
    }
    yours
}

pub(crate) async fn delete(global: &GlobalArgs, args: &DeleteArgs) -> Result<i32, Error> {
    if args.pods.is_empty() && args.target.is_none() && !args.all {
        return Err(Error::Usage(
            "say which sessions to end: copy pod names, --target TARGET, or --all".into(),
        ));
    }
    let cluster = connect(global).await?;
    let scope = (!args.all_namespaces).then_some(cluster.namespace.as_str());
    let mut chosen: Vec<Session> = Vec::new();
    if let Some(target) = &args.target {
        let target: TargetRef = target.parse()?;
        chosen = session::find_by_target(&cluster.client, scope, &target).await?;
        if chosen.is_empty() {
            eprintln!("no active copy session for {target}: nothing to do");
        }
    } else if args.all {
        chosen = session::list(&cluster.client, scope).await?;
        if chosen.is_empty() {
            eprintln!("No active copy targets: nothing to do");
        }
    }
    if (args.target.is_some() || args.all) && !args.all_owners {
        chosen = only_yours(&cluster, chosen).await;
    }
    if !(args.target.is_some() || args.all) {
        // Named copy pods are ended whoever made them: naming one is explicit enough.
        for pod in &args.pods {
            match session::find_by_pod(&cluster.client, &cluster.namespace, pod).await? {
                Some(s) => chosen.push(s),
                None => eprintln!("pod \"{pod}\" has no active copy session (already ended)"),
            }
        }
    }

    let reporter = Reporter::new(global.verbose);
    let mut ended = Vec::new();
    let mut first_error = None;
    for s in chosen {
        // As just listed: no read of its record again.
        match session::end_session(&cluster.client, &s, &reporter.sink()).await {
            Ok(_) => {
                with_state(|state| state.remove(&s.namespace, &s.id));
                ended.push(s);
            }
            Err(e) => {
                reporter.line(&format!(
                    "error: ending the session of pod/{} in {}: {e}",
                    s.copy_pod, s.namespace
                ));
                first_error.get_or_insert(e);
            }
        }
    }
    reporter.finish();

    let docs = || ended.iter().map(SessionDoc::new).collect::<Vec<_>>();
    let text = match args.output {
        None => ended
            .iter()
            .map(|s| {
                format!(
                    "copy session of {} ended: pod/{} deleted\n",
                    s.target, s.copy_pod
                )
            })
            .collect(),
        Some(ListOutput::Name) => ended
            .iter()
            .map(|s| format!("pod/{}\n", s.copy_pod))
            .collect(),
        Some(ListOutput::Json) => to_json(&ListDoc::new("CopySessionList", docs()))?,
        Some(ListOutput::Yaml) => to_yaml(&ListDoc::new("CopySessionList", docs()))?,
    };
    print(&text)?;
    match first_error {
        Some(e) => Err(e),
        None => Ok(0),
    }
}
