//! End-to-end tests of the plugin binary against the fake API server (or a real cluster).
mod cli_basic;
mod cli_fake_only;
mod cli_kinds;
mod cli_kubeconfig;
mod cli_tty;
mod plugin_create;
mod plugin_errors;
mod plugin_interop;
mod plugin_run;
mod plugin_status;
mod plugin_support;
mod scale_down_cli;
mod scale_down_conflict;
mod scale_down_create;
mod scale_down_lifecycle;
mod scale_down_lock;
mod scale_down_support;
