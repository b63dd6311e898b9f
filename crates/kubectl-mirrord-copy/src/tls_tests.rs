//! The plugin's TLS against the fake API server over HTTPS: whom it trusts, and which client
//! certificate it presents. Each test connects through `kube_client::connect` from a
//! kubeconfig file, as a command does, and asks the server who it is (SelfSubjectReview): the
//! answer names the credentials the server saw.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use fakekube::{FakeCluster, ServerOptions, ADMIN_TOKEN};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::PostParams;
use kube::Api;

use crate::cli::GlobalArgs;
use crate::kube_client::connect;

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A kubeconfig with one cluster (`server`, then the `cluster` lines) and one user.
fn kubeconfig(server: &str, cluster: &[String], user: &[String]) -> String {
    let indent =
        |lines: &[String]| -> String { lines.iter().map(|l| format!("\n    {l}")).collect() };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}{}\n\
         users:\n- name: u\n  user:{}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\n\
         current-context: x\n",
        indent(cluster),
        if user.is_empty() {
            " {}".to_string()
        } else {
            indent(user)
        },
    )
}

/// `certificate-authority-data` for the fake's CA.
fn fake_ca(fake: &FakeCluster) -> Vec<String> {
    vec![format!(
        "certificate-authority-data: {}",
        b64(fake.ca_pem().unwrap())
    )]
}

fn token_user() -> Vec<String> {
    vec![format!("token: {ADMIN_TOKEN}")]
}

/// Who the server says these credentials are: (username, groups), or the error, as text.
async fn whoami(dir: &Path, yaml: &str) -> Result<(String, Vec<String>), String> {
    let path = dir.join("config");
    std::fs::write(&path, yaml).unwrap();
    let global = GlobalArgs {
        namespace: None,
        context: None,
        kubeconfig: Some(path),
        request_timeout: Duration::from_secs(10),
        verbose: 0,
    };
    let cluster = connect(&global).await.map_err(|e| e.to_string())?;
    let api: Api<SelfSubjectReview> = Api::all(cluster.client);
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(|e| mirrord_copy_lock::kube_error_text(&e))?;
    let info = review.status.unwrap().user_info.unwrap();
    Ok((info.username.unwrap(), info.groups.unwrap_or_default()))
}

async fn start(require_client_cert: bool) -> FakeCluster {
    FakeCluster::start(ServerOptions {
        require_client_cert,
        ..Default::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_kubeconfig_ca_is_trusted() {
    let fake = start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = kubeconfig(&fake.url(), &fake_ca(&fake), &token_user());
    let (user, _) = whoami(dir.path(), &yaml)
        .await
        .expect("TLS with the kubeconfig's CA");
    assert_eq!(user, "admin");
}

#[tokio::test]
async fn a_ca_that_did_not_sign_the_server_certificate_is_refused() {
    // A valid CA, but not the server's: refused, and Mozilla's roots are not added beside it.
    let other = rcgen::generate_simple_self_signed(vec!["other-ca".to_string()]).unwrap();
    let fake = start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = vec![format!(
        "certificate-authority-data: {}",
        b64(&other.cert.pem())
    )];
    let err = whoami(dir.path(), &kubeconfig(&fake.url(), &ca, &token_user()))
        .await
        .expect_err("a foreign CA is refused");
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
}

#[tokio::test]
async fn without_a_ca_only_mozillas_roots_are_trusted() {
    // The fake's CA is in no public root store: the fallback is webpki-roots, never "trust
    // anything" (nor this machine's store, which does not have it either).
    let fake = start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let err = whoami(dir.path(), &kubeconfig(&fake.url(), &[], &token_user()))
        .await
        .expect_err("an unknown CA is refused");
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    // Guards the dependency itself: an empty or stubbed webpki-roots would make every
    // CA-less kubeconfig fail.
    assert!(webpki_roots::TLS_SERVER_ROOTS.len() > 100);
}

#[tokio::test]
async fn insecure_skip_tls_verify_accepts_any_certificate() {
    let fake = start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = vec!["insecure-skip-tls-verify: true".to_string()];
    let yaml = kubeconfig(&fake.url(), &cluster, &token_user());
    let (user, _) = whoami(dir.path(), &yaml)
        .await
        .expect("no verification asked for");
    assert_eq!(user, "admin");
}

#[tokio::test]
async fn tls_server_name_is_the_name_checked() {
    // The serving certificate names localhost, 127.0.0.1 and kubernetes.default.svc.
    let fake = start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = fake_ca(&fake);
    cluster.push("tls-server-name: kubernetes.default.svc".into());
    let yaml = kubeconfig(&fake.url(), &cluster, &token_user());
    whoami(dir.path(), &yaml)
        .await
        .expect("a name the certificate has");

    let mut cluster = fake_ca(&fake);
    cluster.push("tls-server-name: elsewhere.example".into());
    let yaml = kubeconfig(&fake.url(), &cluster, &token_user());
    let err = whoami(dir.path(), &yaml)
        .await
        .expect_err("a name the certificate lacks");
    assert!(
        err.contains("certificate not valid for name \"elsewhere.example\""),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_requiring_a_client_certificate_refuses_a_token_alone() {
    // What makes the client-certificate tests below mean something.
    let fake = start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = kubeconfig(&fake.url(), &fake_ca(&fake), &token_user());
    let err = whoami(dir.path(), &yaml).await.expect_err("no certificate");
    assert!(err.contains("CertificateRequired"), "{err}");
}

#[tokio::test]
async fn the_kubeconfig_client_certificate_is_presented() {
    let fake = start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = fakekube::client_certificate("kc-user", "team-a");

    // Inline (-data) ...
    let user = vec![
        format!("client-certificate-data: {}", b64(&cert)),
        format!("client-key-data: {}", b64(&key)),
    ];
    let yaml = kubeconfig(&fake.url(), &fake_ca(&fake), &user);
    let (name, groups) = whoami(dir.path(), &yaml)
        .await
        .expect("x509 authentication");
    assert_eq!(name, "kc-user");
    assert_eq!(groups, ["team-a", "system:authenticated"]);

    // ... and from files.
    std::fs::write(dir.path().join("user.crt"), &cert).unwrap();
    std::fs::write(dir.path().join("user.key"), &key).unwrap();
    let user = vec![
        format!(
            "client-certificate: {}",
            dir.path().join("user.crt").display()
        ),
        format!("client-key: {}", dir.path().join("user.key").display()),
    ];
    let yaml = kubeconfig(&fake.url(), &fake_ca(&fake), &user);
    let (name, _) = whoami(dir.path(), &yaml)
        .await
        .expect("x509 authentication");
    assert_eq!(name, "kc-user");

    // Half an identity is refused before any request, as kube refused it.
    let user = vec![format!("client-certificate-data: {}", b64(&cert))];
    let yaml = kubeconfig(&fake.url(), &fake_ca(&fake), &user);
    let err = whoami(dir.path(), &yaml).await.expect_err("no key");
    assert!(err.contains("no client-key"), "{err}");
}

/// An exec credential plugin: a shell script that records its arguments, an env variable and
/// KUBERNETES_EXEC_INFO in `dir`, then prints `answer` (an ExecCredential).
fn exec_plugin(dir: &Path, answer: &serde_json::Value) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(dir.join("answer.json"), answer.to_string()).unwrap();
    let script = dir.join("credential-plugin.sh");
    let d = dir.display();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" > '{d}/args'\necho \"$PLUGIN_MODE\" > '{d}/env'\n\
             printf '%s' \"$KUBERNETES_EXEC_INFO\" > '{d}/exec-info.json'\ncat '{d}/answer.json'\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn exec_user(script: &Path, extra: &[&str]) -> Vec<String> {
    let mut user = vec![
        "exec:".to_string(),
        "  apiVersion: client.authentication.k8s.io/v1".into(),
        format!("  command: {}", script.display()),
        "  args: [get-credential, --cluster=c]".into(),
        "  env: [{name: PLUGIN_MODE, value: certificate}]".into(),
    ];
    user.extend(extra.iter().map(|l| format!("  {l}")));
    user
}

#[tokio::test]
async fn an_exec_plugin_client_certificate_is_presented() {
    let fake = start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = fakekube::client_certificate("exec-user", "team-b");
    let script = exec_plugin(
        dir.path(),
        &serde_json::json!({
            "apiVersion": "client.authentication.k8s.io/v1",
            "kind": "ExecCredential",
            "status": {
                "clientCertificateData": cert,
                "clientKeyData": key,
                "expirationTimestamp": "2999-01-01T00:00:00Z",
            },
        }),
    );
    let user = exec_user(
        &script,
        &["interactiveMode: Never", "provideClusterInfo: true"],
    );
    let yaml = kubeconfig(&fake.url(), &fake_ca(&fake), &user);
    let (name, groups) = whoami(dir.path(), &yaml)
        .await
        .expect("the exec plugin's certificate authenticates");
    assert_eq!(name, "exec-user");
    assert_eq!(groups, ["team-b", "system:authenticated"]);

    // Run as client-go runs it: its args and env, and the ExecCredential request with the
    // cluster (provideClusterInfo).
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    assert_eq!(read("args").trim(), "get-credential --cluster=c");
    assert_eq!(read("env").trim(), "certificate");
    let info: serde_json::Value = serde_json::from_str(&read("exec-info.json")).unwrap();
    assert_eq!(info["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(info["kind"], "ExecCredential");
    assert_eq!(info["spec"]["interactive"], false);
    assert_eq!(info["spec"]["cluster"]["server"], fake.url().as_str());
    let ca = base64::engine::general_purpose::STANDARD
        .decode(
            info["spec"]["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(String::from_utf8(ca).unwrap(), fake.ca_pem().unwrap());
}

#[tokio::test]
async fn an_exec_plugin_token_goes_through_kube_auth() {
    let fake = start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let script = exec_plugin(
        dir.path(),
        &serde_json::json!({
            "apiVersion": "client.authentication.k8s.io/v1",
            "kind": "ExecCredential",
            "status": {"token": ADMIN_TOKEN},
        }),
    );
    let yaml = kubeconfig(
        &fake.url(),
        &fake_ca(&fake),
        &exec_user(&script, &["interactiveMode: Never"]),
    );
    let (name, _) = whoami(dir.path(), &yaml)
        .await
        .expect("the exec plugin's token");
    assert_eq!(name, "admin");
}
