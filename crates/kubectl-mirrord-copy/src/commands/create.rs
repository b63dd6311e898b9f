//! `create`: a detached session. Also builds the request `run` uses.

use std::time::Duration;

use mirrord_copy_core::{
    identity, session, CopyOptions, CreateRequest, Error, ScaleTo, Session, TargetRef,
};

use crate::cli::{CopyArgs, CreateArgs, CreateOutput, GlobalArgs};
use crate::commands::{local_user, print, with_state};
use crate::kube_client::{connect, Cluster};
use crate::mirrord_config::{self, Emit};
use crate::output::{to_json, to_yaml, SessionDoc};
use crate::progress::Reporter;
use crate::signals::Signals;
use crate::state::{Entry, LocalState};
use mirrord_copy_lock::clock;

/// Merge the command line with an optional mirrord configuration (the command line wins).
/// The owner is this machine's `user@host` until [`identify`] asks the cluster.
pub(crate) fn build_request(
    global: &GlobalArgs,
    cluster: &Cluster,
    target: Option<&str>,
    copy: &CopyArgs,
    ttl: Option<Duration>,
) -> Result<CreateRequest, Error> {
    let from_file = match &copy.mirrord_config {
        Some(path) => mirrord_config::read(path)?,
        None => Default::default(),
    };
    let target = target.map(str::to_string).or(from_file.target).ok_or_else(|| {
        Error::Usage("a TARGET is required (e.g. deployment/my-app), or a --mirrord-config with a target".into())
    })?;
    let target: TargetRef = target.parse()?;
    if let Some(image) = &copy.placeholder_image {
        if image.is_empty() || image.contains(char::is_whitespace) {
            return Err(Error::Usage(format!(
                "--placeholder-image {image:?}: not an image reference (e.g. registry.local/busybox:1.36)"
            )));
        }
    }
    let namespace = match (global.explicit_namespace(), from_file.namespace) {
        (Some(ns), _) => ns.to_string(),
        (None, Some(ns)) => {
            mirrord_copy_core::target::validate_namespace(&ns)
                .map_err(|e| Error::Usage(format!("--mirrord-config target.namespace: {e}")))?;
            ns
        }
        (None, None) => cluster.namespace.clone(),
    };
    mirrord_copy_core::target::validate_namespace(&copy.argocd_namespace)
        .map_err(|e| Error::Usage(format!("--argocd-namespace: {e}")))?;
    // Checked here too: clap refuses the two flags together, but a --mirrord-config's
    // scale_down with --replace-one is the same contradiction.
    if copy.replace_one && from_file.scale_down {
        return Err(Error::Usage(
            "--replace-one cannot be used with --mirrord-config's feature.copy_target.scale_down: pick one".into(),
        ));
    }
    let scale_down = copy.scale_down || copy.replace_one || from_file.scale_down;
    let scale_to = match copy.replace_one {
        true => ScaleTo::OneLess,
        false => ScaleTo::Zero,
    };
    let mut options = CopyOptions {
        exclude_containers: from_file.exclude_containers,
        exclude_init_containers: from_file.exclude_init_containers,
        claims_as_emptydir: copy.claims_as_emptydir,
        keep_command: copy.keep_command,
        placeholder_image: copy.placeholder_image.clone(),
        // A copy that replaces its scaled-down workload (or one replica of it) takes its
        // Services' traffic (for mirrord to steal); otherwise it stays out of it.
        serve_traffic: copy.serve_traffic || scale_down,
    };
    options
        .exclude_containers
        .extend(copy.exclude_containers.iter().cloned());
    options
        .exclude_init_containers
        .extend(copy.exclude_init_containers.iter().cloned());
    let machine = local_user();
    Ok(CreateRequest {
        namespace,
        target,
        options: options.normalized(),
        scale_down,
        scale_to,
        ttl,
        // The owner stays this machine's `user@host` only where the cluster cannot name the
        // Kubernetes user (`identify` replaces it); the host is always this machine's.
        owner: machine.clone(),
        host: machine,
        wait: !copy.no_wait,
        timeout: copy.timeout,
        reuse: copy.reuse,
        suspend_flux: copy.suspend_flux,
        suspend_argocd: copy.suspend_argocd,
        argocd_namespace: copy.argocd_namespace.clone(),
    })
}

/// Record the Kubernetes user the cluster names (SelfSubjectReview) as the owner, with this
/// machine's `user@host` beside it; where the cluster cannot say, the local `user@host` stays.
/// The answer is cached per credentials in the state file (a round trip saved per create).
/// Not for `--dry-run=client`, which sends no write at all.
pub(crate) async fn identify(mut request: CreateRequest, cluster: &Cluster) -> CreateRequest {
    if let Some(user) = known_identity(cluster).await {
        request.owner = user;
    }
    request
}

/// Who these credentials are: from the state file's cache, else asked (and remembered).
pub(crate) async fn known_identity(cluster: &Cluster) -> Option<String> {
    let state = LocalState::default_location();
    let now = chrono::Utc::now();
    if let Some(user) = state
        .as_ref()
        .and_then(|s| s.identity(&cluster.identity_key, now).ok().flatten())
    {
        return Some(user);
    }
    let user = identity::whoami(&cluster.client).await?;
    if let Some(state) = &state {
        // A cache: failing to write it costs a round trip next time, nothing else.
        let _ = state.remember_identity(&cluster.identity_key, &user, now);
    }
    Some(user)
}

/// The `--emit-mirrord-config` file, opened (and so checked) before anything is created.
pub(crate) fn open_emit(copy: &CopyArgs) -> Result<Option<Emit>, Error> {
    copy.emit_mirrord_config
        .as_deref()
        .map(Emit::open)
        .transpose()
}

/// Remember the session locally and write the mirrord config if asked.
pub(crate) fn after_create(
    cluster: &Cluster,
    emit: Option<Emit>,
    s: &Session,
) -> Result<(), Error> {
    with_state(|state| {
        state.add(Entry {
            id: s.id.clone(),
            namespace: s.namespace.clone(),
            context: cluster.context.clone(),
            target: s.target.clone(),
            copy_pod: s.copy_pod.clone(),
            created: s.created,
        })
    });
    if let Some(emit) = emit {
        let container = s.runs.as_ref().map(|r| r.container.as_str());
        emit.write(&s.copy_pod, container, &s.namespace)?;
    }
    Ok(())
}

pub(crate) async fn create(global: &GlobalArgs, args: &CreateArgs) -> Result<i32, Error> {
    // A dry run writes no file either.
    let emit = match args.dry_run {
        Some(_) => None,
        None => open_emit(&args.copy)?,
    };
    // From here on SIGINT/SIGTERM/SIGHUP stop the create and undo what it made.
    let signals = Signals::listen()?;
    let cluster = until_signal(&signals, connect(global)).await??;
    let request = build_request(
        global,
        &cluster,
        args.target.as_deref(),
        &args.copy,
        Some(args.ttl),
    )?;
    if args.dry_run.is_some() {
        let preview = session::preview(&cluster.client, &request);
        let pod = until_signal(&signals, preview).await??;
        let text = match args.output {
            Some(CreateOutput::Json) => to_json(&pod)?,
            Some(CreateOutput::Name) => format!("pod/{}\n", pod.metadata.name.unwrap_or_default()),
            _ => to_yaml(&pod)?,
        };
        return print(&text).map(|_| 0);
    }
    let request = until_signal(&signals, identify(request, &cluster)).await?;
    let created = create_undoing_on_signal(&cluster, &request, &signals, global.verbose).await?;
    let finish = async {
        after_create(&cluster, emit, &created)?;
        // Shown as it is about to be confirmed; confirmed only once shown: until then the
        // session is provisional, and a create killed before this point leaves a session gc
        // ends within its provisional lease, not its TTL.
        let s = match created.provisional {
            true => created.as_confirmed(clock::now()),
            false => created.clone(),
        };
        let text = match args.output {
            None => format!("{}\n", s.copy_pod),
            Some(CreateOutput::Name) => format!("pod/{}\n", s.copy_pod),
            Some(CreateOutput::Json) => to_json(&SessionDoc::new(&s))?,
            Some(CreateOutput::Yaml) => to_yaml(&SessionDoc::new(&s))?,
        };
        print(&text)?;
        if created.provisional {
            confirm_or_end(&cluster, &s, global.verbose).await?;
        }
        Ok(0)
    };
    tokio::select! {
        biased;
        stopped = signals.first() => {
            // Not confirmed yet (or just): undone, as during the create.
            end_after(&cluster, &created, &stopped, global.verbose).await;
            Err(stopped)
        }
        done = finish => done,
    }
}

/// `work`, unless a signal comes first: then [`Error::Interrupted`]. For steps that wrote
/// nothing yet.
pub(crate) async fn until_signal<T>(
    signals: &Signals,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Error> {
    tokio::select! {
        biased;
        stopped = signals.first() => Err(stopped),
        done = work => Ok(done),
    }
}

/// `session::create_or_stop`, stopped by the first signal (what it made is undone, scale-down
/// first); a second signal gives the cleanup up (the session is provisional: gc ends it).
pub(crate) async fn create_undoing_on_signal(
    cluster: &Cluster,
    request: &CreateRequest,
    signals: &Signals,
    verbose: u8,
) -> Result<Session, Error> {
    let reporter = Reporter::new(verbose);
    let sink = reporter.sink();
    let create = session::create_or_stop(&cluster.client, request, &sink, signals.first());
    let result = tokio::select! {
        result = create => result,
        again = signals.nth(2) => {
            reporter.line(&format!(
                "warning: a second signal: cleanup abandoned; `kubectl mirrord-copy gc -n {}` ends what is left once its provisional lease ({}s) lapsed",
                request.namespace,
                session::PROVISIONAL_LEASE.as_secs()
            ));
            Err(again)
        }
    };
    reporter.finish();
    result
}

/// [`session::confirm`]; if that fails, the session is ended (it would lapse anyway) and the
/// error returned, so a printed name whose session did not become durable exits non-zero.
pub(crate) async fn confirm_or_end(
    cluster: &Cluster,
    s: &Session,
    verbose: u8,
) -> Result<(), Error> {
    let Err(e) = session::confirm(&cluster.client, s).await else {
        return Ok(());
    };
    eprintln!(
        "error: session {} could not be confirmed ({e}); ending it",
        s.id
    );
    end_after(cluster, s, &e, verbose).await;
    Err(e)
}

/// End the session `s` made by this run because of `why` (a signal, a failed confirmation),
/// restoring its workload first; a failure is a warning naming gc.
pub(crate) async fn end_after(cluster: &Cluster, s: &Session, why: &Error, verbose: u8) {
    let reporter = Reporter::new(verbose);
    if let Error::Interrupted(_) = why {
        reporter.line(&format!(
            "warning: {why}: undoing what this run did (session {}{})",
            s.id,
            if s.scale_down {
                ", scale-down first"
            } else {
                ""
            }
        ));
    }
    let ended = session::end(&cluster.client, &s.namespace, &s.id, &reporter.sink()).await;
    reporter.finish();
    match ended {
        Ok(_) => with_state(|state| state.remove(&s.namespace, &s.id)),
        Err(end) => eprintln!(
            "warning: ending session {} failed ({end}); `kubectl mirrord-copy gc -n {}` ends it once its provisional lease ({}s) lapsed",
            s.id,
            s.namespace,
            session::PROVISIONAL_LEASE.as_secs()
        ),
    }
}
