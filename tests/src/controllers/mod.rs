//! Simulated control plane: garbage collector, workload controllers, kubelet, autoscaler.
//! Each one runs as a tokio task over the [`Store`] and can be switched off per test.
//! (Stub: the controllers work fills this in; the signatures are the contract with server.rs.)

use std::sync::Arc;

use crate::store::Store;

/// Per-controller switches and kubelet behaviour, shared with the running tasks.
#[derive(Debug, Default)]
pub struct Controllers {}

/// Start every controller over `store`; the tasks stop when the returned handles are aborted.
pub fn spawn_all(_store: Arc<Store>, _controllers: Arc<Controllers>) -> Vec<tokio::task::JoinHandle<()>> {
    Vec::new()
}
