//! TLS for the fake API server: a CA and a serving certificate for `127.0.0.1`/`localhost`,
//! generated once per process. Real clusters serve HTTPS, and kubectl will not send a bearer
//! token over plain HTTP, so TLS is the default.
//!
//! Client certificates are authenticated as kube-apiserver's x509 authenticator does
//! (`--client-ca-file`): the server asks every client for a certificate and goes on to bearer
//! tokens when none is given; a verified certificate's subject names the user (CN) and its
//! groups (each O), and `system:authenticated` is added; a certificate wins over a token.
//! Differences: kube-apiserver asks without requiring (Go's RequestClientCert) and verifies in
//! the authenticator, so a certificate from another CA is a 401 there and a failed handshake
//! here; and it cannot be made to require a certificate, which the fake can
//! ([`TlsMaterial::strict_acceptor`], `ServerOptions::require_client_cert`), so that a test
//! proves a client presented one.

use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio_rustls::TlsAcceptor;

use crate::rbac::Identity;

pub(crate) struct TlsMaterial {
    /// The CA certificate (PEM) clients must trust (`certificate-authority-data`).
    pub ca_pem: String,
    /// Asks for a client certificate signed by the CA, and accepts connections without one.
    pub acceptor: TlsAcceptor,
    /// Refuses the handshake without a client certificate signed by the CA.
    pub strict_acceptor: TlsAcceptor,
    /// The CA, which also signs client certificates ([`client_certificate`]).
    issuer: Issuer<'static, KeyPair>,
}

fn generate() -> anyhow::Result<TlsMaterial> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fakekube-ca");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "kubernetes.default.svc".to_string(),
    ])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = params.signed_by(&key, &issuer)?;

    let chain = vec![
        CertificateDer::from(cert.der().to_vec()),
        CertificateDer::from(ca_cert.der().to_vec()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client_roots = RootCertStore::empty();
    client_roots.add(CertificateDer::from(ca_cert.der().to_vec()))?;
    let client_roots = Arc::new(client_roots);
    let acceptor = |required: bool| -> anyhow::Result<TlsAcceptor> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(client_roots.clone(), provider.clone());
        let verifier = if required {
            verifier
        } else {
            verifier.allow_unauthenticated()
        };
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier.build()?)
            .with_single_cert(chain.clone(), key.clone_key())?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(cfg)))
    };
    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        acceptor: acceptor(false)?,
        strict_acceptor: acceptor(true)?,
        issuer,
    })
}

/// The process-wide TLS material (generated on first use).
pub(crate) fn material() -> &'static TlsMaterial {
    static M: OnceLock<TlsMaterial> = OnceLock::new();
    M.get_or_init(|| generate().expect("generating TLS certificates"))
}

/// A client certificate for `user` in `group` (subject CN and O; rcgen writes one attribute
/// of a type, so one group), signed by the fake's CA, and its key: (certificate PEM, PKCS#8 key
/// PEM), as `client-certificate-data` and `client-key-data` hold them once base64-decoded.
pub fn client_certificate(user: &str, group: &str) -> (String, String) {
    let key = KeyPair::generate().expect("client key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    params.distinguished_name.push(DnType::CommonName, user);
    params
        .distinguished_name
        .push(DnType::OrganizationName, group);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params
        .signed_by(&key, &material().issuer)
        .expect("signing a client certificate");
    (cert.pem(), key.serialize_pem())
}

/// Who a verified client certificate authenticates as (CN the user, each O a group, plus
/// `system:authenticated`); None without a CN, which the x509 authenticator refuses too.
pub(crate) fn certificate_identity(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject.iter_common_name().next()?.as_str().ok()?;
    let mut groups: Vec<&str> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .collect();
    groups.push("system:authenticated");
    Some(Identity::user(user, &groups))
}
