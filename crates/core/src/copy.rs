//! Copy rules (pure, no I/O): from a target's pod template to the copy pod.
//!
//! - probes (liveness, readiness, startup) are removed from every container and init container;
//! - `--exclude-container` / `--exclude-init-container` remove containers by name;
//! - from a pod target, what the scheduler, kubelet and admission filled in is dropped;
//! - labels that tie a pod to a controller are dropped, so no controller adopts the copy;
//! - a StatefulSet's claim templates become volumes of ordinal 0's claims (with `--replace-one`, of
//!   the highest ordinal; crate::claims);
//! - the copy is owned (controller ownerReference) by its session ConfigMap.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::claims::{claims, mount_claims};
use crate::error::Error;
use crate::labels::{self, Role};
use crate::model::SessionHandle;
use crate::placeholder::{self, DEFAULT_CONTAINER_ANNOTATION, DEFAULT_PLACEHOLDER_IMAGE};
use crate::resolve::ResolvedTarget;
use crate::target::TargetKind;

/// User options that shape the copy. Stored as JSON in the session and on the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CopyOptions {
    /// Containers left out of the copy.
    pub exclude_containers: Vec<String>,
    /// Init containers left out of the copy.
    pub exclude_init_containers: Vec<String>,
    /// A StatefulSet's claim templates become emptyDir volumes instead of ordinal 0's claims
    /// (crate::claims). Left out of the JSON when false, so older records read the same.
    #[serde(
        rename = "claimsAsEmptyDir",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub claims_as_emptydir: bool,
    /// The target container runs the application's own command (without probes), instead of
    /// the placeholder (crate::placeholder).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keep_command: bool,
    /// The image the placeholder's busybox comes from; None: [`DEFAULT_PLACEHOLDER_IMAGE`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placeholder_image: Option<String>,
    /// The copy is a ready endpoint of the Services that select it (no readiness gate): with
    /// scale-down, or when asked.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub serve_traffic: bool,
}

impl CopyOptions {
    /// Canonical form (sorted, deduplicated), so equal requests compare equal for `--reuse`.
    pub fn normalized(&self) -> CopyOptions {
        let norm = |v: &Vec<String>| {
            let mut v = v.clone();
            v.sort();
            v.dedup();
            v
        };
        CopyOptions {
            exclude_containers: norm(&self.exclude_containers),
            exclude_init_containers: norm(&self.exclude_init_containers),
            claims_as_emptydir: self.claims_as_emptydir,
            keep_command: self.keep_command,
            placeholder_image: self.placeholder_image.clone(),
            serve_traffic: self.serve_traffic,
        }
    }

    /// The image the placeholder's busybox is copied from.
    pub fn placeholder_image(&self) -> &str {
        self.placeholder_image
            .as_deref()
            .unwrap_or(DEFAULT_PLACEHOLDER_IMAGE)
    }

    /// The JSON stored in the session ConfigMap and the pod annotation.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.normalized()).unwrap_or_else(|_| "{}".into())
    }
}

/// Prefix of the projected service-account token volume the ServiceAccount admission plugin
/// injects into every pod. Copying it from a pod target would make admission of the copy
/// fail (duplicate mount path), so it is dropped and admission injects a fresh one.
const SERVICE_ACCOUNT_VOLUME_PREFIX: &str = "kube-api-access-";

/// The copy's pod spec, from the target's template.
pub(crate) fn copy_pod_spec(
    template: &PodTemplateSpec,
    kind: TargetKind,
    opts: &CopyOptions,
) -> Result<PodSpec, Error> {
    let mut spec = template
        .spec
        .clone()
        .ok_or_else(|| Error::Unsupported("the target's pod template has no spec".into()))?;

    exclude_containers(&mut spec.containers, &opts.exclude_containers)?;
    let mut init = spec.init_containers.take().unwrap_or_default();
    exclude_init_containers(&mut init, &opts.exclude_init_containers)?;
    spec.init_containers = (!init.is_empty()).then_some(init);

    for container in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        container.liveness_probe = None;
        container.readiness_probe = None;
        container.startup_probe = None;
    }

    if kind == TargetKind::Pod {
        strip_runtime_fields(&mut spec);
    }
    // A copy lives until its session ends: a Job template's pod deadline would kill it.
    spec.active_deadline_seconds = None;
    // restartPolicy is kept as the template has it: Always for Deployments, Never/OnFailure
    // for Jobs (so a Job's copy still runs to completion once).
    Ok(spec)
}

/// Fields of a live pod that the scheduler, kubelet or admission filled in; a fresh pod
/// gets its own.
fn strip_runtime_fields(spec: &mut PodSpec) {
    spec.node_name = None;
    spec.ephemeral_containers = None;
    // Filled in by the Priority and RuntimeClass admission plugins from the class named in the
    // spec; they refuse a pod that carries values differing from the class's current ones.
    spec.priority = None;
    spec.preemption_policy = None;
    spec.overhead = None;
    let injected: Vec<String> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.name.starts_with(SERVICE_ACCOUNT_VOLUME_PREFIX) && v.projected.is_some())
        .map(|v| v.name.clone())
        .collect();
    if injected.is_empty() {
        return;
    }
    if let Some(volumes) = spec.volumes.as_mut() {
        volumes.retain(|v| !injected.contains(&v.name));
    }
    if spec.volumes.as_ref().is_some_and(Vec::is_empty) {
        spec.volumes = None;
    }
    for container in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        if let Some(mounts) = container.volume_mounts.as_mut() {
            mounts.retain(|m| !injected.contains(&m.name));
            if mounts.is_empty() {
                container.volume_mounts = None;
            }
        }
    }
}

fn exclude_containers(containers: &mut Vec<Container>, exclude: &[String]) -> Result<(), Error> {
    if exclude.is_empty() {
        return Ok(());
    }
    let valid: Vec<String> = containers.iter().map(|c| c.name.clone()).collect();
    check_known("--exclude-container", "container", exclude, &valid)?;
    containers.retain(|c| !exclude.contains(&c.name));
    if containers.is_empty() {
        return Err(Error::Unsupported(format!(
            "--exclude-container would remove every container ({}); at least one must remain",
            valid.join(", ")
        )));
    }
    Ok(())
}

fn exclude_init_containers(init: &mut Vec<Container>, exclude: &[String]) -> Result<(), Error> {
    if exclude.is_empty() {
        return Ok(());
    }
    let valid: Vec<String> = init.iter().map(|c| c.name.clone()).collect();
    check_known(
        "--exclude-init-container",
        "init container",
        exclude,
        &valid,
    )?;
    init.retain(|c| !exclude.contains(&c.name));
    Ok(())
}

fn check_known(flag: &str, what: &str, names: &[String], valid: &[String]) -> Result<(), Error> {
    let unknown: Vec<&String> = names.iter().filter(|n| !valid.contains(n)).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let unknown: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
    let valid = if valid.is_empty() {
        format!("the target has no {what}s")
    } else {
        format!("valid {what}s: {}", valid.join(", "))
    };
    Err(Error::Usage(format!(
        "{flag}: no {what} named {}; {valid}",
        unknown.join(", ")
    )))
}

/// The copy's labels: the template's (so Services still route to the copy) minus the ones that
/// tie a pod to a controller, plus ours. Ours win a collision (a template may carry
/// `app.kubernetes.io/managed-by: Helm`): every selector of ours depends on them.
pub(crate) fn copy_labels(
    template_labels: Option<&BTreeMap<String, String>>,
    session_id: &str,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = template_labels
        .into_iter()
        .flatten()
        .filter(|(k, _)| !labels::CONTROLLER_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.extend(labels::managed_labels(session_id, Role::Copy));
    out
}

/// Annotations a live pod carries that describe that pod, not its template: the kubelet's
/// static-pod markers (the API server refuses to create a pod claiming to be a mirror pod) and
/// kubectl's record of what was applied to the original object.
const POD_ONLY_ANNOTATIONS: &[&str] = &[
    "kubernetes.io/config.mirror",
    "kubernetes.io/config.hash",
    "kubernetes.io/config.seen",
    "kubernetes.io/config.source",
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// The template's annotations, minus a pod target's [`POD_ONLY_ANNOTATIONS`]. Everything else
/// is kept, `kubectl.kubernetes.io/restartedAt` included: annotations are part of what the
/// application saw, and some (sidecar injection, config checksums) change how the pod runs.
pub(crate) fn copy_annotations(
    template_annotations: Option<&BTreeMap<String, String>>,
    kind: TargetKind,
) -> BTreeMap<String, String> {
    template_annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| kind != TargetKind::Pod || !POD_ONLY_ANNOTATIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The copy pod, ready to create: [`copy_pod_spec`], [`copy_labels`], [`copy_annotations`]
/// plus ours, and the controller ownerReference to the session ConfigMap. A StatefulSet's
/// copy mounts the claims of pod `<sts>-<ordinal>` (crate::claims::copied_ordinal).
pub(crate) fn build_copy_pod(
    resolved: &ResolvedTarget,
    opts: &CopyOptions,
    ordinal: u32,
    session: &SessionHandle,
    pod_name: &str,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<Pod, Error> {
    if let Some(container) = &resolved.target.container {
        if opts.exclude_containers.contains(container) {
            return Err(Error::Usage(format!(
                "--exclude-container {container} removes the container the target names"
            )));
        }
    }
    let mut spec = copy_pod_spec(&resolved.template, resolved.target.kind, opts)?;
    mount_claims(
        &mut spec,
        &claims(resolved, ordinal),
        opts.claims_as_emptydir,
    );
    let template_meta = resolved.template.metadata.as_ref();
    let mut annotations = copy_annotations(
        template_meta.and_then(|m| m.annotations.as_ref()),
        resolved.target.kind,
    );
    let target_container = placeholder::target_container(
        &spec,
        resolved.target.container.as_deref(),
        annotations
            .get(DEFAULT_CONTAINER_ANNOTATION)
            .map(String::as_str),
    )?
    .to_string();
    if !opts.keep_command {
        placeholder::install(&mut spec, &target_container, opts.placeholder_image())?;
    }
    if !opts.serve_traffic {
        placeholder::gate_readiness(&mut spec);
    }
    let runs = if opts.keep_command {
        labels::RUNS_APPLICATION
    } else {
        labels::RUNS_PLACEHOLDER
    };
    annotations.extend([
        // kubectl exec/logs and mirrord's `pod/NAME` target this container by default.
        (DEFAULT_CONTAINER_ANNOTATION.to_string(), target_container),
        (labels::RUNS_ANNOTATION.to_string(), runs.to_string()),
        (
            labels::ORIGINAL_TARGET_ANNOTATION.to_string(),
            resolved.target.to_string(),
        ),
        (labels::CREATED_BY_ANNOTATION.to_string(), owner.to_string()),
        (
            labels::CREATED_AT_ANNOTATION.to_string(),
            mirrord_copy_lock::rfc3339(now),
        ),
        (labels::OPTIONS_ANNOTATION.to_string(), opts.to_json()),
    ]);
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(pod_name.to_string()),
            namespace: Some(resolved.namespace.clone()),
            labels: Some(copy_labels(
                template_meta.and_then(|m| m.labels.as_ref()),
                &session.id,
            )),
            annotations: Some(annotations),
            owner_references: Some(vec![session.owner_reference()]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    })
}

#[cfg(test)]
mod tests;
