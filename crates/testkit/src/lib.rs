//! Fixtures shared by core's integration tests and the plugin's end-to-end tests, so each
//! fixture has one home: the workload manifests they apply ([`manifests`]) and the scale-down
//! helpers that drive and inspect a session step by step ([`scale_down`]).
//!
//! A dev-dependency only. It depends on `mirrord-copy-core`, whose integration tests use it:
//! Cargo allows that (integration tests are crates of their own, linked against the one core
//! library); core's unit tests must not use it.

pub mod manifests;
pub mod scale_down;
