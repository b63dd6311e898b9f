//! End-to-end tests of the plugin binary against the fake API server (or a real cluster).
