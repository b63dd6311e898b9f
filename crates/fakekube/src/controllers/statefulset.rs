//! The StatefulSet controller (pkg/controller/statefulset): pods `<sts>-<ordinal>` for
//! ordinals 0..replicas, labelled `controller-revision-hash`, `statefulset.kubernetes.io/pod-name`
//! and `apps.kubernetes.io/pod-index`, with hostname/subdomain set. OrderedReady (the default)
//! creates one pod at a time, each once the lower ones are Running and Ready; scaling down
//! removes the highest ordinal first (one at a time). Orphans matching the selector are adopted
//! only when their name is `<sts>-<int>` (isMemberOf): a non-ordinal name is left alone.
//!
//! volumeClaimTemplates (stateful_set_utils.go, stateful_pod_control.go): before a pod is
//! created, its missing claims `<template>-<sts>-<ordinal>` are created
//! (createPersistentVolumeClaims; getPersistentVolumeClaims: the template's metadata and spec,
//! labels = the template's plus the selector's matchLabels);
//! a claim being deleted, or one the API server refuses, holds the pod back. The pod gets a
//! volume `{name: <template>, persistentVolumeClaim: {claimName}}` per template, in place of a
//! template volume of that name (updateStorage). A Pending pod gets its missing claims back
//! (createMissingPersistentVolumeClaims). Claims outlive their pods: ownerReferences follow
//! `persistentVolumeClaimRetentionPolicy` (updateClaimOwnerRefForSetAndPod): none for Retain /
//! Retain (the default), a controller reference to the StatefulSet for `whenDeleted: Delete`,
//! one to the pod of a scaled-down ordinal for `whenScaled: Delete` (set before the pod is
//! deleted); the garbage collector does the deleting.
//!
//! Divergences: no ControllerRevision objects (the revision hash is computed from the
//! template), no rolling update of existing pods, no Events (upstream records
//! SuccessfulCreate / FailedCreate for pods and claims on the StatefulSet).

use std::sync::Arc;

use serde_json::{json, Value};

use super::replicaset::{claim_pods, delete_pod};
use super::util::{self, deleting, name, namespace, pod_active, pod_ready, uid};
use super::{controller_ref, rt, Controllers, Reconciler, PODS, PVCS};
use crate::selectors::LabelSelector;
use crate::store::{ResKey, Store};

pub(super) const STATEFULSETS: ResKey = ("apps", "statefulsets");

pub(super) struct StatefulSetController;

impl Reconciler for StatefulSetController {
    const NAME: &'static str = "statefulset";

    fn watches(&self) -> &'static [ResKey] {
        &[STATEFULSETS, PODS]
    }

    fn reconcile(&mut self, store: &Store, _ctl: &Controllers) {
        for sts in util::list_all(store, STATEFULSETS) {
            sync(store, &sts);
        }
    }
}

fn ordinal(sts: &str, pod: &str) -> Option<usize> {
    pod.strip_prefix(sts)?.strip_prefix('-')?.parse().ok()
}

fn sync(store: &Store, sts: &Arc<Value>) {
    let sel = &sts["spec"]["selector"];
    if !sel.is_object() {
        return;
    }
    let selector = LabelSelector::from_object(sel);
    if selector.is_empty() {
        return;
    }
    let sname = name(sts).to_string();
    let pods = claim_pods(store, sts, &selector, &|p| {
        ordinal(&sname, name(p)).is_some()
    });
    let want = sts["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    let revision = format!(
        "{}-{}",
        sname,
        util::template_hash(&sts["spec"]["template"])
    );
    let parallel = sts["spec"]["podManagementPolicy"] == "Parallel";
    let mut by_ord: Vec<(usize, Arc<Value>)> = pods
        .iter()
        .filter_map(|p| ordinal(&sname, name(p)).map(|o| (o, p.clone())))
        .collect();
    by_ord.sort_by_key(|(o, _)| *o);
    if !deleting(sts) {
        let mut claims_pending = Vec::new();
        for (o, p) in by_ord.iter().filter(|(_, p)| !deleting(p)) {
            // Claims of Pending pods are recreated if missing; every claim's ownerReferences
            // follow the retention policy (condemned ordinals before their pod goes).
            if util::pod_phase(p) == "Pending" {
                create_claims(store, sts, *o);
            }
            if !set_claim_owners(store, sts, p, *o, *o >= want) {
                claims_pending.push(*o);
            }
        }
        let prt = rt(store, PODS);
        // Create the missing ordinals below `want`.
        for i in 0..want {
            if by_ord.iter().any(|(o, _)| *o == i) {
                continue;
            }
            if !parallel
                && by_ord
                    .iter()
                    .filter(|(o, _)| *o < i)
                    .any(|(_, p)| !(pod_active(p) && pod_ready(p)))
            {
                break; // OrderedReady: wait for the lower ordinals
            }
            if !create_claims(store, sts, i) {
                break; // the pod waits for its claims
            }
            let pname = format!("{sname}-{i}");
            let mut pod = util::pod_from_template(&sts["spec"]["template"], sts, &pname);
            update_storage(&mut pod, sts, i);
            let labels = &mut pod["metadata"]["labels"];
            if !labels.is_object() {
                *labels = json!({});
            }
            labels["controller-revision-hash"] = json!(revision);
            labels["statefulset.kubernetes.io/pod-name"] = json!(pname);
            labels["apps.kubernetes.io/pod-index"] = json!(i.to_string());
            pod["spec"]["hostname"] = json!(pname);
            if let Some(svc) = sts["spec"]["serviceName"]
                .as_str()
                .filter(|s| !s.is_empty())
            {
                pod["spec"]["subdomain"] = json!(svc);
            }
            if store
                .create(&prt, Some(namespace(sts)), pod, false)
                .is_err()
                || !parallel
            {
                break;
            }
        }
        // Remove ordinals >= want, highest first (one per pass unless Parallel), once their
        // claims' ownerReferences are written.
        for (o, p) in by_ord.iter().rev().filter(|(o, _)| *o >= want) {
            if claims_pending.contains(o) {
                break;
            }
            if !deleting(p) {
                delete_pod(store, p);
                if !parallel {
                    break;
                }
            }
        }
    }
    let active: Vec<&Arc<Value>> = by_ord
        .iter()
        .map(|(_, p)| p)
        .filter(|p| pod_active(p))
        .collect();
    let ready = active.iter().filter(|p| pod_ready(p)).count();
    let mut status = json!({
        "replicas": active.len(),
        "availableReplicas": ready,
        "observedGeneration": sts["metadata"]["generation"],
        "currentRevision": revision,
        "updateRevision": revision,
        "collisionCount": 0,
    });
    if ready > 0 {
        status["readyReplicas"] = json!(ready);
    }
    if !active.is_empty() {
        status["currentReplicas"] = json!(active.len());
        status["updatedReplicas"] = json!(active.len());
    }
    util::write_status(store, STATEFULSETS, sts, status);
}

/// The claims of ordinal `i`, with the template name each comes from (getPersistentVolumeClaims).
fn claims_for(sts: &Value, i: usize) -> Vec<(String, Value)> {
    let sname = name(sts);
    sts["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let tname = t["metadata"]["name"].as_str()?;
            let mut labels = t["metadata"]["labels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            if let Some(sel) = sts["spec"]["selector"]["matchLabels"].as_object() {
                for (k, v) in sel {
                    labels.insert(k.clone(), v.clone());
                }
            }
            let mut meta = json!({"name": format!("{tname}-{sname}-{i}")});
            if !labels.is_empty() {
                meta["labels"] = Value::Object(labels);
            }
            if t["metadata"]["annotations"].is_object() {
                meta["annotations"] = t["metadata"]["annotations"].clone();
            }
            let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": meta, "spec": t["spec"].clone()});
            Some((tname.to_string(), claim))
        })
        .collect()
}

/// createPersistentVolumeClaims: create the missing claims of ordinal `i`; false when one could
/// not be created or is being deleted (`pvc ... is being deleted`): the pod is not created then.
fn create_claims(store: &Store, sts: &Value, i: usize) -> bool {
    let crt = rt(store, PVCS);
    let mut ok = true;
    for (_, claim) in claims_for(sts, i) {
        match store.get(&crt, Some(namespace(sts)), name(&claim)) {
            Ok(existing) => ok &= !deleting(&existing),
            Err(_) => {
                ok &= store
                    .create(&crt, Some(namespace(sts)), claim, false)
                    .is_ok()
            }
        }
    }
    ok
}

/// updateStorage: one `persistentVolumeClaim` volume per template (first), replacing a template
/// volume of the same name; the other volumes follow.
fn update_storage(pod: &mut Value, sts: &Value, i: usize) {
    let claims = claims_for(sts, i);
    if claims.is_empty() {
        return;
    }
    let mut volumes: Vec<Value> = claims
        .iter()
        .map(|(t, c)| json!({"name": t, "persistentVolumeClaim": {"claimName": name(c)}}))
        .collect();
    volumes.extend(
        pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| !claims.iter().any(|(t, _)| v["name"] == t.as_str()))
            .cloned(),
    );
    pod["spec"]["volumes"] = json!(volumes);
}

/// Whether `r` refers to `owner` by apiVersion, kind and name (matchesRef), whatever its uid.
fn refers_to(r: &Value, owner: &Value) -> bool {
    r["apiVersion"] == owner["apiVersion"]
        && r["kind"] == owner["kind"]
        && r["name"] == owner["metadata"]["name"]
}

/// The ownerReferences a claim should have (isClaimOwnerUpToDate /
/// updateClaimOwnerRefForSetAndPod), None to leave it alone: stale references (the set or pod
/// by name with another uid) and other controllers are not touched.
fn claim_owner_refs(
    claim: &Value,
    sts: &Value,
    pod: &Value,
    scaled_down: bool,
) -> Option<Vec<Value>> {
    let policy = &sts["spec"]["persistentVolumeClaimRetentionPolicy"];
    let delete_on_delete = policy["whenDeleted"] == "Delete";
    let delete_on_scale = policy["whenScaled"] == "Delete";
    let refs: Vec<Value> = claim["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ours = |r: &Value| refers_to(r, sts) || refers_to(r, pod);
    if refs.iter().any(|r| {
        refers_to(r, sts) && r["uid"] != uid(sts) || refers_to(r, pod) && r["uid"] != uid(pod)
    }) {
        return None; // stale: left to the garbage collector
    }
    let mut want: Vec<Value> = refs.iter().filter(|r| !ours(r)).cloned().collect();
    let other_controller =
        (delete_on_delete || delete_on_scale) && want.iter().any(|r| r["controller"] == true);
    if !other_controller {
        if delete_on_delete && !(delete_on_scale && scaled_down) {
            want.push(controller_ref(sts));
        }
        if delete_on_scale && scaled_down {
            want.push(controller_ref(pod));
        }
    }
    (want != refs).then_some(want)
}

/// Bring the ownerReferences of ordinal `o`'s existing claims in line with the policy; false
/// when a write failed (tried again next pass).
fn set_claim_owners(store: &Store, sts: &Value, pod: &Value, o: usize, scaled_down: bool) -> bool {
    let crt = rt(store, PVCS);
    let mut ok = true;
    for (_, c) in claims_for(sts, o) {
        let Ok(claim) = store.get(&crt, Some(namespace(sts)), name(&c)) else {
            continue;
        };
        if deleting(&claim) {
            continue;
        }
        if let Some(refs) = claim_owner_refs(&claim, sts, pod, scaled_down) {
            let mut u = (*claim).clone();
            if refs.is_empty() {
                if let Some(m) = u["metadata"].as_object_mut() {
                    m.remove("ownerReferences");
                }
            } else {
                u["metadata"]["ownerReferences"] = json!(refs);
            }
            ok &= store
                .update(&crt, Some(namespace(sts)), name(&claim), u, None, false)
                .is_ok();
        }
    }
    ok
}
