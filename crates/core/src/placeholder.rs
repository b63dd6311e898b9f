//! What runs in the copy (pure, no I/O). By default the copy is a *target*, not a second
//! instance: its target container keeps the application's image, environment, volumes, ports,
//! resources and security context, but runs a placeholder that never exits, so the copy stays
//! up while the original crash-loops or its Job has ended, and the user's own process (under
//! mirrord) plays the application's part. Every other container and init container runs as in
//! the original.
//!
//! The placeholder must work in images without a shell or `sleep` (distroless, scratch), and
//! must end at once on SIGTERM: a PID 1 ignores the signals it has no handler for, so a bare
//! `sleep` would hold the pod for its whole grace period. So an init container copies a static
//! busybox out of the placeholder image into an emptyDir, and the target container runs that
//! busybox's shell with a SIGTERM trap around a `wait` (which a trap interrupts; a foreground
//! `sleep` it does not).
//!
//! By default the copy is also not a ready endpoint of the Services that select it (its labels
//! are the original's): a readiness gate nobody sets keeps its `Ready` condition False, so the
//! EndpointSlice controller lists it as not ready, and no production request reaches a copy
//! where nothing answers, or whose application sits on a breakpoint. With scale-down, or when
//! asked, the gate is left out and the copy serves the Services' traffic as the original did.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, PodReadinessGate, PodSpec, ResourceRequirements,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::error::Error;

/// The image the placeholder's busybox is copied from, unless `--placeholder-image` names
/// another (an air-gapped cluster's mirror). It must hold a static busybox at /bin/busybox, as
/// the official image does.
pub const DEFAULT_PLACEHOLDER_IMAGE: &str = "docker.io/library/busybox:1.36";

/// Name of the init container that installs the placeholder, and of its emptyDir volume.
pub const PLACEHOLDER_INIT_CONTAINER: &str = "mirrord-copy-placeholder";

/// Where the placeholder is installed in the target container (read-only there).
const INSTALL_DIR: &str = "/.mirrord-copy";

/// The pod condition the copy's readiness gate waits for; nothing sets it.
pub const SERVING_GATE: &str = "mirrord-copy.io/serving";

/// The annotation naming the container kubectl (`exec`, `logs`) and mirrord target by default.
pub(crate) const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// Containers that are never the application: mesh proxies and agents injected beside it.
/// The target container is the first container not named here (unless named explicitly).
const KNOWN_SIDECARS: &[&str] = &[
    "istio-proxy",
    "istio-init",
    "linkerd-proxy",
    "linkerd-init",
    "envoy",
    "envoy-sidecar",
    "consul-dataplane",
    "consul-connect-envoy-sidecar",
    "kuma-sidecar",
    "vault-agent",
    "vault-agent-init",
    "daprd",
    "cloud-sql-proxy",
    "datadog-agent",
    "mirrord-agent",
];

/// The copy's target container: the one named by `/container/NAME`, else the one the
/// `kubectl.kubernetes.io/default-container` annotation names, else the first container that is
/// not a known mesh or agent sidecar (else the first).
pub(crate) fn target_container<'a>(
    spec: &'a PodSpec,
    named: Option<&str>,
    default_annotation: Option<&str>,
) -> Result<&'a str, Error> {
    let find = |name: &str| {
        spec.containers
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.name.as_str())
    };
    if let Some(name) = named {
        return find(name).ok_or_else(|| {
            Error::Usage(format!(
                "the target names container {name}, which the copy does not have"
            ))
        });
    }
    if let Some(name) = default_annotation.and_then(find) {
        return Ok(name);
    }
    spec.containers
        .iter()
        .find(|c| !KNOWN_SIDECARS.contains(&c.name.as_str()))
        .or(spec.containers.first())
        .map(|c| c.name.as_str())
        .ok_or_else(|| Error::Unsupported("the target's pod spec has no containers".into()))
}

/// The target container's new process: busybox's shell, ending at once on SIGTERM or SIGINT,
/// otherwise waiting forever (an hour-long sleep at a time, in the background so that the trap
/// runs at once).
fn placeholder_command() -> Vec<String> {
    let busybox = format!("{INSTALL_DIR}/busybox");
    vec![
        busybox.clone(),
        "sh".into(),
        "-c".into(),
        format!("trap 'exit 0' TERM INT; while :; do {busybox} sleep 3600 & wait $!; done"),
    ]
}

/// Replace what `container` runs by the placeholder: command and args, its lifecycle hooks
/// (they belong to the application, and an exec preStop would hold the pod at deletion), plus
/// the init container and emptyDir that install the placeholder. Image, env, envFrom, volume
/// mounts, ports, resources, securityContext and workingDir stay.
pub(crate) fn install(spec: &mut PodSpec, container: &str, image: &str) -> Result<(), Error> {
    let taken = |what: &str| {
        Error::Unsupported(format!(
            "the target's pod spec already has a {what} named {PLACEHOLDER_INIT_CONTAINER}, which the copy's placeholder needs"
        ))
    };
    if spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.name == PLACEHOLDER_INIT_CONTAINER)
    {
        return Err(taken("volume"));
    }
    if spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .any(|c| c.name == PLACEHOLDER_INIT_CONTAINER)
    {
        return Err(taken("container"));
    }
    let pod_security = spec.security_context.clone().unwrap_or_default();
    let target = spec
        .containers
        .iter_mut()
        .find(|c| c.name == container)
        .ok_or_else(|| Error::Internal(format!("no container {container} to run a placeholder")))?;
    if target
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.mount_path.trim_end_matches('/') == INSTALL_DIR)
    {
        return Err(Error::Unsupported(format!(
            "container {container} already mounts something at {INSTALL_DIR}, where the copy's placeholder goes"
        )));
    }
    target.command = Some(placeholder_command());
    target.args = None;
    target.lifecycle = None;
    target
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: PLACEHOLDER_INIT_CONTAINER.into(),
            mount_path: INSTALL_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });

    // Runs as the target container would (so a restricted namespace admits it), and never as
    // root where the pod asks for non-root without saying which user: busybox's image would
    // run as root, which the kubelet refuses then.
    let mut security = target.security_context.clone().unwrap_or_default();
    let non_root = security.run_as_non_root.or(pod_security.run_as_non_root) == Some(true);
    let user_named = security.run_as_user.or(pod_security.run_as_user).is_some();
    if non_root && !user_named {
        security.run_as_user = Some(65534);
    }
    security.privileged = None;
    security.allow_privilege_escalation = Some(false);
    security.read_only_root_filesystem = Some(true);
    security.capabilities = Some(Capabilities {
        add: None,
        drop: Some(vec!["ALL".into()]),
    });
    let quantity = |q: &str| Quantity(q.to_string());
    let init = Container {
        name: PLACEHOLDER_INIT_CONTAINER.into(),
        image: Some(image.to_string()),
        command: Some(vec![
            "/bin/busybox".into(),
            "cp".into(),
            "/bin/busybox".into(),
            format!("{INSTALL_DIR}/busybox"),
        ]),
        volume_mounts: Some(vec![VolumeMount {
            name: PLACEHOLDER_INIT_CONTAINER.into(),
            mount_path: INSTALL_DIR.into(),
            ..Default::default()
        }]),
        // Explicit and small, so a namespace whose ResourceQuota wants limits admits it; an
        // init container's requests do not add to the pod's.
        resources: Some(ResourceRequirements {
            requests: Some(
                [
                    ("cpu".to_string(), quantity("10m")),
                    ("memory".to_string(), quantity("16Mi")),
                ]
                .into(),
            ),
            limits: Some(
                [
                    ("cpu".to_string(), quantity("100m")),
                    ("memory".to_string(), quantity("64Mi")),
                ]
                .into(),
            ),
            ..Default::default()
        }),
        security_context: Some(SecurityContext { ..security }),
        ..Default::default()
    };
    // First, so a placeholder image that cannot be pulled is reported before anything else runs.
    spec.init_containers
        .get_or_insert_with(Vec::new)
        .insert(0, init);
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: PLACEHOLDER_INIT_CONTAINER.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    });
    Ok(())
}

/// Keep the copy out of its Services' ready endpoints: a readiness gate nobody sets.
pub(crate) fn gate_readiness(spec: &mut PodSpec) {
    let gates = spec.readiness_gates.get_or_insert_with(Vec::new);
    if !gates.iter().any(|g| g.condition_type == SERVING_GATE) {
        gates.push(PodReadinessGate {
            condition_type: SERVING_GATE.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ExecAction, Lifecycle, LifecycleHandler, PodSecurityContext};

    fn container(name: &str) -> Container {
        Container {
            name: name.into(),
            image: Some(format!("{name}:1")),
            ..Default::default()
        }
    }

    fn spec(names: &[&str]) -> PodSpec {
        PodSpec {
            containers: names.iter().map(|n| container(n)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_target_container_is_named_then_annotated_then_the_first_non_sidecar() {
        let s = spec(&["istio-proxy", "app", "side"]);
        assert_eq!(target_container(&s, Some("side"), None).unwrap(), "side");
        assert_eq!(target_container(&s, None, Some("side")).unwrap(), "side");
        assert_eq!(target_container(&s, None, None).unwrap(), "app");
        // An annotation naming a container that is not there is ignored, as kubectl does.
        assert_eq!(target_container(&s, None, Some("gone")).unwrap(), "app");
        assert_eq!(
            target_container(&spec(&["linkerd-proxy"]), None, None).unwrap(),
            "linkerd-proxy"
        );
        assert_eq!(
            target_container(&s, Some("nope"), None)
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn the_placeholder_keeps_what_the_process_sees_and_replaces_what_it_runs() {
        let mut s = spec(&["app", "side"]);
        s.containers[0].command = Some(vec!["/app".into()]);
        s.containers[0].args = Some(vec!["--serve".into()]);
        s.containers[0].working_dir = Some("/srv".into());
        s.containers[0].lifecycle = Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["sleep".into(), "15".into()]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        install(&mut s, "app", DEFAULT_PLACEHOLDER_IMAGE).unwrap();
        let app = &s.containers[0];
        assert_eq!(app.image.as_deref(), Some("app:1"));
        assert_eq!(app.working_dir.as_deref(), Some("/srv"));
        assert_eq!(app.args, None);
        assert_eq!(app.lifecycle, None);
        let cmd = app.command.as_ref().unwrap();
        assert_eq!(cmd[0], "/.mirrord-copy/busybox");
        assert!(cmd[3].contains("trap 'exit 0' TERM INT") && cmd[3].contains("wait $!"));
        let mount = app.volume_mounts.as_ref().unwrap().last().unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            ("/.mirrord-copy", Some(true))
        );
        assert_eq!(
            s.containers[1],
            container("side"),
            "other containers run as before"
        );
        let init = &s.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.name, PLACEHOLDER_INIT_CONTAINER);
        assert_eq!(init.image.as_deref(), Some(DEFAULT_PLACEHOLDER_IMAGE));
        assert_eq!(
            init.command.as_ref().unwrap()[1..],
            ["cp", "/bin/busybox", "/.mirrord-copy/busybox"]
        );
        let vol = s.volumes.as_ref().unwrap().last().unwrap();
        assert!(vol.empty_dir.is_some());
    }

    #[test]
    fn the_installer_runs_non_root_where_the_pod_demands_it() {
        let mut s = spec(&["app"]);
        s.security_context = Some(PodSecurityContext {
            run_as_non_root: Some(true),
            ..Default::default()
        });
        install(&mut s, "app", "mirror.local/busybox:1.36").unwrap();
        let init = &s.init_containers.as_ref().unwrap()[0];
        let sc = init.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_user, Some(65534));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(init.image.as_deref(), Some("mirror.local/busybox:1.36"));

        let mut named = spec(&["app"]);
        named.security_context = Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(1000),
            ..Default::default()
        });
        install(&mut named, "app", DEFAULT_PLACEHOLDER_IMAGE).unwrap();
        let sc = named.init_containers.as_ref().unwrap()[0]
            .security_context
            .clone()
            .unwrap();
        assert_eq!(sc.run_as_user, None, "the pod's user applies");
    }

    #[test]
    fn names_the_placeholder_needs_are_not_taken_silently() {
        let mut s = spec(&["app", PLACEHOLDER_INIT_CONTAINER]);
        assert_eq!(install(&mut s, "app", "b").unwrap_err().exit_code(), 4);
    }

    #[test]
    fn the_gate_is_added_once() {
        let mut s = spec(&["app"]);
        gate_readiness(&mut s);
        gate_readiness(&mut s);
        assert_eq!(s.readiness_gates.unwrap().len(), 1);
    }
}
