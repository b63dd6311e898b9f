//! Stand-ins for kube-controller-manager's PersistentVolume controller (`persistentvolume-binder`)
//! working with a dynamic provisioner, and for its `pvc-protection` controller. One switch,
//! `persistentvolume`, covers both.
//!
//! - Binding: a claim that is not Bound gets what the PV controller writes once a provisioner
//!   has created its volume (bindClaimToVolume, then updateClaimStatus): `spec.volumeName:
//!   pvc-<claim uid>` (the name external provisioners give the PV), the annotations
//!   `pv.kubernetes.io/bind-completed: "yes"` and `pv.kubernetes.io/bound-by-controller: "yes"`,
//!   then `status: {phase: Bound, accessModes, capacity: {storage}}` taken from the spec.
//! - Protection: a claim being deleted keeps its `kubernetes.io/pvc-protection` finalizer (set
//!   by admission, see `defaults`) while a scheduled pod (spec.nodeName set, whatever its phase)
//!   refers to it (podUsesPVC); then the finalizer goes and the store removes the claim.
//!
//! Divergences: every claim binds at once, as with a StorageClass of volumeBindingMode
//! Immediate (kind's default `standard` class waits for the first consumer); no
//! PersistentVolume or StorageClass objects exist (the fake serves neither) and no
//! storageClassName is defaulted; a `spec.volumeName` chosen by the user is kept and trusted;
//! no `ExternalProvisioning`/`ProvisioningSucceeded` Events; the capacity is the requested size
//! (no rounding by a driver).

use std::sync::Arc;

use serde_json::{json, Value};

use super::util::{self, deleting, name, namespace, uid};
use super::{rt, Controllers, Reconciler, PODS, PVCS};
use crate::defaults::PVC_PROTECTION;
use crate::store::{EventType, ResKey, Store, StoreEvent};

pub(super) struct PersistentVolumeController;

impl Reconciler for PersistentVolumeController {
    const NAME: &'static str = "persistentvolume";

    fn watches(&self) -> &'static [ResKey] {
        &[PVCS, PODS]
    }

    /// Claims, and pods going away (a protected claim may be released).
    fn relevant(&mut self, ev: &StoreEvent) -> bool {
        ev.resource == PVCS || ev.resource == PODS && ev.event == EventType::Deleted
    }

    fn reconcile(&mut self, store: &Store, _ctl: &Controllers) {
        for pvc in util::list_all(store, PVCS) {
            if deleting(&pvc) {
                release(store, &pvc);
            } else if pvc["status"]["phase"] != "Bound" {
                bind(store, &pvc);
            }
        }
    }
}

fn bind(store: &Store, pvc: &Arc<Value>) {
    let crt = rt(store, PVCS);
    let mut o = (**pvc).clone();
    if o["spec"]["volumeName"].as_str().is_none_or(str::is_empty) {
        o["spec"]["volumeName"] = json!(format!("pvc-{}", uid(pvc)));
    }
    if !o["metadata"]["annotations"].is_object() {
        o["metadata"]["annotations"] = json!({});
    }
    let ann = &mut o["metadata"]["annotations"];
    ann["pv.kubernetes.io/bind-completed"] = json!("yes");
    ann["pv.kubernetes.io/bound-by-controller"] = json!("yes");
    let Ok(bound) = store.update(&crt, Some(namespace(pvc)), name(pvc), o, None, false) else {
        return; // stale read: next pass
    };
    let mut status = json!({
        "phase": "Bound",
        "accessModes": bound["spec"]["accessModes"],
    });
    if let Some(size) = bound["spec"]["resources"]["requests"]["storage"].as_str() {
        status["capacity"] = json!({"storage": size});
    }
    util::write_status(store, PVCS, &bound, status);
}

/// The pvc-protection controller: drop the finalizer once no scheduled pod uses the claim.
fn release(store: &Store, pvc: &Arc<Value>) {
    let protected = pvc["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == PVC_PROTECTION));
    if !protected {
        return;
    }
    let claim = name(pvc).to_string();
    let prt = rt(store, PODS);
    let (users, _) = store.list(&prt, Some(namespace(pvc)), &|p| {
        !p["spec"]["nodeName"].as_str().is_none_or(str::is_empty)
            && claim_names(p).any(|c| c == claim)
    });
    if !users.is_empty() {
        return;
    }
    let mut o = (**pvc).clone();
    let kept: Vec<Value> = pvc["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| *f != PVC_PROTECTION)
        .cloned()
        .collect();
    o["metadata"]["finalizers"] = json!(kept);
    let _ = store.update(
        &rt(store, PVCS),
        Some(namespace(pvc)),
        name(pvc),
        o,
        None,
        false,
    );
}

/// The claim names a pod's `persistentVolumeClaim` volumes refer to.
pub(super) fn claim_names(pod: &Value) -> impl Iterator<Item = &str> {
    pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
}
