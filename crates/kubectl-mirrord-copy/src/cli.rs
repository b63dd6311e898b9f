//! Command-line surface: kubectl's global flags plus one subcommand per verb.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

const TARGETS: &str = "\
TARGET is KIND/NAME[/container/CONTAINER] with KIND one of pod, deployment, statefulset,
replicaset, rollout (Argo Rollouts), job, cronjob, or kubectl's short and plural names
(po, deploy, sts, rs, ro, cj, deployments, ...).";

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-mirrord_copy",
    bin_name = "kubectl mirrord-copy",
    version,
    about = "Copy a workload's pod into a standalone target pod, optionally scaling the original down",
    long_about = "Creates a new pod from the pod spec of a target (a pod, Deployment, StatefulSet, \
ReplicaSet, Argo Rollout, Job or CronJob) and hands it to you as a stand-alone target, as mirrord's \
copy target does. The copy is a target, not a second instance: its target container keeps the \
application's image, environment, volumes and ports but runs a placeholder that never exits (so \
the copy stays up while the original keeps crashing or its Job has ended), and your own process, \
usually under mirrord, plays the application's part; other containers run as in the original. \
The copy has no liveness, readiness or startup probes, and unless it replaces a scaled-down \
workload (or --serve-traffic) a readiness gate keeps it out of its Services' ready endpoints. \
--keep-command runs the application itself instead, to debug it in place. With --scale-down the \
original workload is scaled to zero while the copy lives and restored afterwards.",
    after_help = mirrord_copy_core::exit_code::help_text(90),
    propagate_version = true
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct GlobalArgs {
    /// Namespace (default: the kubeconfig context's, then "default")
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Kubeconfig context to use
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Path to the kubeconfig file (default: $KUBECONFIG, which may list several files, then ~/.kube/config)
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// How long to wait for a single API request, and for an exec credential plugin (e.g. 30s, 1m; 0: no timeout, as in kubectl)
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Log more to stderr (-v: progress and decisions, -vv: API requests)
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count, global = true)]
    pub verbose: u8,
}

impl GlobalArgs {
    /// `-n`, unless empty (`-n ""` means the context's namespace, as in kubectl).
    pub(crate) fn explicit_namespace(&self) -> Option<&str> {
        self.namespace.as_deref().filter(|ns| !ns.is_empty())
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a copy of TARGET and print the copy pod's name (a detached session, ended by `delete` or its --ttl)
    #[command(after_help = TARGETS)]
    Create(CreateArgs),
    /// Create a copy, run COMMAND while it lives, then end the session (exits with COMMAND's code)
    #[command(
        after_help = "COMMAND gets MIRRORD_COPY_POD, MIRRORD_COPY_NAMESPACE, MIRRORD_COPY_TARGET and MIRRORD_COPY_CONTAINER \
(the copy's target container) in its environment, and {pod} in its arguments is replaced by the copy pod's name. Ctrl-C or SIGTERM is \
forwarded to COMMAND; the session ends either way."
    )]
    Run(RunArgs),
    /// Show active copy targets
    Status(StatusArgs),
    /// End copy sessions: restore scaled-down workloads, delete copy pods (idempotent)
    Delete(DeleteArgs),
    /// End expired sessions and repair what crashed sessions left behind (safe to run anywhere, any time)
    Gc(GcArgs),
    /// Print the client version and, when reachable, the server's
    Version(VersionArgs),
    /// Print a shell completion script
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// What makes a copy: shared by `create` and `run`.
#[derive(Debug, Args, Clone)]
#[command(group(clap::ArgGroup::new("scaling").args(["scale_down", "replace_one"])))]
pub(crate) struct CopyArgs {
    /// Scale the original workload to zero while the copy lives (Deployment, StatefulSet, Argo Rollout, ReplicaSet; CronJobs are suspended)
    #[arg(long, conflicts_with = "replace_one")]
    pub scale_down: bool,
    /// Scale the original workload from N to N-1 replicas while the copy lives, so the copy takes one replica's place beside the others (at least 2 replicas; Deployment, StatefulSet, Argo Rollout, ReplicaSet; a StatefulSet's copy takes the highest ordinal's claims); restored to N afterwards
    #[arg(long)]
    pub replace_one: bool,
    /// Leave this container out of the copy (repeatable)
    #[arg(long = "exclude-container", value_name = "CONTAINER")]
    pub exclude_containers: Vec<String>,
    /// Leave this init container out of the copy (repeatable)
    #[arg(long = "exclude-init-container", value_name = "CONTAINER")]
    pub exclude_init_containers: Vec<String>,
    /// Run the application's own command in the target container (without probes), to debug it in place; by default the target container runs a placeholder that never exits and your own process, under mirrord, plays the application's part
    #[arg(long)]
    pub keep_command: bool,
    /// Image the placeholder is copied from: it must hold a static busybox at /bin/busybox (an air-gapped cluster's mirror of docker.io/library/busybox)
    #[arg(long, value_name = "IMAGE", conflicts_with = "keep_command")]
    pub placeholder_image: Option<String>,
    /// Make the copy a ready endpoint of the Services that select it (the default with --scale-down and --replace-one); otherwise a readiness gate keeps it out of their traffic
    #[arg(long)]
    pub serve_traffic: bool,
    /// StatefulSets: give the copy empty volumes (emptyDir) instead of ordinal 0's PersistentVolumeClaims, so it can run beside the original without --scale-down
    #[arg(long = "claims-as-emptydir")]
    pub claims_as_emptydir: bool,
    /// With --scale-down or --replace-one of a workload a Flux Kustomization applies: annotate it kustomize.toolkit.fluxcd.io/reconcile=disabled for the session (restored afterwards), so Flux does not scale it back
    #[arg(long, requires = "scaling")]
    pub suspend_flux: bool,
    /// With --scale-down or --replace-one of a workload an Argo CD Application applies: turn the Application's self-heal off (spec.syncPolicy.automated.selfHeal=false) for the session and put its previous value back afterwards, so Argo CD does not scale it back; needs get and patch on applications.argoproj.io in the Application's namespace
    #[arg(long, requires = "scaling")]
    pub suspend_argocd: bool,
    /// Namespace of the Argo CD Applications (an Application in another namespace is found through the tracking id, which then names it NAMESPACE_APP)
    #[arg(long, value_name = "NAMESPACE", default_value = "argocd")]
    pub argocd_namespace: String,
    /// Do not wait for the copy's containers to start
    #[arg(long, conflicts_with = "wait")]
    pub no_wait: bool,
    /// Wait for the copy's containers to start and be ready (the default)
    #[arg(long)]
    pub wait: bool,
    /// How long to wait for the copy's containers to start
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Return your live copy of the same target made with the same options instead of making another
    #[arg(long)]
    pub reuse: bool,
    /// Read the target and feature.copy_target from a mirrord configuration file (JSON, TOML or YAML)
    #[arg(long, value_name = "FILE")]
    pub mirrord_config: Option<PathBuf>,
    /// Write a mirrord configuration file whose target is the copy pod
    #[arg(long, value_name = "FILE")]
    pub emit_mirrord_config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// KIND/NAME[/container/CONTAINER] (may come from --mirrord-config instead)
    pub target: Option<String>,
    #[command(flatten)]
    pub copy: CopyArgs,
    /// End the session after this long (gc ends expired sessions); at most 7d (168h)
    #[arg(long, default_value = "8h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// Output format
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<CreateOutput>,
    /// Only print the pod that would be created (client: nothing is sent that changes the cluster)
    #[arg(long, value_enum, value_name = "client")]
    pub dry_run: Option<DryRun>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// KIND/NAME[/container/CONTAINER] (may come from --mirrord-config instead)
    pub target: Option<String>,
    #[command(flatten)]
    pub copy: CopyArgs,
    /// The command to run while the copy lives, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Show sessions in every namespace
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<StatusOutput>,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Copy pod names whose sessions to end
    pub pods: Vec<String>,
    /// End every session copying this target
    #[arg(long, conflicts_with_all = ["pods", "all"])]
    pub target: Option<String>,
    /// End every session (of the namespace, or of all with -A)
    #[arg(long, conflicts_with = "pods")]
    pub all: bool,
    /// With --all or --target: every namespace
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// With --all or --target: end other people's sessions too (by default only yours: made by your Kubernetes user, or recorded in this machine's state file)
    #[arg(long)]
    pub all_owners: bool,
    /// Wait until the copy pods are gone, as `kubectl delete` does (--wait=false returns once they are marked for deletion)
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub wait: bool,
    /// How long to wait for the copy pods to be gone
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Output format
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ListOutput>,
}

#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    /// Every namespace
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<DocOutput>,
}

#[derive(Debug, Args)]
pub(crate) struct VersionArgs {
    /// Print the client version only, without contacting the cluster (as `kubectl version --client`)
    #[arg(long)]
    pub client: bool,
    /// Output format
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<DocOutput>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CreateOutput {
    Name,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StatusOutput {
    Wide,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ListOutput {
    Name,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DocOutput {
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DryRun {
    Client,
}

/// `30s`, `2m`, `8h`, `1h30m`; a bare number is seconds, as kubectl's --request-timeout.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?}: {e} (examples: 30s, 2m, 8h)"))
}

/// `--ttl`: a duration above zero and at most [`mirrord_copy_core::session::MAX_TTL`], refused
/// here, before anything is read or sent.
pub(crate) fn parse_ttl(s: &str) -> Result<Duration, String> {
    use mirrord_copy_core::session::{MAX_TTL, MAX_TTL_TEXT};
    let ttl = parse_duration(s)?;
    if ttl.is_zero() {
        return Err("--ttl must be longer than zero".into());
    }
    if ttl > MAX_TTL {
        return Err(format!("--ttl may be at most {MAX_TTL_TEXT}"));
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_like_kubectl() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").unwrap_err().contains("examples"));
    }

    #[test]
    fn ttl_is_capped_at_seven_days() {
        assert_eq!(parse_ttl("8h").unwrap(), Duration::from_secs(8 * 3600));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(7 * 24 * 3600));
        assert!(parse_ttl("7d 1s")
            .unwrap_err()
            .contains("at most 7d (168h)"));
        assert!(parse_ttl("10000y")
            .unwrap_err()
            .contains("at most 7d (168h)"));
        assert!(parse_ttl("0").unwrap_err().contains("longer than zero"));
        assert!(parse_ttl("soon").unwrap_err().contains("examples"));
    }

    #[test]
    fn run_takes_the_command_after_double_dash() {
        let cli = Cli::try_parse_from([
            "kubectl-mirrord_copy",
            "run",
            "deploy/x",
            "--scale-down",
            "--",
            "sh",
            "-c",
            "echo {pod}",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.target.as_deref(), Some("deploy/x"));
        assert!(run.copy.scale_down);
        assert_eq!(run.command, ["sh", "-c", "echo {pod}"]);
    }

    #[test]
    fn help_lists_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("9   the workload is already scaled down by another session"));
        assert!(help.contains("11  session lost: run stopped its command"));
        assert!(help.contains("128+N stopped by signal N"));
    }
}
