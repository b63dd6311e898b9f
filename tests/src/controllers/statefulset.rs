//! The StatefulSet controller (pkg/controller/statefulset): pods `<sts>-<ordinal>` for
//! ordinals 0..replicas, labelled `controller-revision-hash`, `statefulset.kubernetes.io/pod-name`
//! and `apps.kubernetes.io/pod-index`, with hostname/subdomain set. OrderedReady (the default)
//! creates one pod at a time, each once the lower ones are Running and Ready; scaling down
//! removes the highest ordinal first (one at a time). Orphans matching the selector are adopted
//! only when their name is `<sts>-<int>` (isMemberOf): a non-ordinal name is left alone.
//!
//! Divergences: no ControllerRevision objects (the revision hash is computed from the
//! template), no volumeClaimTemplates/PVCs, no rolling update of existing pods.

use std::sync::Arc;

use serde_json::{json, Value};

use super::replicaset::{claim_pods, delete_pod};
use super::util::{self, deleting, name, namespace, pod_active, pod_ready};
use super::{rt, Controllers, Reconciler, PODS};
use crate::selectors::LabelSelector;
use crate::store::{ResKey, Store};

pub const STATEFULSETS: ResKey = ("apps", "statefulsets");

pub struct StatefulSetController;

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
            let pname = format!("{sname}-{i}");
            let mut pod = util::pod_from_template(&sts["spec"]["template"], sts, &pname);
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
        // Remove ordinals >= want, highest first (one per pass unless Parallel).
        for (_, p) in by_ord.iter().rev().filter(|(o, _)| *o >= want) {
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
