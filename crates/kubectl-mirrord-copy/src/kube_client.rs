//! A kube client configured the way kubectl would be: --kubeconfig, else $KUBECONFIG (several
//! files merged, first wins), else ~/.kube/config; --context; the context's namespace unless -n.
//!
//! TLS is set up here rather than by kube's `rustls-tls` feature, which always links
//! rustls-platform-verifier and rustls-native-certs, and with them Apple's Security framework
//! on macOS (only in Apple's SDK, so no release could be cross-built). Trust is the kubeconfig's
//! `certificate-authority`/`-data` alone, as before; a cluster entry without a CA falls back to
//! Mozilla's roots (webpki-roots) instead of the operating system's store. The rest of the
//! stack is kube's own pieces in kube's order: base URI, retry, authentication, extra headers,
//! and connect/read/write timeouts. Not carried over: a client certificate that an exec
//! credential plugin returns instead of a token (kube keeps that path private); exec plugins
//! returning tokens (EKS, GKE, AKS, OIDC helpers) work as before, through kube's auth layer.

use std::sync::Arc;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::{retry::RetryPolicy, ClientBuilder, ConfigExt};
use kube::config::{KubeConfigOptions, Kubeconfig};
use mirrord_copy_core::Error;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tower::{BoxError, ServiceBuilder};

use crate::cli::GlobalArgs;

pub struct Cluster {
    pub client: kube::Client,
    /// The namespace commands act in: -n, else the context's, else "default".
    pub namespace: String,
    /// The kubeconfig context in use, recorded in the local state file.
    pub context: String,
}

fn load_kubeconfig(global: &GlobalArgs) -> Result<Kubeconfig, Error> {
    let loaded = match &global.kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        // Kubeconfig::read handles $KUBECONFIG with several paths (merged as kubectl does)
        // and falls back to ~/.kube/config.
        None => Kubeconfig::read(),
    };
    loaded.map_err(|e| {
        Error::Unreachable(format!(
            "cannot load a kubeconfig ({e}); pass --kubeconfig FILE or set KUBECONFIG"
        ))
    })
}

pub async fn connect(global: &GlobalArgs) -> Result<Cluster, Error> {
    let kubeconfig = load_kubeconfig(global)?;
    let context = global
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone())
        .unwrap_or_default();
    if let Some(wanted) = &global.context {
        if !kubeconfig.contexts.iter().any(|c| &c.name == wanted) {
            let known: Vec<&str> = kubeconfig
                .contexts
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            return Err(Error::Usage(format!(
                "context {wanted:?} not found in the kubeconfig (contexts: {})",
                known.join(", ")
            )));
        }
    }
    let options = KubeConfigOptions {
        context: global.context.clone(),
        ..Default::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| Error::Unreachable(format!("invalid kubeconfig: {e}")))?;
    config.connect_timeout = Some(global.request_timeout);
    config.read_timeout = Some(global.request_timeout);
    config.write_timeout = Some(global.request_timeout);
    let namespace = global
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = build_client(&config)
        .map_err(|e| Error::Unreachable(format!("cannot build a client: {e}")))?;
    Ok(Cluster {
        client,
        namespace,
        context,
    })
}

/// The kube client for `config`: kube's middleware over a hyper client whose TLS is ours.
fn build_client(config: &kube::Config) -> Result<kube::Client, BoxError> {
    if let Some(proxy) = &config.proxy_url {
        // As before: kube was built without its proxy features, so it refused these too.
        return Err(format!("proxy-url {proxy} is not supported").into());
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(config)?)
        .https_or_http();
    let https = match &config.tls_server_name {
        Some(name) => https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
            ServerName::try_from(name.clone())
                .map_err(|e| format!("tls-server-name {name:?}: {e}"))?,
        )),
        None => https,
    };
    let mut connector =
        hyper_timeout::TimeoutConnector::new(https.enable_http1().wrap_connector(http));
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let http_client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, kube::client::Body>(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| tower::retry::RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        // -vv shows every API request, as kube's own stack logged them.
        .map_request(|req: http::Request<kube::client::Body>| {
            tracing::debug!(method = %req.method(), url = %req.uri(), "requesting");
            req
        })
        .map_err(BoxError::from)
        .service(http_client);
    Ok(ClientBuilder::new(service, config.default_namespace.clone()).build())
}

/// rustls settings for `config`: its CA (or Mozilla's roots when it names none), the client
/// certificate of the kubeconfig user if any, and no verification at all only when the
/// kubeconfig says `insecure-skip-tls-verify`.
fn tls_config(config: &kube::Config) -> Result<ClientConfig, BoxError> {
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
    let mut tls = match client_identity(&config.auth_info)? {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    if config.accept_invalid_certs {
        tls.dangerous()
            .set_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)));
    }
    Ok(tls)
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The user's client certificate chain and key (`client-certificate`/`-data` and
/// `client-key`/`-data`; file paths were made absolute when the kubeconfig was read).
fn client_identity(user: &kube::config::AuthInfo) -> Result<Option<Identity>, BoxError> {
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
        (Some(_), None) => Err("the user has a client certificate but no client-key".into()),
        (None, Some(_)) => Err("the user has a client-key but no client certificate".into()),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(&cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client certificate: {e}"))?;
            if chain.is_empty() {
                return Err("client certificate: no CERTIFICATE block in the PEM".into());
            }
            let key =
                PrivateKeyDer::from_pem_slice(&key).map_err(|e| format!("client-key: {e}"))?;
            Ok(Some((chain, key)))
        }
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use base64::Engine;
    use fakekube::kubeconfig::kubeconfig_yaml;
    use fakekube::{FakeCluster, ServerOptions, ADMIN_TOKEN};

    use super::*;

    fn global(kubeconfig: &Path) -> GlobalArgs {
        GlobalArgs {
            namespace: None,
            context: None,
            kubeconfig: Some(kubeconfig.to_path_buf()),
            request_timeout: Duration::from_secs(10),
            verbose: 0,
        }
    }

    /// GET /version through `connect` with this kubeconfig: the server's gitVersion, or why not.
    async fn server_version(yaml: &str) -> Result<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, yaml).unwrap();
        let cluster = connect(&global(&path)).await.map_err(|e| e.to_string())?;
        let info = cluster.client.apiserver_version().await;
        info.map(|v| v.git_version).map_err(|e| format!("{e:?}"))
    }

    fn b64(pem: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(pem)
    }

    #[tokio::test]
    async fn the_kubeconfig_ca_is_trusted() {
        let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
        let yaml = kubeconfig_yaml(&fake.url(), fake.ca_pem(), "default", ADMIN_TOKEN);
        assert!(yaml.contains("certificate-authority-data"));
        server_version(&yaml)
            .await
            .expect("TLS with the kubeconfig's CA");
    }

    #[tokio::test]
    async fn without_a_ca_only_mozillas_roots_are_trusted() {
        // The fake's own CA is in no public root store, so the handshake must fail: the
        // fallback is webpki-roots, never "trust anything".
        let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
        let yaml = kubeconfig_yaml(&fake.url(), None, "default", ADMIN_TOKEN);
        let err = server_version(&yaml)
            .await
            .expect_err("an unknown CA is refused");
        assert!(err.contains("UnknownIssuer"), "{err}");
        // A transport error to mirrord_copy_core (it maps Service and HyperError so).
        assert!(
            err.starts_with("Service(") || err.starts_with("HyperError("),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_ca_replaces_the_fallback_roots() {
        // A kubeconfig CA that did not sign the server's certificate: refused, even though the
        // CA is a valid one (Mozilla's roots are not added beside it).
        let other = rcgen::generate_simple_self_signed(vec!["other-ca".to_string()]).unwrap();
        let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
        let yaml = kubeconfig_yaml(&fake.url(), Some(&other.cert.pem()), "default", ADMIN_TOKEN);
        let err = server_version(&yaml)
            .await
            .expect_err("a foreign CA is refused");
        assert!(
            err.contains("UnknownIssuer") || err.contains("certificate"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn insecure_skip_tls_verify_accepts_any_certificate() {
        let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
        let yaml = kubeconfig_yaml(&fake.url(), None, "default", ADMIN_TOKEN).replace(
            &format!("server: {}", fake.url()),
            &format!("server: {}\n    insecure-skip-tls-verify: true", fake.url()),
        );
        server_version(&yaml)
            .await
            .expect("no verification asked for");
    }

    #[tokio::test]
    async fn a_client_certificate_is_loaded_and_offered() {
        let id = rcgen::generate_simple_self_signed(vec!["fake-user".to_string()]).unwrap();
        let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
        let yaml = kubeconfig_yaml(&fake.url(), fake.ca_pem(), "default", ADMIN_TOKEN).replace(
            &format!("    token: {ADMIN_TOKEN}"),
            &format!(
                "    token: {ADMIN_TOKEN}\n    client-certificate-data: {}\n    client-key-data: {}",
                b64(&id.cert.pem()),
                b64(&id.signing_key.serialize_pem())
            ),
        );
        server_version(&yaml)
            .await
            .expect("a client certificate does not break TLS");

        // Half an identity is refused before any request, as kube refused it.
        let half = kubeconfig_yaml(&fake.url(), fake.ca_pem(), "default", ADMIN_TOKEN).replace(
            &format!("    token: {ADMIN_TOKEN}"),
            &format!(
                "    token: {ADMIN_TOKEN}\n    client-certificate-data: {}",
                b64(&id.cert.pem())
            ),
        );
        let err = server_version(&half).await.expect_err("no key");
        assert!(err.contains("no client-key"), "{err}");
    }

    #[test]
    fn the_fallback_roots_are_mozillas() {
        // Guards the dependency itself: an empty or stubbed webpki-roots would make every
        // CA-less kubeconfig fail.
        assert!(webpki_roots::TLS_SERVER_ROOTS.len() > 100);
    }
}
