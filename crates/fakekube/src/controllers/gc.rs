//! The garbage collector (pkg/controller/garbagecollector), level-triggered over the store:
//! - a dependent none of whose owners exists (deleted, or never existed) is deleted; owner refs
//!   that dangle next to a live owner are removed from it (upstream patches them away too);
//! - an owner being deleted with the `foregroundDeletion` finalizer gets its dependents deleted,
//!   then loses the finalizer (and the store removes it);
//! - an owner with the `orphan` finalizer gets its ownerReference removed from every
//!   dependent, then loses the finalizer.
//!
//! Divergences: upstream keeps a graph fed by watches and checks a dangling owner with a live
//! GET; here each pass rebuilds the index from `Store::owned_objects` and looks owners up by
//! uid. Foreground waits for every dependent, not only those with `blockOwnerDeletion`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{json, Value};

use super::util::{deleting, name, namespace, uid};
use super::{rt, Controllers, Reconciler};
use crate::store::{DeleteOptions, EventType, Propagation, ResKey, Store, StoreEvent};

/// Owners seen entering foreground/orphan deletion (from events), so a pass need not parse
/// every object to find them; `None` (at first, and after lost events): scan everything once.
#[derive(Default)]
pub(super) struct GarbageCollector {
    doomed: Option<HashSet<(ResKey, String, String)>>,
}

/// Every resource may own or be owned.
const ALL: &[ResKey] = &[
    ("", "pods"),
    ("", "configmaps"),
    ("", "secrets"),
    ("", "services"),
    ("", "serviceaccounts"),
    ("", "persistentvolumeclaims"),
    ("", "namespaces"),
    ("", "events"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("coordination.k8s.io", "leases"),
    ("argoproj.io", "rollouts"),
    ("keda.sh", "scaledobjects"),
];

fn owner_refs(obj: &Value) -> &[Value] {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == f))
}

impl Reconciler for GarbageCollector {
    const NAME: &'static str = "gc";
    /// owner-gc.json: dependents went within ~0.3 s, and a foreground owner was still there
    /// (with its finalizer) for a GET right after the DELETE.
    const REACTION_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

    /// Upstream's graph is event-driven; the full rescans here are the costly part (every
    /// owned object is parsed), so they run once a second, events trigger the rest.
    const RESYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

    fn watches(&self) -> &'static [ResKey] {
        ALL
    }

    /// Deletions (dependents may dangle), new objects with owners, and objects entering
    /// deletion; status writes and other updates do not wake the collector.
    fn relevant(&mut self, ev: &StoreEvent) -> bool {
        let o = &ev.object;
        match ev.event {
            EventType::Deleted => true,
            EventType::Added => !o["metadata"]["ownerReferences"].is_null(),
            EventType::Modified if deleting(o) => {
                if has_finalizer(o, "orphan") || has_finalizer(o, "foregroundDeletion") {
                    if let Some(d) = self.doomed.as_mut() {
                        d.insert((ev.resource, ev.namespace.clone(), ev.name.clone()));
                    }
                }
                true
            }
            EventType::Modified => false,
        }
    }

    fn lagged(&mut self) {
        self.doomed = None;
    }

    fn reconcile(&mut self, store: &Store, _ctl: &Controllers) {
        let owned = store.owned_objects();
        // owner uid -> its dependents
        let mut dependents: HashMap<String, Vec<(ResKey, Arc<Value>)>> = HashMap::new();
        for (k, obj) in &owned {
            for r in owner_refs(obj) {
                if let Some(u) = r["uid"].as_str() {
                    dependents
                        .entry(u.to_string())
                        .or_default()
                        .push((*k, obj.clone()));
                }
            }
        }
        // Dependents: delete when every owner is gone; drop dangling refs otherwise.
        for (k, obj) in &owned {
            if deleting(obj) {
                continue;
            }
            let refs = owner_refs(obj);
            let live: Vec<&Value> = refs
                .iter()
                .filter(|r| owner_exists(store, obj, r))
                .collect();
            if live.is_empty() {
                delete(store, *k, obj, &dependents);
            } else if live.len() < refs.len() {
                let mut o = (**obj).clone();
                o["metadata"]["ownerReferences"] = json!(live);
                let _ = store.update(
                    &rt(store, *k),
                    Some(namespace(obj)),
                    name(obj),
                    o,
                    None,
                    false,
                );
            }
        }
        // Owners in foreground or orphan deletion.
        for (owner_uid, deps) in dependents.iter() {
            let Some((_, owner)) = store.get_by_uid(owner_uid) else {
                continue;
            };
            if !deleting(&owner) {
                continue;
            }
            if has_finalizer(&owner, "orphan") {
                for (k, dep) in deps {
                    let mut o = (**dep).clone();
                    let kept: Vec<Value> = owner_refs(dep)
                        .iter()
                        .filter(|r| r["uid"] != owner_uid.as_str())
                        .cloned()
                        .collect();
                    if kept.is_empty() {
                        if let Some(m) = o["metadata"].as_object_mut() {
                            m.remove("ownerReferences");
                        }
                    } else {
                        o["metadata"]["ownerReferences"] = json!(kept);
                    }
                    let _ = store.update(
                        &rt(store, *k),
                        Some(namespace(dep)),
                        name(dep),
                        o,
                        None,
                        false,
                    );
                }
            } else if has_finalizer(&owner, "foregroundDeletion") {
                for (k, dep) in deps {
                    if !deleting(dep) {
                        delete(store, *k, dep, &dependents);
                    }
                }
            }
        }
        // Finish owners whose dependents are handled: those with no dependents left.
        let candidates: Vec<(ResKey, Arc<Value>)> = match self.doomed.take() {
            Some(keys) => keys
                .into_iter()
                .filter_map(|(k, ns, n)| {
                    let r = rt(store, k);
                    store.get(&r, Some(&ns), &n).ok().map(|o| (k, o))
                })
                .collect(),
            None => ALL
                .iter()
                .flat_map(|k| {
                    let r = rt(store, *k);
                    store
                        .list(&r, None, &|o| {
                            deleting(o)
                                && (has_finalizer(o, "orphan")
                                    || has_finalizer(o, "foregroundDeletion"))
                        })
                        .0
                        .into_iter()
                        .map(|o| (*k, o))
                })
                .collect(),
        };
        let mut waiting = HashSet::new();
        {
            for (k, owner) in candidates {
                if !deleting(&owner)
                    || !(has_finalizer(&owner, "orphan")
                        || has_finalizer(&owner, "foregroundDeletion"))
                {
                    continue;
                }
                let rtype = rt(store, k);
                let still = dependents.get(uid(&owner)).is_some_and(|d| {
                    // Orphaned dependents were just rewritten; foreground waits for removal.
                    has_finalizer(&owner, "foregroundDeletion") && !d.is_empty()
                        || has_finalizer(&owner, "orphan")
                            && d.iter()
                                .any(|(dk, dep)| still_refs(store, *dk, dep, uid(&owner)))
                });
                if still {
                    waiting.insert((k, namespace(&owner).to_string(), name(&owner).to_string()));
                    continue;
                }
                let mut o = (*owner).clone();
                let fins: Vec<Value> = owner["metadata"]["finalizers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|f| *f != "orphan" && *f != "foregroundDeletion")
                    .cloned()
                    .collect();
                o["metadata"]["finalizers"] = json!(fins);
                let written = store.update(
                    &rtype,
                    Some(namespace(&owner)),
                    name(&owner),
                    o,
                    None,
                    false,
                );
                if written.is_err() {
                    waiting.insert((k, namespace(&owner).to_string(), name(&owner).to_string()));
                }
            }
        }
        // Owners still waiting are looked at again next pass; events add new ones.
        let mut next = waiting;
        if let Some(noted) = self.doomed.take() {
            next.extend(noted);
        }
        self.doomed = Some(next);
    }
}

/// Whether the dependent, re-read, still refers to `owner_uid`.
fn still_refs(store: &Store, k: ResKey, dep: &Value, owner_uid: &str) -> bool {
    store
        .get(&rt(store, k), Some(namespace(dep)), name(dep))
        .is_ok_and(|d| owner_refs(&d).iter().any(|r| r["uid"] == owner_uid))
}

/// An owner reference resolves when an object with that uid exists, in the dependent's
/// namespace if the owner is namespaced (upstream treats a cross-namespace owner as absent).
fn owner_exists(store: &Store, dep: &Value, r: &Value) -> bool {
    let Some(u) = r["uid"].as_str() else {
        return false;
    };
    match store.get_by_uid(u) {
        Some((_, owner)) => {
            let ons = namespace(&owner);
            ons.is_empty() || ons == namespace(dep)
        }
        None => false,
    }
}

/// Delete a dependent: Foreground when it has dependents of its own (upstream deletes with
/// Foreground when the owner waits for dependents), Background otherwise.
fn delete(
    store: &Store,
    k: ResKey,
    obj: &Value,
    dependents: &HashMap<String, Vec<(ResKey, Arc<Value>)>>,
) {
    let propagation = if dependents.get(uid(obj)).is_some_and(|d| !d.is_empty()) {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    let opts = DeleteOptions {
        uid: Some(uid(obj).to_string()),
        propagation,
        ..Default::default()
    };
    let _ = store.delete(&rt(store, k), Some(namespace(obj)), name(obj), &opts);
}
