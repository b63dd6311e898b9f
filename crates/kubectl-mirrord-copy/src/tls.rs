//! TLS for the cluster connection, set up here rather than by kube's `rustls-tls` feature.
//!
//! Why: kube's feature always links rustls-platform-verifier and rustls-native-certs, and with
//! them Apple's Security framework on macOS, which only Apple's SDK can link: no macOS release
//! could be cross-built from Linux. So the plugin links no Apple framework, and trusts:
//!
//! - the kubeconfig cluster's `certificate-authority`/`-data`, alone, as kubectl does;
//! - else Mozilla's root certificates, compiled in (webpki-roots), instead of the operating
//!   system's store (the macOS keychain, /etc/ssl): a cluster served with a certificate from a
//!   private CA needs that CA in the kubeconfig;
//! - nothing at all with `insecure-skip-tls-verify: true`.
//!
//! The client identity is, as in kube and client-go, a certificate and key returned by the
//! user's exec credential plugin (ExecCredential `status.clientCertificateData`/
//! `clientKeyData`), else the kubeconfig user's `client-certificate`/`-data` and
//! `client-key`/`-data`. `tls-server-name` names the certificate to expect. Tokens, including
//! exec plugins' tokens and their refresh, stay with kube's auth layer.

use std::process::{Command, Stdio};
use std::sync::Arc;

use hyper_util::client::legacy::connect::HttpConnector;
use kube::config::{AuthInfo, ExecConfig, ExecInteractiveMode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tower::BoxError;

/// A client certificate chain and its private key.
pub(crate) struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// From PEM: one or more CERTIFICATE blocks, and a private key (PKCS#8, PKCS#1 or SEC1).
    fn from_pem(cert: &[u8], key: &[u8], from: &str) -> Result<Identity, BoxError> {
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{from}: client certificate: {e}"))?;
        if chain.is_empty() {
            return Err(
                format!("{from}: client certificate: no CERTIFICATE block in the PEM").into(),
            );
        }
        let key =
            PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("{from}: client key: {e}"))?;
        Ok(Identity { chain, key })
    }
}

/// The HTTPS (or plain HTTP, for an `http://` server) connector for `config`. `exec_identity`
/// is what the user's exec plugin returned ([`exec_identity`]); it wins over the kubeconfig's.
pub(crate) fn https_connector(
    config: &kube::Config,
    exec_identity: Option<Identity>,
) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, BoxError> {
    let identity = match exec_identity {
        Some(identity) => Some(identity),
        None => kubeconfig_identity(&config.auth_info)?,
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(config, identity)?)
        .https_or_http();
    let https = match &config.tls_server_name {
        Some(name) => https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
            ServerName::try_from(name.clone())
                .map_err(|e| format!("tls-server-name {name:?}: {e}"))?,
        )),
        None => https,
    };
    Ok(https.enable_http1().wrap_connector(http))
}

/// rustls settings for `config`: its CA (or Mozilla's roots when it names none), `identity`
/// as the client certificate, and no verification only with `insecure-skip-tls-verify`.
fn client_config(
    config: &kube::Config,
    identity: Option<Identity>,
) -> Result<ClientConfig, BoxError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match &config.root_cert {
        Some(ders) => {
            for der in ders {
                roots
                    .add(CertificateDer::from(der.clone()))
                    .map_err(|e| format!("certificate-authority: {e}"))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut tls = match identity {
        Some(Identity { chain, key }) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("client certificate and key: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    if config.accept_invalid_certs {
        tls.dangerous()
            .set_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)));
    }
    Ok(tls)
}

/// The kubeconfig user's `client-certificate`/`-data` and `client-key`/`-data` (file paths
/// were made absolute when the kubeconfig was read; `-data` wins, as in kube and client-go).
fn kubeconfig_identity(user: &AuthInfo) -> Result<Option<Identity>, BoxError> {
    use base64::Engine;
    use secrecy::ExposeSecret;
    let load = |data: Option<&str>,
                file: Option<&String>,
                what: &str|
     -> Result<Option<Vec<u8>>, BoxError> {
        match (data, file) {
            (Some(data), _) => Ok(Some(
                base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map_err(|e| format!("{what}-data is not base64: {e}"))?,
            )),
            (None, Some(path)) => Ok(Some(
                std::fs::read(path).map_err(|e| format!("{what} {path}: {e}"))?,
            )),
            (None, None) => Ok(None),
        }
    };
    let cert = load(
        user.client_certificate_data.as_deref(),
        user.client_certificate.as_ref(),
        "client-certificate",
    )?;
    let key = load(
        user.client_key_data.as_ref().map(|k| k.expose_secret()),
        user.client_key.as_ref(),
        "client-key",
    )?;
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(_), None) => {
            Err("the kubeconfig user has a client certificate but no client-key".into())
        }
        (None, Some(_)) => {
            Err("the kubeconfig user has a client-key but no client certificate".into())
        }
        (Some(cert), Some(key)) => Identity::from_pem(&cert, &key, "kubeconfig").map(Some),
    }
}

/// An exec credential plugin that could not be run or failed, worded as kubectl words it.
#[derive(Debug)]
pub(crate) struct ExecFailed(pub String);

impl std::fmt::Display for ExecFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExecFailed {}

/// What an exec credential plugin prints (client.authentication.k8s.io ExecCredential): only
/// the client certificate is read here; a token is kube's business.
#[derive(serde::Deserialize)]
struct ExecCredential {
    status: Option<ExecCredentialStatus>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecCredentialStatus {
    client_certificate_data: Option<String>,
    client_key_data: Option<String>,
}

/// Runs the user's exec credential plugin as kube and client-go run it, and returns the client
/// certificate it answered with, if any (an answer with a token only is None).
///
/// The plugin gets its `args`, its `env` on top of ours, and `KUBERNETES_EXEC_INFO`: an
/// ExecCredential of the configured `apiVersion` whose spec says whether it may be interactive
/// (unless `interactiveMode: Never`: then its stdin is closed; else it shares our stdin and
/// stderr, to prompt) and, with `provideClusterInfo`, the cluster (server, CA data,
/// tls-server-name...). Its stdout is parsed as JSON (or YAML, which client-go tolerates).
/// The certificate's `expirationTimestamp` is not acted on: a certificate is read once per
/// command, as kube does (it only records it as the client's `valid_until`).
pub(crate) fn exec_identity(exec: &ExecConfig) -> Result<Option<Identity>, BoxError> {
    let program = exec
        .command
        .as_deref()
        .ok_or("the kubeconfig user's exec has no command")?;
    let mut cmd = Command::new(program);
    cmd.args(exec.args.iter().flatten());
    for var in exec.env.iter().flatten() {
        if let (Some(name), Some(value)) = (var.get("name"), var.get("value")) {
            cmd.env(name, value);
        }
    }
    let interactive = exec.interactive_mode != Some(ExecInteractiveMode::Never);
    if interactive {
        cmd.stdin(Stdio::inherit()).stderr(Stdio::inherit());
    } else {
        cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    }
    let mut spec = serde_json::json!({ "interactive": interactive });
    if exec.provide_cluster_info {
        let cluster = exec
            .cluster
            .as_ref()
            .ok_or("provideClusterInfo is set but the cluster is unknown")?;
        spec["cluster"] = serde_json::to_value(cluster)?;
    }
    let info = serde_json::json!({
        "apiVersion": exec.api_version,
        "kind": "ExecCredential",
        "spec": spec,
    });
    cmd.env("KUBERNETES_EXEC_INFO", info.to_string());
    let out = cmd.stdout(Stdio::piped()).output().map_err(|e| {
        let hint = exec.install_hint.as_deref().unwrap_or_default();
        let what = if e.kind() == std::io::ErrorKind::NotFound {
            "not found".to_string()
        } else {
            e.to_string()
        };
        ExecFailed(
            format!("getting credentials: exec: executable {program} {what}. {hint}")
                .trim_end_matches([' ', '.'])
                .to_string(),
        )
    })?;
    if !out.status.success() {
        return Err(ExecFailed(exec_status_text(program, &out.status, &out.stderr)).into());
    }
    let answer: ExecCredential = serde_yaml_ng::from_slice(&out.stdout)
        .map_err(|e| format!("exec credential plugin {program} printed no ExecCredential: {e}"))?;
    match answer.status {
        Some(ExecCredentialStatus {
            client_certificate_data: Some(cert),
            client_key_data: Some(key),
        }) => Identity::from_pem(
            cert.as_bytes(),
            key.as_bytes(),
            &format!("exec credential plugin {program}"),
        )
        .map(Some),
        _ => Ok(None),
    }
}

/// `insecure-skip-tls-verify: true`: any server certificate is accepted (the handshake
/// signatures are still checked, so the connection is at least to the key holder).
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `getting credentials: exec: executable P failed with exit code N` (or `was killed by
/// signal N`), then the plugin's stderr if it wrote any.
pub(crate) fn exec_status_text(
    program: &str,
    status: &std::process::ExitStatus,
    stderr: &[u8],
) -> String {
    let how = match status.code() {
        Some(code) => format!("failed with exit code {code}"),
        None => {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                match status.signal() {
                    Some(sig) => format!("was killed by signal {sig}"),
                    None => format!("failed ({status})"),
                }
            }
            #[cfg(not(unix))]
            {
                format!("failed ({status})")
            }
        }
    };
    let mut text = format!("getting credentials: exec: executable {program} {how}");
    let stderr = String::from_utf8_lossy(stderr);
    if !stderr.trim().is_empty() {
        text.push_str(&format!(" (stderr: {})", stderr.trim()));
    }
    text
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
