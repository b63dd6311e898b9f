//! `cfg(real_cluster)` when the tests are built to run against a real cluster
//! (MIRRORD_COPY_TEST_KUBECONFIG set): tests that need the fake API server's fault injection,
//! RBAC tokens or simulated kubelet are then reported as ignored, never as passed.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(real_cluster)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=MIRRORD_COPY_TEST_KUBECONFIG");
    if std::env::var_os("MIRRORD_COPY_TEST_KUBECONFIG").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=real_cluster");
    }
}
