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
//! The client identity is the kubeconfig user's `client-certificate`/`-data` and
//! `client-key`/`-data`. `tls-server-name` names the certificate to expect. Tokens, including
//! exec plugins' tokens and their refresh, stay with kube's auth layer. Not carried over yet: a
//! client certificate that an exec credential plugin returns instead of a token (kube keeps
//! that path private).

use std::sync::Arc;

use hyper_util::client::legacy::connect::HttpConnector;
use kube::config::AuthInfo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tower::BoxError;

/// A client certificate chain and its private key.
pub struct Identity {
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

/// The HTTPS (or plain HTTP, for an `http://` server) connector for `config`.
pub fn https_connector(
    config: &kube::Config,
) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, BoxError> {
    let identity = kubeconfig_identity(&config.auth_info)?;
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
