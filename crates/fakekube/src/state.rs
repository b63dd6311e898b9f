//! What every request handler shares: the store, the server's settings, RBAC, faults, the
//! request log and the clock offset. A leaf of the HTTP layers, so that routing
//! ([`crate::http`]), watches ([`crate::watch`]) and the listener ([`crate::server`]) all use
//! it without using each other in a circle.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use crate::faults::{Faults, RequestLog};
use crate::rbac::Rbac;
use crate::store::Store;

/// What request handlers share.
pub(crate) struct ServerState {
    pub store: Arc<Store>,
    pub port: u16,
    pub tls: bool,
    pub require_client_cert: bool,
    pub rbac: Rbac,
    pub faults: Faults,
    pub log: RequestLog,
    /// How far the `Date` header of every response is moved from this machine's clock, in
    /// milliseconds ([`FakeCluster::set_clock_offset`]).
    pub clock_offset_ms: AtomicI64,
}
