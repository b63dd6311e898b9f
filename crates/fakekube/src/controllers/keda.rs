//! A KEDA stand-in (keda.sh/v1alpha1 ScaledObject): with no metrics, KEDA keeps a target at
//! `minReplicaCount` when it would otherwise sit at 0 (scale from zero when minReplicaCount >
//! 0). With the annotation `autoscaling.keda.sh/paused-replicas: "<n>"` KEDA scales the target
//! to n and stops its scale loop. HPAs do nothing at 0 replicas (real behaviour: no controller
//! here).
//!
//! Timing as KEDA's: the ScaledObject reconciler acts when the ScaledObject changes (a new
//! resourceVersion: created, annotated, edited) and its scale loop runs every
//! `spec.pollingInterval` seconds (default 30) while not paused. A paused count is applied on
//! the ScaledObject change that sets it, not re-imposed when someone else scales the target
//! (the loop is stopped), so a client that restores replicas and then unpauses does not race.
//!
//! Divergences: no HPA is created for the ScaledObject; no triggers are evaluated; targets
//! above minReplicaCount are left as they are (as without metric activity); status is
//! minimal (`scaleTargetKind`, `originalReplicaCount`, `pausedReplicaCount`, Ready/Paused conditions).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::util::{self, deleting, namespace, uid};
use super::{rt, Controllers, Reconciler};
use crate::store::{ResKey, Store};

pub(super) const SCALEDOBJECTS: ResKey = ("keda.sh", "scaledobjects");

#[derive(Default)]
pub(super) struct Keda {
    /// ScaledObject uid -> (the resourceVersion last reconciled, when the scale loop last ran).
    seen: HashMap<String, (String, Instant)>,
}

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
        let all = util::list_all(store, SCALEDOBJECTS);
        self.seen.retain(|u, _| all.iter().any(|so| uid(so) == u));
        for so in all {
            if deleting(&so) {
                continue;
            }
            let rv = so["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let poll = Duration::from_secs(so["spec"]["pollingInterval"].as_u64().unwrap_or(30));
            let now = Instant::now();
            let changed = match self.seen.get(uid(&so)) {
                // Our own status write changes the resourceVersion too: compare before it.
                Some((seen_rv, _)) => *seen_rv != rv,
                None => true,
            };
            let polled = self
                .seen
                .get(uid(&so))
                .is_some_and(|(_, last)| now.duration_since(*last) >= poll);
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
                Some(p) if changed => Some(p),
                Some(_) => None,
                None if (changed || polled) && current == 0 && min > 0 => Some(min),
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
            let last_poll = match self.seen.get(uid(&so)) {
                Some((_, last)) if !changed && !polled => *last,
                _ => now,
            };
            let written = util::write_status_returning(store, SCALEDOBJECTS, &so, status);
            let rv = written
                .as_ref()
                .and_then(|w| w["metadata"]["resourceVersion"].as_str().map(String::from))
                .unwrap_or(rv);
            self.seen.insert(uid(&so).to_string(), (rv, last_poll));
        }
    }
}

fn cond(ty: &str, ok: bool, reason: &str, message: &str) -> Value {
    json!({"type": ty, "status": if ok { "True" } else { "False" }, "reason": reason, "message": message})
}
