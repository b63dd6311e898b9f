//! `fakekube`: an in-process Kubernetes API server for the end-to-end tests, benchmarks and
//! the `mirrord-copy-sandbox` demo binary. See `DESIGN.md` at the workspace root.

pub mod api_error;
pub mod registry;
pub mod store;
pub mod validation;
pub mod controllers;
