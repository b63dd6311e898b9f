//! The ReplicaSet controller (pkg/controller/replicaset): keeps `spec.replicas` active pods,
//! named by generateName `<rs>-` (5 random characters), with the template's labels and a
//! controller ownerReference. Pods are claimed by the ControllerRef rules
//! (controller.PodControllerRefManager): a pod whose labels match the selector and that has
//! *no* controller ref is adopted (a controller ref is added), a pod with any other controller
//! ref is never touched; then excess pods are deleted, the least useful first
//! (controller.ActivePods ranking). Status: replicas, fullyLabeledReplicas, readyReplicas,
//! availableReplicas, observedGeneration.
//!
//! Divergences: owned pods that stop matching the selector are not released; minReadySeconds
//! is ignored (ready = available); no expectations/slow-start batching.

use std::sync::Arc;

use serde_json::{json, Value};

use super::util::{self, controller_of, deleting, name, namespace, pod_active, pod_ready, uid};
use super::{controller_ref, rt, Controllers, Reconciler, PODS};
use crate::selectors::LabelSelector;
use crate::store::{DeleteOptions, ResKey, Store};

pub(super) struct ReplicaSetController;

pub(super) const REPLICASETS: ResKey = ("apps", "replicasets");

impl Reconciler for ReplicaSetController {
    const NAME: &'static str = "replicaset";

    fn watches(&self) -> &'static [ResKey] {
        &[REPLICASETS, PODS]
    }

    fn reconcile(&mut self, store: &Store, _ctl: &Controllers) {
        for rs in util::list_all(store, REPLICASETS) {
            sync(store, &rs);
        }
    }
}

fn sync(store: &Store, rs: &Arc<Value>) {
    let sel = &rs["spec"]["selector"];
    if !sel.is_object() {
        return;
    }
    let selector = LabelSelector::from_object(sel);
    if selector.is_empty() {
        return;
    }
    let pods = claim_pods(store, rs, &selector, &|_| true);
    let active: Vec<Arc<Value>> = pods.into_iter().filter(|p| pod_active(p)).collect();
    let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    if !deleting(rs) {
        scale_pods(store, rs, &active, want, &rs["spec"]["template"]);
    }
    let ready = active.iter().filter(|p| pod_ready(p)).count();
    let mut status = json!({"replicas": active.len()});
    if !active.is_empty() {
        status["fullyLabeledReplicas"] = json!(active.len());
    }
    if ready > 0 {
        status["readyReplicas"] = json!(ready);
        status["availableReplicas"] = json!(ready);
    }
    status["observedGeneration"] = rs["metadata"]["generation"].clone();
    util::write_status(store, REPLICASETS, rs, status);
}

/// The pods in the owner's namespace matching `selector` that the owner controls, after
/// adopting matching orphans accepted by `may_adopt` (ControllerRefManager.ClaimPods). A
/// deleting owner adopts nothing; pods being deleted are not adopted.
pub(super) fn claim_pods(
    store: &Store,
    owner: &Value,
    selector: &LabelSelector,
    may_adopt: &dyn Fn(&Value) -> bool,
) -> Vec<Arc<Value>> {
    let prt = rt(store, PODS);
    let (pods, _) = store.list_matching(&prt, Some(namespace(owner)), selector);
    let mut mine = Vec::new();
    for pod in pods {
        match controller_of(&pod) {
            Some(r) if r["uid"] == uid(owner) => mine.push(pod),
            Some(_) => {} // another controller's: never touched
            None if !deleting(owner) && !deleting(&pod) && may_adopt(&pod) => {
                let mut p = (*pod).clone();
                let mut refs = p["metadata"]["ownerReferences"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                refs.push(controller_ref(owner));
                p["metadata"]["ownerReferences"] = json!(refs);
                if let Ok(adopted) =
                    store.update(&prt, Some(namespace(&pod)), name(&pod), p, None, false)
                {
                    mine.push(adopted);
                }
            }
            None => {}
        }
    }
    mine
}

/// Create or delete pods so that `active` becomes `want` (pods named `<owner>-<random>`).
pub(super) fn scale_pods(
    store: &Store,
    owner: &Value,
    active: &[Arc<Value>],
    want: usize,
    template: &Value,
) {
    let prt = rt(store, PODS);
    if active.len() < want {
        for _ in active.len()..want {
            let mut pod = util::pod_from_template(template, owner, "");
            if let Some(m) = pod["metadata"].as_object_mut() {
                m.remove("name");
            }
            pod["metadata"]["generateName"] = json!(format!("{}-", name(owner)));
            if let Err(e) = store.create(&prt, Some(namespace(owner)), pod, false) {
                tracing::debug!("{}: creating a pod: {}", name(owner), e.message);
                break;
            }
        }
    } else if active.len() > want {
        let mut ranked: Vec<&Arc<Value>> = active.iter().collect();
        ranked.sort_by_key(|p| deletion_rank(p));
        for pod in ranked.into_iter().take(active.len() - want) {
            delete_pod(store, pod);
        }
    }
}

/// controller.ActivePods ordering, most deletable first: unscheduled before scheduled,
/// Pending before Running, not ready before ready, then the newest first. Creation timestamps
/// have one-second resolution, so ties go to the most recently written pod (the highest
/// resourceVersion: e.g. one just adopted), where upstream's order is unspecified.
fn deletion_rank(
    pod: &Value,
) -> (
    bool,
    u8,
    bool,
    std::cmp::Reverse<String>,
    std::cmp::Reverse<u64>,
) {
    let phase = match util::pod_phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    (
        !pod["spec"]["nodeName"].is_null(),
        phase,
        pod_ready(pod),
        std::cmp::Reverse(
            pod["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        ),
        std::cmp::Reverse(
            pod["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|rv| rv.parse().ok())
                .unwrap_or(0),
        ),
    )
}

pub(super) fn delete_pod(store: &Store, pod: &Value) {
    let opts = DeleteOptions {
        uid: Some(uid(pod).to_string()),
        ..Default::default()
    };
    let _ = store.delete(&rt(store, PODS), Some(namespace(pod)), name(pod), &opts);
}
