//! What a user sees when the cluster's certificate is not signed by the kubeconfig's CA: the
//! cluster is unreachable (exit 8) and the reason names the certificate. The plugin's trust and
//! client certificates are tested against the fake in src/tls_tests.rs.

use base64::Engine;
use fakekube::harness::TestEnv;

use crate::plugin_support::mc_with;

#[tokio::test]
#[cfg_attr(real_cluster, ignore = "needs the fake API server's certificate")]
async fn a_server_certificate_from_another_ca_is_refused_clearly() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["other-ca".to_string()]).unwrap();
    let mut kc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&env.kubeconfig).unwrap()).unwrap();
    for c in kc["clusters"].as_sequence_mut().expect("clusters") {
        c["cluster"]["certificate-authority-data"] = serde_yaml_ng::Value::String(
            base64::engine::general_purpose::STANDARD.encode(other.cert.pem()),
        );
    }
    let path = dir.path().join("other-ca.kubeconfig");
    std::fs::write(&path, serde_yaml_ng::to_string(&kc).unwrap()).unwrap();
    mc_with(&env, &["status"], |c| {
        c.env("KUBECONFIG", &path);
    })
    .await
    .code(8)
    .stderr_has(&[
        "cluster unreachable",
        "invalid peer certificate: UnknownIssuer",
    ]);
}
