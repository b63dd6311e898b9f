//! A KEDA stand-in (keda.sh/v1alpha1 ScaledObject): with no metrics, KEDA keeps a target at
//! `minReplicaCount` when it would otherwise sit at 0 (scale from zero when minReplicaCount >
//! 0). With the annotation `autoscaling.keda.sh/paused-replicas: "<n>"` KEDA stops scaling and
//! holds the target at n. HPAs do nothing at 0 replicas (real behaviour: no controller here).
//!
//! Divergences: no HPA is created for the ScaledObject; no triggers are evaluated; targets
//! above minReplicaCount are left as they are (as without metric activity); status is
//! minimal (`scaleTargetKind`, `originalReplicaCount`, `pausedReplicaCount`, Ready/Paused conditions).

use serde_json::{json, Value};

use super::util::{self, deleting, namespace};
use super::{rt, Controllers, Reconciler};
use crate::store::{ResKey, Store};

pub const SCALEDOBJECTS: ResKey = ("keda.sh", "scaledobjects");

pub struct Keda;

impl Reconciler for Keda {
    const NAME: &'static str = "keda";

    fn watches(&self) -> &'static [ResKey] {
        &[
            SCALEDOBJECTS,
            ("apps", "deployments"),
            ("apps", "statefulsets"),
            ("argoproj.io", "rollouts"),
        ]
    }

    fn reconcile(&mut self, store: &Store, _ctl: &Controllers) {
        for so in util::list_all(store, SCALEDOBJECTS) {
            if deleting(&so) {
                continue;
            }
            let target = &so["spec"]["scaleTargetRef"];
            let kind = target["kind"].as_str().unwrap_or("Deployment");
            let key: ResKey = match kind {
                "Deployment" => ("apps", "deployments"),
                "StatefulSet" => ("apps", "statefulsets"),
                "Rollout" => ("argoproj.io", "rollouts"),
                "ReplicaSet" => ("apps", "replicasets"),
                _ => continue,
            };
            let Some(tname) = target["name"].as_str() else {
                continue;
            };
            let trt = rt(store, key);
            let Ok(obj) = store.get(&trt, Some(namespace(&so)), tname) else {
                continue;
            };
            let current = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            let paused: Option<i64> = so["metadata"]["annotations"]
                ["autoscaling.keda.sh/paused-replicas"]
                .as_str()
                .and_then(|s| s.trim().parse().ok());
            let min = so["spec"]["minReplicaCount"].as_i64().unwrap_or(0);
            let want = match paused {
                Some(p) => Some(p),
                None if current == 0 && min > 0 => Some(min),
                None => None,
            };
            if let Some(w) = want.filter(|w| *w != current) {
                let mut o = (*obj).clone();
                o["spec"]["replicas"] = json!(w);
                let _ = store.update(&trt, Some(namespace(&so)), tname, o, None, false);
            }
            let mut status = json!({
                "scaleTargetKind": format!("{}.{}", target["apiVersion"].as_str().unwrap_or("apps/v1"), kind),
                "scaleTargetGVKR": {"group": key.0, "kind": kind, "resource": key.1, "version": "v1"},
                "conditions": [
                    cond("Ready", true, "ScaledObjectReady", "ScaledObject is defined correctly and is ready for scaling"),
                    cond("Active", false, "ScalerNotActive", "Scaling is not performed because triggers are not active"),
                    match paused {
                        Some(p) => cond("Paused", true, "ScaledObjectPaused", &format!("ScaledObject is paused at {p} replicas")),
                        None => cond("Paused", false, "ScaledObjectUnpaused", "ScaledObject is not paused"),
                    },
                ],
            });
            if let Some(p) = paused {
                status["pausedReplicaCount"] = json!(p);
            }
            if !so["status"]["originalReplicaCount"].is_null() {
                status["originalReplicaCount"] = so["status"]["originalReplicaCount"].clone();
            }
            util::write_status(store, SCALEDOBJECTS, &so, status);
        }
    }
}

fn cond(ty: &str, ok: bool, reason: &str, message: &str) -> Value {
    json!({"type": ty, "status": if ok { "True" } else { "False" }, "reason": reason, "message": message})
}
