//! `delete`: end sessions by copy pod, by target, or all. Idempotent: ending what is already
//! gone is a note on stderr and exit 0, like `kubectl delete --ignore-not-found`.

use std::collections::BTreeMap;

use mirrord_copy_core::{session, target, Error, Progress, Session, TargetRef};

use crate::cli::{DeleteArgs, GlobalArgs, ListOutput};
use crate::commands::{
    forget_ended, listed_at, print, state_entries, warn_stranded, with_state, Yours,
};
use crate::kube_client::{connect, Cluster};
use crate::output::{to_json, to_yaml, ListDoc, SessionDoc};
use crate::progress::Reporter;

/// The sessions that are yours ([`Yours`]: the same rule as `status`'s `yours`). The others
/// are listed on stderr as skipped.
async fn only_yours(cluster: &Cluster, sessions: Vec<Session>) -> Vec<Session> {
    let rule = Yours::of(cluster, &sessions).await;
    let (yours, others): (Vec<Session>, Vec<Session>) =
        sessions.into_iter().partition(|s| rule.is(s));
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

/// Until the ended sessions' copy pods are gone: one LIST (and a WATCH while any is left) per
/// namespace of the (namespace, session id) pairs.
async fn wait_gone<'a>(
    cluster: &Cluster,
    ended: impl Iterator<Item = (&'a str, &'a str)>,
    args: &DeleteArgs,
    reporter: &Reporter,
) -> Result<(), Error> {
    let mut by_namespace: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (namespace, id) in ended {
        by_namespace
            .entry(namespace)
            .or_default()
            .push(id.to_string());
    }
    for (namespace, ids) in by_namespace {
        let on_waiting = |pods: &[String]| {
            reporter.report(Progress::Terminating {
                pods: pods.to_vec(),
            })
        };
        session::wait_copies_gone(&cluster.client, namespace, &ids, args.timeout, &on_waiting)
            .await?;
    }
    Ok(())
}

pub(crate) async fn delete(global: &GlobalArgs, args: &DeleteArgs) -> Result<i32, Error> {
    if args.pods.is_empty() && args.target.is_none() && !args.all {
        return Err(Error::Usage(
            "say which sessions to end: copy pod names, --target TARGET, or --all".into(),
        ));
    }
    // Names are checked before anything is sent: `Bad/Pod` never becomes part of a request.
    for pod in &args.pods {
        target::validate_object_name("pod", pod)?;
    }
    let wanted: Option<TargetRef> = args.target.as_deref().map(str::parse).transpose()?;
    let cluster = connect(global).await?;
    let scope = (!args.all_namespaces).then_some(cluster.namespace.as_str());
    let mut chosen: Vec<Session> = Vec::new();
    // Sessions whose record does not read back, ended through their objects.
    let mut unreadable: Vec<session::Unreadable> = Vec::new();
    if let Some(target) = &wanted {
        chosen = session::find_by_target(&cluster.client, scope, target).await?;
        if chosen.is_empty() {
            eprintln!("no active copy session for {target}: nothing to do");
        }
    } else if args.all {
        let started = std::time::Instant::now();
        let overview = session::overview(&cluster.client, scope, false).await?;
        forget_ended(&cluster, scope, &overview.sessions, listed_at(started));
        chosen = overview.sessions;
        // Records that do not read back: yours if this machine made them (or --all-owners).
        let mine = state_entries();
        for u in overview.unreadable {
            let here = mine
                .iter()
                .any(|e| e.id == u.id && e.namespace == u.namespace);
            match args.all_owners || here {
                true => unreadable.push(u),
                false => eprintln!(
                    "skipped session {} in {}: its record does not read back ({}) and this machine did not make it; {} (or --all-owners)",
                    u.id,
                    u.namespace,
                    u.why,
                    u.remedy()
                ),
            }
        }
        if chosen.is_empty() && unreadable.is_empty() {
            eprintln!("No active copy targets: nothing to do");
        }
    }
    if (wanted.is_some() || args.all) && !args.all_owners {
        chosen = only_yours(&cluster, chosen).await;
    }
    if !(wanted.is_some() || args.all) {
        (chosen, unreadable) = by_pod(&cluster, &args.pods).await?;
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
    let mut ended_unreadable = Vec::new();
    for u in unreadable {
        reporter.line(&format!(
            "warning: session {} in {}: its record does not read back ({}); ending it through its labels and owner references, a scaled-down workload from its lock",
            u.id, u.namespace, u.why
        ));
        match session::end(&cluster.client, &u.namespace, &u.id, &reporter.sink()).await {
            Ok(_) => {
                with_state(|state| state.remove(&u.namespace, &u.id));
                ended_unreadable.push(u);
            }
            Err(e) => {
                reporter.line(&format!(
                    "error: ending session {} in {}: {e}",
                    u.id, u.namespace
                ));
                first_error.get_or_insert(e);
            }
        }
    }
    if args.wait {
        let ids = ended
            .iter()
            .map(|s| (s.namespace.as_str(), s.id.as_str()))
            .chain(
                ended_unreadable
                    .iter()
                    .map(|u| (u.namespace.as_str(), u.id.as_str())),
            );
        if let Err(e) = wait_gone(&cluster, ids, args, &reporter).await {
            first_error.get_or_insert(e);
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
            .chain(ended_unreadable.iter().map(|u| {
                format!(
                    "copy session {} (unreadable record) ended: pod/{} deleted\n",
                    u.id,
                    u.copy_pod.as_deref().unwrap_or("<none>")
                )
            }))
            .collect(),
        Some(ListOutput::Name) => ended
            .iter()
            .map(|s| format!("pod/{}\n", s.copy_pod))
            .chain(
                ended_unreadable
                    .iter()
                    .filter_map(|u| u.copy_pod.as_ref().map(|p| format!("pod/{p}\n"))),
            )
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

/// The sessions of the named copy pods, ended whoever made them (naming one is explicit
/// enough), from one LIST of our ConfigMaps in the namespace: sessions, and the locks of
/// sessions that are gone. A pod without a session is a note (already ended); if a lock of a
/// session that no longer exists still holds a workload in the namespace, the note names it
/// and the `gc` command that puts it back, as `status` does. A pod whose session record does
/// not read back is returned apart, to be ended through its objects.
async fn by_pod(
    cluster: &Cluster,
    pods: &[String],
) -> Result<(Vec<Session>, Vec<session::Unreadable>), Error> {
    let started = std::time::Instant::now();
    let overview = session::overview(&cluster.client, Some(&cluster.namespace), false).await?;
    forget_ended(
        cluster,
        Some(&cluster.namespace),
        &overview.sessions,
        listed_at(started),
    );
    let mut chosen = Vec::new();
    let mut unreadable = Vec::new();
    let mut missing = false;
    for pod in pods {
        if let Some(s) = overview.sessions.iter().find(|s| &s.copy_pod == pod) {
            chosen.push(s.clone());
            continue;
        }
        let named = overview
            .unreadable
            .iter()
            .find(|u| u.copy_pod.as_deref() == Some(pod.as_str()));
        // A record too broken to name its pod: the pod's own session label tells (a GET).
        let unread = match (named, overview.unreadable.is_empty()) {
            (Some(u), _) => Some(u.clone()),
            (None, false) => {
                session::find_unreadable_by_pod(&cluster.client, &cluster.namespace, pod).await?
            }
            (None, true) => None,
        };
        match unread {
            Some(u) => unreadable.push(u),
            None => {
                missing = true;
                match overview.stranded.iter().find(|s| &s.copy_pod == pod) {
                    Some(s) => eprintln!(
                        "pod \"{pod}\" has no copy session: session {} was deleted without ending it, and its scale-down lock still holds {}",
                        s.session, s.workload
                    ),
                    None => eprintln!("pod \"{pod}\" has no active copy session (already ended)"),
                }
            }
        }
    }
    if missing {
        for s in &overview.stranded {
            warn_stranded(s);
        }
    }
    Ok((chosen, unreadable))
}
