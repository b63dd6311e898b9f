//! Kubeconfig files for a fake cluster: one cluster (plain HTTP on 127.0.0.1), one token
//! user, one context with a default namespace.

/// The kubeconfig YAML; cluster, user and context are all named `fakekube`.
pub fn kubeconfig_yaml(server: &str, namespace: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fakekube
  cluster:
    server: {server}
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
