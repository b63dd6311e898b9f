//! A mutex on the cluster, held as a ConfigMap: whoever creates
//! `mirrord-copy-lock-<kind>-<name>` holds the lock on that workload. The lock records a lease
//! (renewed by the holder), the workload's uid and the replica count to restore; every write
//! is a compare-and-swap on resourceVersion (or tests the holder), and release deletes with uid
//! and resourceVersion preconditions, so nobody ever overwrites or deletes a lock they do not
//! hold. A finalizer keeps the lock until it is released (see `ops`).
//!
//! This crate knows nothing of targets: it locks a [`WorkloadKey`].

mod api_text;
pub mod clock;
mod name;
mod ops;
mod record;

pub use api_text::{error_chain, kube_error_text, status_text};
pub use name::{is_dns_label, WorkloadKey, LOCK_NAME_PREFIX};
pub use ops::{
    acquire, list, patch_params, post_params, read, release, LockGuard, Released, FIELD_MANAGER,
    FINALIZER, LABEL_MANAGED_BY, LABEL_ROLE, LABEL_SESSION, MANAGED_BY, ROLE_LOCK,
};
pub use record::{
    parse_replicas, parse_rfc3339, rfc3339, split_names, writes_as_rfc3339, LockRecord,
    PausedApplication, MAX_REPLICAS,
};

/// Lock data keys, for callers that display or select on them.
pub mod keys {
    pub use crate::record::{
        ARGO_APPLICATION, ARGO_SELF_HEAL_BEFORE, COPY_POD, HOLDER, HOLDER_SESSION, LEASE_EXPIRES,
        ORIGINAL_REPLICAS, SCALED_OBJECTS, SINCE, TARGET_REPLICAS, WORKLOAD_KIND, WORKLOAD_NAME,
        WORKLOAD_UID,
    };
}

/// Why a lock operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else holds the lock and their lease is valid (or they won the takeover race).
    #[error("held by {}", .0.describe_holder())]
    Held(Box<LockRecord>),
    /// The lock's data does not validate: reported, never acted upon.
    #[error("malformed lock record: {0}")]
    Malformed(String),
    /// We no longer hold the lock (it was taken over after our lease expired, or released).
    #[error("lock lost: {0}")]
    Lost(String),
    /// Kept losing compare-and-swap races.
    #[error("gave up after repeated conflicts on {0}")]
    Contended(String),
    /// The API server refused or could not be reached (any other error).
    #[error("{}", kube_error_text(.0))]
    Kube(#[from] kube::Error),
}
