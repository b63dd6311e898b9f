//! `fakekube`: an in-process Kubernetes API server for the end-to-end tests, benchmarks and
//! the `mirrord-copy-sandbox` demo binary. See `DESIGN.md` at the workspace root.
//!
//! - [`store`]: the generic object store (metadata bookkeeping, history for watches)
//! - [`server`]: [`FakeCluster`], the HTTP/1.1 listener and its lifecycle
//! - [`http`]: routing and the verbs; [`watch`], [`patch`], [`apply`], [`scale`]: their details
//! - [`selectors`], [`validation`], [`volumes`], [`defaults`]: what the real server checks and fills in
//! - [`protobuf`]: protobuf request bodies of the built-in kinds, decoded to JSON
//! - [`discovery`], [`table`]: what kubectl and kube's discovery read
//! - [`rbac`], [`faults`]: authorization and fault injection, the request log
//! - [`harness`]: `TestEnv` for the end-to-end tests

pub mod api_error;
pub mod apply;
pub mod controllers;
pub mod defaults;
pub mod demo;
pub mod discovery;
pub mod faults;
pub mod harness;
pub mod http;
pub mod kubeconfig;
pub mod patch;
pub mod protobuf;
pub mod rbac;
pub mod registry;
pub mod scale;
pub mod seed;
pub mod selectors;
pub mod server;
pub mod store;
pub mod table;
pub mod tls;
pub mod validation;
pub mod volumes;
pub mod watch;

pub use api_error::ApiError;
pub use faults::{Fault, FaultAction, RequestRecord};
pub use rbac::{Rule, ADMIN_TOKEN};
pub use server::{FakeCluster, ServerOptions};
pub use store::Store;
