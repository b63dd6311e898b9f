//! `create`: a detached session. Also builds the request `run` uses.

use std::time::Duration;

use mirrord_copy_core::{identity, session, CopyOptions, CreateRequest, Error, Session, TargetRef};

use crate::cli::{CopyArgs, CreateArgs, CreateOutput, GlobalArgs};
use crate::commands::{local_user, print, with_state};
use crate::kube_client::{connect, Cluster};
use crate::mirrord_config;
use crate::output::{to_json, to_yaml, SessionDoc};
use crate::progress::Reporter;
use crate::state::{Entry, LocalState};

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
    let namespace = global
        .namespace
        .clone()
        .or(from_file.namespace)
        .unwrap_or_else(|| cluster.namespace.clone());
    let mut options = CopyOptions {
        exclude_containers: from_file.exclude_containers,
        exclude_init_containers: from_file.exclude_init_containers,
        claims_as_empty_dir: copy.claims_as_emptydir,
    };
    options
        .exclude_containers
        .extend(copy.exclude_containers.iter().cloned());
    options
        .exclude_init_containers
        .extend(copy.exclude_init_containers.iter().cloned());
    Ok(CreateRequest {
        namespace,
        target,
        options: options.normalized(),
        scale_down: copy.scale_down || from_file.scale_down,
        ttl,
        owner: local_user(),
        host: local_user(),
        wait: !copy.no_wait,
        timeout: copy.timeout,
        reuse: copy.reuse,
        suspend_flux: copy.suspend_flux,
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

/// Remember the session locally and write the mirrord config if asked.
pub(crate) fn after_create(cluster: &Cluster, copy: &CopyArgs, s: &Session) -> Result<(), Error> {
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
    if let Some(path) = &copy.emit_mirrord_config {
        mirrord_config::write(path, &s.copy_pod, &s.namespace)?;
    }
    Ok(())
}

pub(crate) async fn create(global: &GlobalArgs, args: &CreateArgs) -> Result<i32, Error> {
    let cluster = connect(global).await?;
    let request = build_request(
        global,
        &cluster,
        args.target.as_deref(),
        &args.copy,
        Some(args.ttl),
    )?;
    if args.dry_run.is_some() {
        let pod = session::preview(&cluster.client, &request).await?;
        let text = match args.output {
            Some(CreateOutput::Json) => to_json(&pod)?,
            Some(CreateOutput::Name) => format!("pod/{}\n", pod.metadata.name.unwrap_or_default()),
            _ => to_yaml(&pod)?,
        };
        return print(&text).map(|_| 0);
    }
    let request = identify(request, &cluster).await;
    let reporter = Reporter::new(global.verbose);
    let result = session::create(&cluster.client, &request, &reporter.sink()).await;
    reporter.finish();
    let s = result?;
    after_create(&cluster, &args.copy, &s)?;
    let text = match args.output {
        None => format!("{}\n", s.copy_pod),
        Some(CreateOutput::Name) => format!("pod/{}\n", s.copy_pod),
        Some(CreateOutput::Json) => to_json(&SessionDoc::new(&s))?,
        Some(CreateOutput::Yaml) => to_yaml(&SessionDoc::new(&s))?,
    };
    print(&text).map(|_| 0)
}
