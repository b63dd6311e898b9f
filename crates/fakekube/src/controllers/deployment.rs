//! The Deployment controller (pkg/controller/deployment) and an Argo Rollouts stand-in.
//!
//! Both keep one ReplicaSet per pod template, named `<name>-<hash>` (controller.ComputeHash of
//! the template), with the hash label (`pod-template-hash`, or `rollouts-pod-template-hash` for
//! Rollouts) added to the ReplicaSet's labels, selector and template labels, and a controller
//! ownerReference. The current template's ReplicaSet gets `spec.replicas` (0 included); older
//! ones are scaled to 0.
//!
//! Divergences: no rolling update arithmetic (maxSurge/maxUnavailable: the switch is at once,
//! like `Recreate` without the wait), no revision history cleanup, orphan ReplicaSets are not
//! adopted, `paused` is ignored; Rollouts have no canary/blue-green steps.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::replicaset::REPLICASETS;
use super::util::{self, controller_of, deleting, name, namespace, uid};
use super::{controller_ref, rt, Controllers, Reconciler};
use crate::selectors::LabelSelector;
use crate::store::{ResKey, Store};

pub(super) const DEPLOYMENTS: ResKey = ("apps", "deployments");
pub(super) const ROLLOUTS: ResKey = ("argoproj.io", "rollouts");

pub(super) struct DeploymentController;
pub(super) struct RolloutController;

impl Reconciler for DeploymentController {
    const NAME: &'static str = "deployment";

    fn watches(&self) -> &'static [ResKey] {
        &[DEPLOYMENTS, REPLICASETS]
    }

    fn reconcile(&mut self, store: &Store, _ctl: &Controllers) {
        for d in util::list_all(store, DEPLOYMENTS) {
            if deleting(&d) {
                continue;
            }
            let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
            let Some(sync) = sync_replicasets(
                store,
                &d,
                &d["spec"]["template"],
                &d["spec"]["selector"],
                replicas,
                "pod-template-hash",
            ) else {
                continue;
            };
            util::write_status(
                store,
                DEPLOYMENTS,
                &d,
                deployment_status(&d, &sync, replicas),
            );
        }
    }
}

impl Reconciler for RolloutController {
    const NAME: &'static str = "rollout";

    fn watches(&self) -> &'static [ResKey] {
        &[ROLLOUTS, REPLICASETS, DEPLOYMENTS]
    }

    fn reconcile(&mut self, store: &Store, _ctl: &Controllers) {
        for ro in util::list_all(store, ROLLOUTS) {
            if deleting(&ro) {
                continue;
            }
            // spec.workloadRef: template (and selector, unless the Rollout has one) come
            // from the referenced Deployment, as Argo Rollouts' workload referencing.
            let (template, selector) = match workload_ref(store, &ro) {
                Some(Ok(d)) => {
                    let sel = if ro["spec"]["selector"].is_object() {
                        ro["spec"]["selector"].clone()
                    } else {
                        d["spec"]["selector"].clone()
                    };
                    (d["spec"]["template"].clone(), sel)
                }
                Some(Err(())) => continue,
                None => (
                    ro["spec"]["template"].clone(),
                    ro["spec"]["selector"].clone(),
                ),
            };
            let replicas = ro["spec"]["replicas"].as_i64().unwrap_or(1);
            let Some(sync) = sync_replicasets(
                store,
                &ro,
                &template,
                &selector,
                replicas,
                "rollouts-pod-template-hash",
            ) else {
                continue;
            };
            let t = sync.totals();
            let mut status = json!({
                "replicas": t.replicas,
                "updatedReplicas": t.updated,
                "readyReplicas": t.ready,
                "availableReplicas": t.available,
                "HPAReplicas": t.replicas,
                "selector": LabelSelector::from_object(&sync.selector).to_string(),
                "currentPodHash": sync.hash,
                "stableRS": sync.hash,
                "observedGeneration": ro["metadata"]["generation"].as_i64().unwrap_or(1).to_string(),
                "phase": if t.available >= replicas { "Healthy" } else { "Progressing" },
            });
            if t.available < replicas {
                status["message"] = json!("more replicas need to be updated");
            }
            util::write_status(store, ROLLOUTS, &ro, status);
        }
    }
}

/// The Deployment named by `spec.workloadRef`, Err when it is named but missing.
fn workload_ref(store: &Store, ro: &Value) -> Option<Result<Arc<Value>, ()>> {
    let r = &ro["spec"]["workloadRef"];
    let n = r["name"].as_str()?;
    if r["kind"].as_str().unwrap_or("Deployment") != "Deployment" {
        return Some(Err(()));
    }
    Some(
        store
            .get(&rt(store, DEPLOYMENTS), Some(namespace(ro)), n)
            .map_err(|_| ()),
    )
}

pub(super) struct Synced {
    pub hash: String,
    pub selector: Value,
    pub new_rs: Arc<Value>,
    pub all: Vec<Arc<Value>>,
}

pub(super) struct Totals {
    pub replicas: i64,
    pub updated: i64,
    pub ready: i64,
    pub available: i64,
}

impl Synced {
    pub(super) fn totals(&self) -> Totals {
        let sum = |f: &str| -> i64 {
            self.all
                .iter()
                .map(|rs| rs["status"][f].as_i64().unwrap_or(0))
                .sum()
        };
        Totals {
            replicas: sum("replicas"),
            updated: self.new_rs["status"]["replicas"].as_i64().unwrap_or(0),
            ready: sum("readyReplicas"),
            available: sum("availableReplicas"),
        }
    }
}

/// Create the current template's ReplicaSet if missing, set its replicas, scale the others to 0.
fn sync_replicasets(
    store: &Store,
    owner: &Value,
    template: &Value,
    selector: &Value,
    replicas: i64,
    hash_label: &str,
) -> Option<Synced> {
    if !template.is_object() || !selector.is_object() {
        return None;
    }
    let rsrt = rt(store, REPLICASETS);
    let hash = util::template_hash(template);
    let rs_name = format!("{}-{}", name(owner), hash);
    let ns = namespace(owner);
    let (owned, _) = store.list(&rsrt, Some(ns), &|rs| {
        controller_of(rs).is_some_and(|r| r["uid"] == uid(owner))
    });
    let with_hash = |v: &Value| -> Value {
        let mut m: Map<String, Value> = v.as_object().cloned().unwrap_or_default();
        m.insert(hash_label.to_string(), json!(hash));
        Value::Object(m)
    };
    let mut rs_selector = selector.clone();
    rs_selector["matchLabels"] = with_hash(&selector["matchLabels"]);
    let new_rs = match owned.iter().find(|rs| name(rs) == rs_name) {
        Some(rs) => {
            if rs["spec"]["replicas"].as_i64() != Some(replicas) {
                let mut o = (**rs).clone();
                o["spec"]["replicas"] = json!(replicas);
                store
                    .update(&rsrt, Some(ns), &rs_name, o, None, false)
                    .unwrap_or_else(|_| rs.clone())
            } else {
                rs.clone()
            }
        }
        None => {
            let mut tpl = template.clone();
            tpl["metadata"]["labels"] = with_hash(&template["metadata"]["labels"]);
            let revision = owned.len() + 1;
            let rs = json!({
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": rs_name,
                    "labels": with_hash(&template["metadata"]["labels"]),
                    "annotations": {
                        "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                        "deployment.kubernetes.io/max-replicas": replicas.to_string(),
                        "deployment.kubernetes.io/revision": revision.to_string(),
                    },
                    "ownerReferences": [controller_ref(owner)],
                },
                "spec": {"replicas": replicas, "selector": rs_selector, "template": tpl},
            });
            match store.create(&rsrt, Some(ns), rs, false) {
                Ok(rs) => rs,
                Err(e) => {
                    tracing::debug!("{}: creating {rs_name}: {}", name(owner), e.message);
                    return None;
                }
            }
        }
    };
    for rs in owned.iter().filter(|rs| name(rs) != rs_name) {
        if rs["spec"]["replicas"].as_i64() != Some(0) {
            let mut o = (**rs).clone();
            o["spec"]["replicas"] = json!(0);
            let _ = store.update(&rsrt, Some(ns), name(rs), o, None, false);
        }
    }
    let mut all: Vec<Arc<Value>> = owned.into_iter().filter(|rs| name(rs) != rs_name).collect();
    all.push(new_rs.clone());
    Some(Synced {
        hash,
        selector: rs_selector,
        new_rs,
        all,
    })
}

/// DeploymentStatus (every count is omitempty) with the Available and Progressing conditions.
fn deployment_status(d: &Value, s: &Synced, replicas: i64) -> Value {
    let t = s.totals();
    let mut status = Map::new();
    let mut put = |k: &str, v: i64| {
        if v != 0 {
            status.insert(k.to_string(), json!(v));
        }
    };
    put(
        "observedGeneration",
        d["metadata"]["generation"].as_i64().unwrap_or(1),
    );
    put("replicas", t.replicas);
    put("updatedReplicas", t.updated);
    put("readyReplicas", t.ready);
    put("availableReplicas", t.available);
    put("unavailableReplicas", (t.replicas - t.available).max(0));
    let available = t.available >= replicas;
    let complete = available && t.updated == replicas && t.replicas == replicas;
    let rs_name = name(&s.new_rs);
    let conds = vec![
        condition(
            d,
            "Available",
            available,
            if available {
                "MinimumReplicasAvailable"
            } else {
                "MinimumReplicasUnavailable"
            },
            if available {
                "Deployment has minimum availability."
            } else {
                "Deployment does not have minimum availability."
            },
        ),
        condition(
            d,
            "Progressing",
            true,
            if complete {
                "NewReplicaSetAvailable"
            } else {
                "ReplicaSetUpdated"
            },
            &if complete {
                format!("ReplicaSet \"{rs_name}\" has successfully progressed.")
            } else {
                format!("ReplicaSet \"{rs_name}\" is progressing.")
            },
        ),
    ];
    status.insert("conditions".into(), json!(conds));
    Value::Object(status)
}

/// A condition; timestamps kept from the current one when nothing changed (no write churn).
pub(super) fn condition(obj: &Value, ty: &str, ok: bool, reason: &str, message: &str) -> Value {
    let st = if ok { "True" } else { "False" };
    let old = obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty));
    let now = util::now();
    let transition = match old {
        Some(c) if c["status"] == st => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let update = match old {
        Some(c) if c["status"] == st && c["reason"] == reason && c["message"] == message => {
            c["lastUpdateTime"].clone()
        }
        _ => json!(now),
    };
    json!({
        "type": ty, "status": st, "lastUpdateTime": update, "lastTransitionTime": transition,
        "reason": reason, "message": message,
    })
}
