//! `cfg(real_cluster)` when the tests are built to run against a real cluster
//! (MIRRORD_COPY_TEST_KUBECONFIG set): tests that need the fake API server's fault injection,
//! RBAC tokens or simulated kubelet are then reported as ignored, never as passed.
//! `cfg(audit_log)` when MIRRORD_COPY_TEST_AUDIT_LOG names that cluster's API server audit log:
//! the request-count tests then read the real server's count from it.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(real_cluster)");
    println!("cargo::rustc-check-cfg=cfg(audit_log)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=MIRRORD_COPY_TEST_KUBECONFIG");
    println!("cargo::rerun-if-env-changed=MIRRORD_COPY_TEST_AUDIT_LOG");
    let set = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    if set("MIRRORD_COPY_TEST_KUBECONFIG") {
        println!("cargo::rustc-cfg=real_cluster");
        if set("MIRRORD_COPY_TEST_AUDIT_LOG") {
            println!("cargo::rustc-cfg=audit_log");
        }
    }
}
