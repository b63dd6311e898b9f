//! End-to-end tests of the plugin binary against the fake API server (or a real cluster).
//!
//! The binary under test is the one cargo built, or `MIRRORD_COPY_TEST_BIN`: a release
//! archive's binary, or a wrapper that runs a cross-built one under an emulator, so one suite
//! proves what ships.

// A test crate exports nothing: `pub` in its helper modules only shares them between test
// files, so unreachable_pub does not apply.
#![allow(unreachable_pub)]

use std::sync::OnceLock;

/// Environment variable naming the plugin binary to test instead of cargo's build.
pub const TEST_BIN_ENV: &str = "MIRRORD_COPY_TEST_BIN";

/// The plugin binary under test.
pub fn plugin_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var(TEST_BIN_ENV)
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_kubectl-mirrord_copy").to_string())
    })
}

mod plugin_access;
mod plugin_breadcrumbs;
mod plugin_cli;
mod plugin_connection;
mod plugin_create;
mod plugin_errors;
mod plugin_gitops;
mod plugin_input;
mod plugin_interop;
mod plugin_kubeconfig;
mod plugin_ownership;
mod plugin_repair;
mod plugin_replace_one;
mod plugin_requests;
mod plugin_run;
mod plugin_session_safety;
mod plugin_sigkill;
mod plugin_statefulset;
mod plugin_status;
mod plugin_support;
mod plugin_target;
mod plugin_tls;
mod plugin_tty;
mod scale_down_cli;
