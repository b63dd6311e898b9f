//! Kubeconfig files for a fake cluster: one cluster (HTTPS with the fake's CA, or plain HTTP),
//! one token user, one context with a default namespace.

use base64::Engine;

/// The kubeconfig YAML; cluster, user and context are all named `fakekube`. `ca_pem` is the
/// CA to trust for an `https://` server.
pub(crate) fn kubeconfig_yaml(
    server: &str,
    ca_pem: Option<&str>,
    namespace: &str,
    token: &str,
) -> String {
    let ca = match ca_pem {
        Some(pem) => format!(
            "\n    certificate-authority-data: {}",
            base64::engine::general_purpose::STANDARD.encode(pem)
        ),
        None => String::new(),
    };
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fakekube
  cluster:
    server: {server}{ca}
users:
- name: fakekube
  user:
    token: {token}
contexts:
- name: fakekube
  context:
    cluster: fakekube
    user: fakekube
    namespace: {namespace}
current-context: fakekube
preferences: {{}}
"
    )
}
