//! A StatefulSet's `volumeClaimTemplates` in the copy (pure, no I/O).
//!
//! The StatefulSet controller gives pod `<sts>-<ordinal>` one `persistentVolumeClaim` volume per
//! claim template, named after the template, with claim `<template>-<sts>-<ordinal>`. The pod
//! template itself carries only the volumeMounts, so a template copied as it is fails the API
//! server's validation (`volumeMounts[0].name: Not found: "data"`). The copy gets what pod
//! `<sts>-0` has: the claims of ordinal 0 (`--claims-as-emptydir`: empty volumes instead).
//! With `--replace-one` the copy takes the place of the pod that goes away: scaling N to N-1
//! removes the highest ordinal, so the copy gets the claims of ordinal N-1.
//!
//! A ReadWriteOnce volume attaches to one node, a ReadWriteOncePod volume to one pod: while
//! the ordinal's pod runs, a copy on the same claim cannot start. Such a copy therefore
//! requires scale-down (or replace-one), and the StatefulSet is scaled *before* the copy is
//! created.

use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, PersistentVolumeClaimVolumeSource, PodSpec, Volume,
};

use crate::error::Error;
use crate::labels::{ORIGINAL_REPLICAS_ANNOTATION, SCALED_DOWN_BY_ANNOTATION};
use crate::resolve::ResolvedTarget;
use crate::scale_down::ScaleTo;
use crate::target::TargetKind;

/// The ordinal whose claims a copy of the StatefulSet itself mounts, unless it replaces one.
pub(crate) const COPIED_ORDINAL: u32 = 0;

/// The ordinal whose claims the copy mounts and whose pod it waits for: with `--replace-one`
/// the highest, N-1 (the pod scaling to N-1 removes), N being the way back's count when a
/// dead session left its record on the StatefulSet; otherwise [`COPIED_ORDINAL`].
pub(crate) fn copied_ordinal(resolved: &ResolvedTarget, scale_to: Option<ScaleTo>) -> u32 {
    if scale_to != Some(ScaleTo::OneLess) {
        return COPIED_ORDINAL;
    }
    let raw = &resolved.raw;
    let annotations = &raw["metadata"]["annotations"];
    let recorded = annotations[SCALED_DOWN_BY_ANNOTATION]
        .as_str()
        .and(annotations[ORIGINAL_REPLICAS_ANNOTATION].as_str())
        .and_then(|v| v.parse::<i64>().ok());
    let replicas = recorded
        .or_else(|| raw["spec"]["replicas"].as_i64())
        .unwrap_or(1);
    u32::try_from(replicas - 1).unwrap_or(COPIED_ORDINAL)
}

/// One claim template as the copy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    /// The template's name: the volume name the containers mount.
    pub template: String,
    /// `<template>-<sts>-<ordinal>`: the PersistentVolumeClaim the copy mounts.
    pub claim_name: String,
    /// ReadWriteOnce or ReadWriteOncePod: only one pod (node) at a time.
    pub exclusive: bool,
}

/// The claims of `resolved` when it is a StatefulSet, those of pod `<sts>-<ordinal>` (empty
/// for every other kind: a pod target already names its claims in its own volumes).
pub(crate) fn claims(resolved: &ResolvedTarget, ordinal: u32) -> Vec<Claim> {
    if resolved.target.kind != TargetKind::StatefulSet {
        return Vec::new();
    }
    let sts_name = &resolved.object.name;
    resolved
        .claim_templates
        .iter()
        .map(|t| Claim {
            claim_name: format!("{}-{sts_name}-{ordinal}", t.name),
            template: t.name.clone(),
            exclusive: t.exclusive,
        })
        .collect()
}

/// Give the copy a volume per claim, replacing a template volume of the same name as the
/// StatefulSet controller does: the ordinal's claim, or an emptyDir.
pub(crate) fn mount_claims(spec: &mut PodSpec, claims: &[Claim], as_empty_dir: bool) {
    if claims.is_empty() {
        return;
    }
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    volumes.retain(|v| !claims.iter().any(|c| c.template == v.name));
    for claim in claims {
        let mut volume = Volume {
            name: claim.template.clone(),
            ..Default::default()
        };
        if as_empty_dir {
            volume.empty_dir = Some(EmptyDirVolumeSource::default());
        } else {
            volume.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.claim_name.clone(),
                read_only: None,
            });
        }
        volumes.push(volume);
    }
}

/// Refuse, before anything is written, a copy that would share a one-pod claim with a running
/// original: it would never start (Multi-Attach) or, worse, write beside it.
pub(crate) fn check_exclusive(
    resolved: &ResolvedTarget,
    claims: &[Claim],
    scale_down: bool,
    as_empty_dir: bool,
) -> Result<(), Error> {
    if scale_down || as_empty_dir {
        return Ok(());
    }
    let exclusive: Vec<&Claim> = claims.iter().filter(|c| c.exclusive).collect();
    if exclusive.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = exclusive
        .iter()
        .map(|c| format!("{} (template {:?})", c.claim_name, c.template))
        .collect();
    let workload = resolved.target.workload();
    Err(Error::Unsupported(format!(
        "{workload} mounts the ReadWriteOnce volume claim{} {}, which only one pod can use at a time, \
         and {}-{COPIED_ORDINAL} is using it; add --scale-down to scale {workload} to zero first and \
         hand the claim to the copy (restored when the session ends), or --claims-as-emptydir to give \
         the copy empty volumes instead of the claims",
        if names.len() > 1 { "s" } else { "" },
        names.join(", "),
        resolved.object.name,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::WorkloadRef;
    use k8s_openapi::api::core::v1::{PodTemplateSpec, VolumeMount};
    use serde_json::json;

    fn sts(modes: &[&str], extra_volume: bool) -> ResolvedTarget {
        let mut volumes = vec![];
        if extra_volume {
            volumes.push(json!({"name": "data", "emptyDir": {}}));
        }
        volumes.push(json!({"name": "config", "configMap": {"name": "db"}}));
        let raw = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "ns", "uid": "u"},
            "spec": {
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"spec": {"containers": [{"name": "pg", "image": "postgres"}], "volumes": volumes}},
                "volumeClaimTemplates": [
                    {"metadata": {"name": "data"}, "spec": {"accessModes": modes, "resources": {"requests": {"storage": "1Gi"}}}},
                    {"metadata": {"name": "wal"}, "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}
                ]
            }
        });
        let template: PodTemplateSpec =
            serde_json::from_value(raw["spec"]["template"].clone()).unwrap();
        ResolvedTarget {
            target: "statefulset/db".parse().unwrap(),
            namespace: "ns".into(),
            template,
            object: WorkloadRef {
                api_version: "apps/v1".into(),
                kind: "StatefulSet".into(),
                name: "db".into(),
                uid: "u".into(),
                namespace: "ns".into(),
            },
            claim_templates: crate::resolve::claim_templates(&raw),
            raw,
        }
    }

    #[test]
    fn claims_of_ordinal_zero_with_their_access() {
        let c = claims(&sts(&["ReadWriteOnce"], false), 0);
        assert_eq!(
            c,
            vec![
                Claim {
                    template: "data".into(),
                    claim_name: "data-db-0".into(),
                    exclusive: true
                },
                Claim {
                    template: "wal".into(),
                    claim_name: "wal-db-0".into(),
                    exclusive: false
                },
            ]
        );
        assert!(claims(&sts(&["ReadWriteOncePod"], false), 0)[0].exclusive);
        assert!(!claims(&sts(&["ReadOnlyMany"], false), 0)[0].exclusive);
    }

    #[test]
    fn replace_one_takes_the_highest_ordinals_claims() {
        let mut r = sts(&["ReadWriteOnce"], false);
        assert_eq!(copied_ordinal(&r, None), 0);
        assert_eq!(copied_ordinal(&r, Some(ScaleTo::Zero)), 0);
        // No spec.replicas: the API server's default of 1 (refused before, never -1).
        assert_eq!(copied_ordinal(&r, Some(ScaleTo::OneLess)), 0);
        r.raw["spec"]["replicas"] = json!(3);
        assert_eq!(copied_ordinal(&r, Some(ScaleTo::OneLess)), 2);
        assert_eq!(claims(&r, 2)[0].claim_name, "data-db-2");
        // A dead session's record: the way back's count decides, not the count it left.
        r.raw["spec"]["replicas"] = json!(2);
        r.raw["metadata"]["annotations"] = json!({
            "mirrord-copy.io/scaled-down-by": "dead",
            "mirrord-copy.io/original-replicas": "3",
        });
        assert_eq!(copied_ordinal(&r, Some(ScaleTo::OneLess)), 2);
    }

    #[test]
    fn only_statefulsets_have_claims() {
        let mut r = sts(&["ReadWriteOnce"], false);
        r.target = "deployment/db".parse().unwrap();
        assert!(claims(&r, 0).is_empty());
    }

    #[test]
    fn claims_become_volumes_replacing_same_named_ones() {
        let r = sts(&["ReadWriteOnce"], true);
        let c = claims(&r, 0);
        let mut spec = r.template.spec.clone().unwrap();
        spec.containers[0].volume_mounts = Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            ..Default::default()
        }]);
        mount_claims(&mut spec, &c, false);
        let volumes = serde_json::to_value(&spec.volumes).unwrap();
        assert_eq!(
            volumes,
            json!([
                {"name": "config", "configMap": {"name": "db"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}},
                {"name": "wal", "persistentVolumeClaim": {"claimName": "wal-db-0"}},
            ])
        );
        let mut spec = r.template.spec.clone().unwrap();
        mount_claims(&mut spec, &c, true);
        let volumes = serde_json::to_value(&spec.volumes).unwrap();
        assert_eq!(volumes[1], json!({"name": "data", "emptyDir": {}}));
        assert_eq!(volumes[2], json!({"name": "wal", "emptyDir": {}}));
    }

    #[test]
    fn an_exclusive_claim_needs_scale_down_or_emptydir() {
        let r = sts(&["ReadWriteOnce"], false);
        let c = claims(&r, 0);
        let err = check_exclusive(&r, &c, false, false).unwrap_err();
        assert_eq!(err.exit_code(), 4);
        let text = err.to_string();
        for needle in [
            "statefulset/db",
            "data-db-0",
            "db-0 is using it",
            "--scale-down",
            "--claims-as-emptydir",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from: {text}");
        }
        assert!(
            !text.contains("wal-db-0"),
            "a shared claim is no reason: {text}"
        );
        check_exclusive(&r, &c, true, false).unwrap();
        check_exclusive(&r, &c, false, true).unwrap();
        let shared = sts(&["ReadWriteMany"], false);
        check_exclusive(&shared, &claims(&shared, 0), false, false).unwrap();
    }
}
