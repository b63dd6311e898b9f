//! The scheduler's part for one node: a pod is bound unless its claims keep it out
//! (VolumeRestrictions and VolumeBinding), with PodScheduled False and `FailedScheduling`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::events::emit;
use super::{write, Snapshot, Tracked};
use crate::controllers::util::{self, deleting, name, namespace, uid};
use crate::controllers::volumes::claim_names;
use crate::controllers::{rt, PVCS};
use crate::store::Store;
use crate::volumes::{access_modes, RWOP};

/// Bound as the scheduler's volume binder sees it (spec.volumeName and `bind-completed`).
pub(super) fn fully_bound(claim: &Value) -> bool {
    claim["spec"]["volumeName"]
        .as_str()
        .is_some_and(|v| !v.is_empty())
        && !claim["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"].is_null()
}

/// Why the scheduler cannot place the pod because of its claims (`FitError.Error()` for one
/// node), None when it can.
pub(super) fn unschedulable(store: &Store, pod: &Value, snap: &Snapshot) -> Option<String> {
    // A PreFilter rejection: UnschedulableAndUnresolvable, preemption cannot help.
    let prefilter = |m: &str| {
        format!("0/1 nodes are available: {m}. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.")
    };
    let crt = rt(store, PVCS);
    let names: Vec<&str> = claim_names(pod).collect();
    let mut claims = Vec::new();
    // VolumeRestrictions' PreFilter fetches every claim first ...
    for c in &names {
        match store.get(&crt, Some(namespace(pod)), c) {
            Ok(claim) => claims.push(claim),
            Err(_) => {
                return Some(prefilter(&format!(
                    "persistentvolumeclaim \"{c}\" not found"
                )))
            }
        }
    }
    // ... then VolumeBinding's (podHasPVCs, then the unbound immediate claims).
    if let Some(c) = claims.iter().find(|c| deleting(c)) {
        return Some(prefilter(&format!(
            "persistentvolumeclaim \"{}\" is being deleted",
            name(c)
        )));
    }
    if claims.iter().any(|c| !fully_bound(c)) {
        return Some(prefilter(
            "pod has unbound immediate PersistentVolumeClaims",
        ));
    }
    // VolumeRestrictions' Filter: a ReadWriteOncePod claim already used by a scheduled pod.
    let taken = claims.iter().any(|c| {
        access_modes(c).contains(&RWOP)
            && snap
                .claim_users
                .get(&format!("{}/{}", namespace(pod), name(c)))
                .is_some_and(|us| us.iter().any(|u| u != uid(pod)))
    });
    taken.then(|| {
        "0/1 nodes are available: 1 node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.".to_string()
    })
}

/// The scheduler's answer to an unschedulable pod: PodScheduled False (Unschedulable) with the
/// message, and a Warning FailedScheduling Event (handleSchedulingFailure).
pub(super) fn unschedulable_status(store: &Store, pod: &Arc<Value>, t: &mut Tracked, why: &str) {
    let old = pod["status"]["conditions"].as_array().and_then(|cs| {
        cs.iter()
            .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
    });
    let since = old
        .map(|c| c["lastTransitionTime"].clone())
        .unwrap_or_else(|| json!(util::now()));
    let mut status = pod["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    status["phase"] = json!("Pending");
    status["conditions"] = json!([{"type": "PodScheduled", "status": "False",
        "lastProbeTime": null, "lastTransitionTime": since,
        "reason": "Unschedulable", "message": why}]);
    if t.said.insert(why.to_string()) {
        emit(
            store,
            pod,
            "FailedScheduling",
            "Warning",
            None,
            why,
            "default-scheduler",
        );
    }
    write(store, pod, status);
}
