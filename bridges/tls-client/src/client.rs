//! Settings to a rustls `ClientConfig`, once per service; then handshakes over any stream.

use std::io;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::settings::{TlsError, TlsSettings};
use crate::verify::{AcceptAnyCertificate, PinMismatch, Verifier};

/// A service's TLS client: cheap to clone, shared by all its connections.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_owned()).map_err(|e| format!("{name:?}: {e}"))
}

impl TlsClient {
    /// Reads and checks every file now, so a bad one is a configuration error (key named)
    /// rather than a failed handshake later.
    pub fn new(settings: &TlsSettings) -> Result<TlsClient, TlsError> {
        let provider = Arc::new(crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new("insecure", e.to_string()))?;
        let server_name = settings
            .server_name
            .as_deref()
            .map(server_name)
            .transpose()
            .map_err(|e| TlsError::new("server_name", e))?;
        let builder = if settings.insecure {
            if !settings.pin_sha256.is_empty() {
                return Err(TlsError::new(
                    "insecure",
                    "insecure = true would ignore pin_sha256: drop one of them",
                ));
            }
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        } else {
            // Pins alone need no roots; a ca_file (or no pin) means the chain check too.
            let (chain, exact) = if settings.pin_sha256.is_empty() || settings.ca_file.is_some() {
                let (roots, exact) = roots(settings.ca_file.as_deref())?;
                let chain =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| TlsError::new("ca_file", e.to_string()))?;
                (Some(chain), exact)
            } else {
                (None, Vec::new())
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Verifier {
                    chain,
                    exact,
                    pins: settings.pin_sha256.clone(),
                    provider,
                }))
        };
        let config = match (&settings.client_cert, &settings.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(TlsError::new(
                    "client_key",
                    "client_cert is set: give its private key too",
                ))
            }
            (None, Some(_)) => {
                return Err(TlsError::new(
                    "client_cert",
                    "client_key is set: give its certificate too",
                ))
            }
            (Some(cert), Some(key)) => {
                let chain = certificates(cert).map_err(|e| TlsError::new("client_cert", e))?;
                let key = private_key(key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::new("client_key", e.to_string()))?
            }
        };
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }

    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// The configured `server_name`, else `host` (the URI's or the domain's).
    pub fn name_for(&self, host: &str) -> Result<ServerName<'static>, String> {
        match &self.server_name {
            Some(name) => Ok(name.clone()),
            None => server_name(host.trim_start_matches('[').trim_end_matches(']')),
        }
    }

    /// The handshake over `stream`; the error says it was TLS, and why (see [`describe`]).
    pub async fn connect<S>(&self, host: &str, stream: S) -> io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = self.name_for(host).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("TLS server name {e}"))
        })?;
        let shown = name.to_str().into_owned();
        TlsConnector::from(self.config.clone())
            .connect(name, stream)
            .await
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("TLS handshake with {shown} failed: {}", describe(&e)),
                )
            })
    }
}

/// A handshake failure in words: rustls's own text, except for the pin check, whose
/// message rustls would print as a debug dump.
pub fn describe(e: &io::Error) -> String {
    use tokio_rustls::rustls::Error;
    let Some(inner) = e.get_ref() else {
        return e.to_string();
    };
    match inner.downcast_ref::<Error>() {
        Some(Error::InvalidCertificate(CertificateError::Other(other))) => {
            match other.0.downcast_ref::<PinMismatch>() {
                Some(pin) => format!("invalid peer certificate: {pin}"),
                None => format!("invalid peer certificate: {}", other.0),
            }
        }
        Some(rustls) => rustls.to_string(),
        None => inner.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let err = |m: String| TlsError::new("client_key", format!("{}: {m}", path.display()));
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err("no PEM private key in it (PKCS#8, PKCS#1 or SEC1)".into()))
}

/// System roots plus the `ca_file`'s certificates, and those certificates again to be
/// trusted as they are.
fn roots(
    ca_file: Option<&Path>,
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!("tls: skipping a system root certificate: {error}");
    }
    let (_, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!("tls: {ignored} system root certificates did not parse");
    }
    let mut exact = Vec::new();
    if let Some(path) = ca_file {
        for cert in certificates(path).map_err(|e| TlsError::new("ca_file", e))? {
            exact.push(cert.clone());
            roots
                .add(cert)
                .map_err(|e| TlsError::new("ca_file", format!("{}: {e}", path.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::new(
            "ca_file",
            "no system root certificates found; give a ca_file or pin_sha256",
        ));
    }
    Ok((roots, exact))
}
