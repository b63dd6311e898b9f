//! An Argo CD stand-in (argoproj.io/v1alpha1 Application): self-heal of the replica count.
//!
//! Argo CD documents self-heal ("Automated Sync Policy", Automatic Self-Healing): with
//! `spec.syncPolicy.automated.selfHeal: true`, a change to the live state of a resource the
//! Application manages is reverted to the state in Git, on the live-state change, after a
//! self-heal timeout (`--self-heal-timeout-seconds`, 5 s by default). This stand-in does that
//! for the `spec.replicas` of the Deployments, StatefulSets and Argo Rollouts an Application
//! tracks, [`SELF_HEAL_DELAY`] after it saw the drift. It honours `automated.enabled: false`
//! and the `argocd.argoproj.io/skip-reconcile: "true"` annotation (nothing is processed).
//!
//! Which objects an Application manages: those whose tracking annotation
//! `argocd.argoproj.io/tracking-id` (`<app>:<group>/<kind>:<namespace>/<name>`, naming the object
//! itself) or instance label `argocd.argoproj.io/instance` names it, as `<name>` or, for an
//! Application outside the Argo CD namespace, `<namespace>_<name>`. The fake has no control
//! plane namespace: a plain `<name>` matches an Application of that name in any namespace.
//!
//! "Git", the stand-in for the repository: there is none. The count in Git is the object's
//! `spec.replicas` when this controller first saw it tracked by the Application, as if
//! Argo CD's last sync had applied it (so a test sets it by creating the object with that
//! count). Divergences: no repository, no sync operations or history, no other field is
//! healed, no pruning; status is minimal (`status.sync.status` Synced/OutOfSync).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::util::{self, deleting, name, namespace, uid};
use super::{rt, Controllers, Reconciler};
use crate::store::{ResKey, Store};

pub(super) const APPLICATIONS: ResKey = ("argoproj.io", "applications");

/// The workloads whose replica count self-heal puts back.
const MANAGED: &[ResKey] = &[
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("argoproj.io", "rollouts"),
];

/// From seeing a drift to putting it back: shorter than Argo CD's 5 s default, to keep tests
/// quick; still long enough that a test sees the drift first.
pub const SELF_HEAL_DELAY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(super) struct ArgoCd {
    /// (Application uid, object uid) -> the count in "Git".
    git: HashMap<(String, String), i64>,
    /// (Application uid, object uid) -> when its drift was first seen.
    drift_since: HashMap<(String, String), Instant>,
}

/// Does the object's tracking id or instance label name the Application `app`?
fn tracks(object: &Value, app: &Value) -> bool {
    let meta = &object["metadata"];
    let id = match meta["annotations"]["argocd.argoproj.io/tracking-id"].as_str() {
        Some(tracking) => {
            let mut parts = tracking.splitn(3, ':');
            let (app_id, _kind, at) = (parts.next(), parts.next(), parts.next());
            // The id must name the object itself (a copied annotation does not count).
            if at != Some(&format!("{}/{}", namespace(object), name(object))) {
                return false;
            }
            app_id.unwrap_or("")
        }
        None => meta["labels"]["argocd.argoproj.io/instance"]
            .as_str()
            .unwrap_or(""),
    };
    match id.split_once('_') {
        Some((ns, n)) => ns == namespace(app) && n == name(app),
        None => !id.is_empty() && id == name(app),
    }
}

fn self_heals(app: &Value) -> bool {
    let automated = &app["spec"]["syncPolicy"]["automated"];
    automated.is_object()
        && automated["enabled"].as_bool() != Some(false)
        && automated["selfHeal"].as_bool() == Some(true)
}

fn skips_reconcile(app: &Value) -> bool {
    app["metadata"]["annotations"]["argocd.argoproj.io/skip-reconcile"].as_str() == Some("true")
}

impl Reconciler for ArgoCd {
    const NAME: &'static str = "argocd";

    fn watches(&self) -> &'static [ResKey] {
        &[
            APPLICATIONS,
            ("apps", "deployments"),
            ("apps", "statefulsets"),
            ("argoproj.io", "rollouts"),
        ]
    }

    fn reconcile(&mut self, store: &Store, _ctl: &Controllers) {
        let apps = util::list_all(store, APPLICATIONS);
        if apps.is_empty() && self.git.is_empty() {
            return; // no Application: nothing to list (this runs on every workload event)
        }
        let workloads: Vec<_> = MANAGED
            .iter()
            .flat_map(|key| util::list_all(store, *key).into_iter().map(|o| (*key, o)))
            .collect();
        let now = Instant::now();
        let mut live = Vec::new();
        for app in apps.iter().filter(|a| !deleting(a) && !skips_reconcile(a)) {
            let mut in_sync = true;
            for (key, object) in workloads.iter().filter(|(_, o)| tracks(o, app)) {
                let id = (uid(app).to_string(), uid(object).to_string());
                live.push(id.clone());
                let current = object["spec"]["replicas"].as_i64().unwrap_or(1);
                let git = *self.git.entry(id.clone()).or_insert(current);
                if current == git {
                    self.drift_since.remove(&id);
                    continue;
                }
                in_sync = false;
                if !self_heals(app) {
                    self.drift_since.remove(&id);
                    continue;
                }
                let since = *self.drift_since.entry(id.clone()).or_insert(now);
                if now.duration_since(since) < SELF_HEAL_DELAY {
                    continue;
                }
                let mut healed = (**object).clone();
                healed["spec"]["replicas"] = json!(git);
                let trt = rt(store, *key);
                let written = store.update(
                    &trt,
                    Some(namespace(object)),
                    name(object),
                    healed,
                    None,
                    false,
                );
                if written.is_ok() {
                    self.drift_since.remove(&id);
                    in_sync = true;
                }
            }
            let status = if in_sync { "Synced" } else { "OutOfSync" };
            if app["status"]["sync"]["status"].as_str() != Some(status) {
                let mut o = (**app).clone();
                o["status"]["sync"] = json!({"status": status});
                let _ = store.update(
                    &rt(store, APPLICATIONS),
                    Some(namespace(app)),
                    name(app),
                    o,
                    None,
                    false,
                );
            }
        }
        // Forget what is gone (an object deleted, an Application deleted or no longer
        // tracking it); a skipped Application keeps what it knew.
        let skipped: Vec<&str> = apps
            .iter()
            .filter(|a| skips_reconcile(a))
            .map(|a| uid(a))
            .collect();
        let keep = |id: &(String, String)| live.contains(id) || skipped.contains(&id.0.as_str());
        self.git.retain(|id, _| keep(id));
        self.drift_since.retain(|id, _| keep(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(ns: &str, n: &str) -> Value {
        json!({"metadata": {"name": n, "namespace": ns}})
    }

    fn object(annotations: Value, labels: Value) -> Value {
        json!({"metadata": {"name": "api", "namespace": "shop",
            "annotations": annotations, "labels": labels}})
    }

    #[test]
    fn tracking_ids_and_instance_labels_name_applications() {
        let by_id = |id: &str| object(json!({"argocd.argoproj.io/tracking-id": id}), json!({}));
        assert!(tracks(
            &by_id("web:apps/Deployment:shop/api"),
            &app("argocd", "web")
        ));
        assert!(tracks(
            &by_id("team_web:apps/Deployment:shop/api"),
            &app("team", "web")
        ));
        assert!(!tracks(
            &by_id("team_web:apps/Deployment:shop/api"),
            &app("argocd", "web")
        ));
        assert!(!tracks(
            &by_id("web:apps/Deployment:shop/other"),
            &app("argocd", "web")
        ));
        let by_label = object(json!({}), json!({"argocd.argoproj.io/instance": "web"}));
        assert!(tracks(&by_label, &app("argocd", "web")));
        assert!(!tracks(
            &object(json!({}), json!({})),
            &app("argocd", "web")
        ));
    }
}
