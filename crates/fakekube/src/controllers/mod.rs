//! Simulated control plane: garbage collector, workload controllers, kubelet, autoscaler.
//! Each one runs as a tokio task over the [`Store`] and can be switched off per test.
//!
//! Every controller is level-triggered, like kube-controller-manager's: it reconciles
//! everything it owns when a relevant store event arrives (events are drained in a batch) and
//! on a periodic resync every [`RESYNC`]. Writes go through the store like a client's, so
//! watches see them; a 409 from a stale read is simply retried on the next pass.
//!
//! ## Switches ([`Controllers`])
//! `gc`, `deployment`, `rollout`, `replicaset`, `statefulset`, `job`, `cronjob`, `kubelet`,
//! `keda`, `argocd` (Argo CD's self-heal of replica counts, `argocd`), `persistentvolume` (the
//! claim binder and pvc-protection stand-ins, `volumes`), `endpointslice`: `AtomicBool`s, all on by default
//! (`controllers.replicaset.store(false, SeqCst)`, or [`Controllers::set`]/[`Controllers::none`]).
//!
//! ## Kubelet (`kubelet`)
//! Pods run as a real kubelet runs them, from the pod spec and the image alone: the images
//! are [`Controllers::images`] (the real-cluster kit's registry, see [`crate::images`]; a test
//! pushes more), what each container's process does is [`crate::process`]'s model, and the
//! kubelet's state machine (init containers, sidecars, restarts with back-off, probes not run,
//! graceful termination) is described in `kubelet`. Its one knob is [`KubeletConfig`]
//! (`controllers.kubelet_config.lock()`): `ready_delay` (default 200 ms), from a pod's binding to
//! its sandbox being up and its containers starting.
//!
//! Volumes (the scheduler's VolumeBinding/VolumeRestrictions and the attach/detach controller,
//! see `kubelet`): a pod whose claim is missing, being deleted or not yet Bound stays Pending
//! and unscheduled (Warning `FailedScheduling`); a ReadWriteOncePod claim in use by another pod
//! keeps it unscheduled; a ReadWriteOnce claim in use by another pod keeps it in
//! `ContainerCreating` (Warning `FailedAttachVolume`, Multi-Attach). Both start once the other
//! pod is gone.
//!
//! ## EndpointSlices (`endpointslice`)
//! The EndpointSlice controller: see `endpointslice`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::images::Registry;
use crate::registry::ResourceType;
use crate::store::{ResKey, Store, StoreEvent};

mod argocd;
mod deployment;
mod endpointslice;
mod gc;
mod job;
mod keda;
mod kubelet;
mod replicaset;
mod statefulset;
mod util;
mod volumes;

/// How long the Argo CD stand-in waits after a drift before it puts the count back.
pub use argocd::SELF_HEAL_DELAY as ARGOCD_SELF_HEAL_DELAY;

/// Periodic resync of every controller.
pub const RESYNC: Duration = Duration::from_millis(150);

/// The kubelet's timing.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// From a pod's binding to its sandbox being up and its containers starting (default
    /// 200 ms; the kit's kubelet takes ~0.5-1.5 s for sandbox, pull and start).
    pub ready_delay: Duration,
}

impl Default for KubeletConfig {
    fn default() -> Self {
        KubeletConfig {
            ready_delay: Duration::from_millis(200),
        }
    }
}

/// Per-controller switches and kubelet behaviour, shared with the running tasks.
#[derive(Debug)]
pub struct Controllers {
    /// The garbage collector (ownerReferences).
    pub gc: AtomicBool,
    /// The Deployment controller.
    pub deployment: AtomicBool,
    /// The Argo Rollouts controller.
    pub rollout: AtomicBool,
    /// The ReplicaSet controller.
    pub replicaset: AtomicBool,
    /// The StatefulSet controller.
    pub statefulset: AtomicBool,
    /// The Job controller.
    pub job: AtomicBool,
    /// The CronJob controller.
    pub cronjob: AtomicBool,
    /// The kubelet (and scheduler binding) of the one node.
    pub kubelet: AtomicBool,
    /// The KEDA stand-in: ScaledObjects hold their targets at minReplicaCount or paused-replicas.
    pub keda: AtomicBool,
    /// The Argo CD stand-in: Applications with self-heal put their workloads' counts back.
    pub argocd: AtomicBool,
    /// The claim binder and pvc-protection stand-ins.
    pub persistentvolume: AtomicBool,
    /// The EndpointSlice controller.
    pub endpointslice: AtomicBool,
    /// The kubelet's timing; tests change it while the cluster runs.
    pub kubelet_config: Mutex<KubeletConfig>,
    /// The image registry the kubelet pulls from (the kit's images; push more).
    pub images: Arc<Registry>,
}

impl Default for Controllers {
    fn default() -> Self {
        Controllers::with_all(true)
    }
}

impl Controllers {
    fn with_all(on: bool) -> Controllers {
        Controllers {
            gc: AtomicBool::new(on),
            deployment: AtomicBool::new(on),
            rollout: AtomicBool::new(on),
            replicaset: AtomicBool::new(on),
            statefulset: AtomicBool::new(on),
            job: AtomicBool::new(on),
            cronjob: AtomicBool::new(on),
            kubelet: AtomicBool::new(on),
            keda: AtomicBool::new(on),
            argocd: AtomicBool::new(on),
            persistentvolume: AtomicBool::new(on),
            endpointslice: AtomicBool::new(on),
            kubelet_config: Mutex::new(KubeletConfig::default()),
            images: Arc::new(Registry::kit()),
        }
    }

    /// Every controller off (a bare API server, as the transcripts' kubelet-less cluster and more).
    pub fn none() -> Controllers {
        Controllers::with_all(false)
    }

    /// Switch one controller by name (`gc`, `deployment`, `rollout`, `replicaset`,
    /// `statefulset`, `job`, `cronjob`, `kubelet`, `keda`, `argocd`, `persistentvolume`,
    /// `endpointslice`); false for an unknown name.
    pub fn set(&self, name: &str, on: bool) -> bool {
        let Some(flag) = self.flag(name) else {
            return false;
        };
        flag.store(on, Ordering::SeqCst);
        true
    }

    /// Is the controller `name` (as [`Controllers::set`] takes it) running?
    pub fn is_on(&self, name: &str) -> bool {
        self.flag(name).is_some_and(|f| f.load(Ordering::SeqCst))
    }

    fn flag(&self, name: &str) -> Option<&AtomicBool> {
        Some(match name {
            "gc" => &self.gc,
            "deployment" => &self.deployment,
            "rollout" => &self.rollout,
            "replicaset" => &self.replicaset,
            "statefulset" => &self.statefulset,
            "job" => &self.job,
            "cronjob" => &self.cronjob,
            "kubelet" => &self.kubelet,
            "keda" => &self.keda,
            "argocd" => &self.argocd,
            "persistentvolume" => &self.persistentvolume,
            "endpointslice" => &self.endpointslice,
            _ => return None,
        })
    }

    /// A copy of the kubelet's current configuration.
    pub fn kubelet_settings(&self) -> KubeletConfig {
        self.kubelet_config.lock().unwrap().clone()
    }
}

/// One controller: the resources whose events wake it, and its reconcile pass.
pub(crate) trait Reconciler: Send + 'static {
    const NAME: &'static str;
    /// How long after an event the controller acts: kube-controller-manager's informers,
    /// queues and graph updates make it react in tens to hundreds of milliseconds, never at once.
    const REACTION_DELAY: std::time::Duration = std::time::Duration::ZERO;
    /// The periodic resync of this controller.
    const RESYNC_EVERY: Duration = RESYNC;
    fn watches(&self) -> &'static [ResKey];
    /// Whether an event calls for a pass (and a chance to note what it says).
    fn relevant(&mut self, ev: &StoreEvent) -> bool {
        self.watches().contains(&ev.resource)
    }
    /// Events were lost (the subscriber lagged): the next pass must not trust what `relevant`
    /// noted.
    fn lagged(&mut self) {}
    fn reconcile(&mut self, store: &Store, ctl: &Controllers);
}

fn spawn<R: Reconciler>(
    store: Arc<Store>,
    ctl: Arc<Controllers>,
    mut r: R,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut rx = store.subscribe();
        let mut tick = tokio::time::interval(R::RESYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        let mut relevant = r.relevant(&ev);
                        // Drain the batch: one pass covers them all.
                        loop {
                            match rx.try_recv() {
                                Ok(ev) => relevant |= r.relevant(&ev),
                                Err(TryRecvError::Lagged(_)) => {
                                    r.lagged();
                                    relevant = true;
                                }
                                Err(_) => break,
                            }
                        }
                        if !relevant {
                            continue;
                        }
                        if !R::REACTION_DELAY.is_zero() {
                            tokio::time::sleep(R::REACTION_DELAY).await;
                        }
                    }
                    Err(RecvError::Lagged(_)) => r.lagged(),
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => {}
            }
            if ctl.is_on(R::NAME) {
                r.reconcile(&store, &ctl);
            }
            // Let other tasks (and the HTTP server) run between passes.
            tokio::task::yield_now().await;
        }
    })
}

/// Start every controller over `store`; the tasks stop when the returned handles are aborted.
pub fn spawn_all(
    store: Arc<Store>,
    controllers: Arc<Controllers>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let c = || controllers.clone();
    let s = || store.clone();
    vec![
        spawn(s(), c(), gc::GarbageCollector::default()),
        spawn(s(), c(), deployment::DeploymentController),
        spawn(s(), c(), deployment::RolloutController),
        spawn(s(), c(), replicaset::ReplicaSetController),
        spawn(s(), c(), statefulset::StatefulSetController),
        spawn(s(), c(), job::JobController),
        spawn(s(), c(), job::CronJobController),
        spawn(s(), c(), kubelet::Kubelet::default()),
        spawn(s(), c(), keda::Keda::default()),
        spawn(s(), c(), argocd::ArgoCd::default()),
        spawn(s(), c(), volumes::PersistentVolumeController),
        spawn(s(), c(), endpointslice::EndpointSliceController),
    ]
}

/// The resource type of a key (every key used here is built in).
pub(crate) fn rt(store: &Store, (group, plural): ResKey) -> ResourceType {
    store
        .resource(group, plural)
        .unwrap_or_else(|| panic!("resource {plural}.{group} is registered"))
        .clone()
}

pub(crate) const PODS: ResKey = ("", "pods");
pub(crate) const PVCS: ResKey = ("", "persistentvolumeclaims");

/// `{"apiVersion", "kind", "name", "uid", "controller": true, "blockOwnerDeletion": true}`.
pub(crate) fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}
