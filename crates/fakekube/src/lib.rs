//! `fakekube`: an in-process Kubernetes API server for the end-to-end tests, benchmarks and
//! the `mirrord-copy-sandbox` demo binary. See `DESIGN.md` at the workspace root.
//!
//! - [`store`]: the generic object store (metadata bookkeeping, history for watches)
//! - `server`: [`FakeCluster`], the HTTP/1.1 listener and its lifecycle
//! - `http`: routing and the verbs; `watch`, `patch`, `apply`, [`scale`]: their details
//! - [`selectors`], `validation`, `volumes`, `defaults`: what the real server checks and fills in
//! - [`controllers`]: the simulated control plane and kubelet; [`images`] (the registry its
//!   kubelet pulls from) and [`process`] (what a container's process does)
//! - [`protobuf`]: protobuf request bodies of the built-in kinds, decoded to JSON
//! - `discovery`, `table`: what kubectl and kube's discovery read
//! - `rbac`, [`faults`]: authorization and fault injection, the request log
//! - [`harness`]: `TestEnv` for the end-to-end tests

pub(crate) mod api_error;
pub(crate) mod apply;
pub mod controllers;
pub(crate) mod defaults;
pub mod demo;
pub(crate) mod discovery;
pub mod faults;
pub mod harness;
pub(crate) mod http;
pub mod images;
pub(crate) mod kubeconfig;
pub(crate) mod names;
pub(crate) mod patch;
pub mod process;
pub mod protobuf;
pub(crate) mod rbac;
pub mod registry;
pub(crate) mod request;
pub mod scale;
pub(crate) mod seed;
pub mod selectors;
pub(crate) mod server;
pub(crate) mod state;
pub mod store;
pub(crate) mod table;
pub(crate) mod tls;
pub(crate) mod validation;
pub(crate) mod volumes;
pub(crate) mod watch;

pub use api_error::ApiError;
pub use faults::{Fault, FaultAction, RequestRecord};
pub use rbac::{Rule, ADMIN_TOKEN};
pub use server::{FakeCluster, ServerOptions};
pub use store::Store;
pub use tls::client_certificate;
