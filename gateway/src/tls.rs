//! rustls server configuration from PEM files, with optional client-certificate checks.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientAuth, TlsConfig};

/// Why the TLS settings cannot be used; each names its `server.tls` key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot open {}: {source}", .path.display())]
    Open {
        key: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{key}: bad PEM in {}: {source}", .path.display())]
    BadPem {
        key: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{key}: no certificate in {}", .path.display())]
    NoCertificate { key: &'static str, path: PathBuf },
    #[error("server.tls.key: no private key in {}", .0.display())]
    NoPrivateKey(PathBuf),
    #[error("server.tls: {0}")]
    Protocols(#[source] rustls::Error),
    #[error("server.tls.client_auth: needs server.tls.client_ca")]
    ClientAuthWithoutCa,
    #[error("server.tls.client_ca: {0}")]
    ClientCa(#[source] rustls::Error),
    #[error("server.tls.client_ca: {0}")]
    ClientVerifier(#[source] VerifierBuilderError),
    #[error("server.tls: certificate and key do not match: {0}")]
    KeyMismatch(#[source] rustls::Error),
}

fn open(path: &Path, key: &'static str) -> Result<BufReader<File>, TlsError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Open {
            key,
            path: path.to_owned(),
            source,
        })
}

fn bad_pem<'a>(path: &'a Path, key: &'static str) -> impl FnOnce(io::Error) -> TlsError + 'a {
    move |source| TlsError::BadPem {
        key,
        path: path.to_owned(),
        source,
    }
}

fn read_certs(path: &Path, key: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut open(path, key)?)
        .collect::<Result<_, _>>()
        .map_err(bad_pem(path, key))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            key,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    const KEY: &str = "server.tls.key";
    rustls_pemfile::private_key(&mut open(path, KEY)?)
        .map_err(bad_pem(path, KEY))?
        .ok_or_else(|| TlsError::NoPrivateKey(path.to_owned()))
}

pub fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let certs = read_certs(&cfg.cert, "server.tls.cert")?;
    let key = read_key(&cfg.key)?;
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocols)?;
    let builder = match (&cfg.client_ca, cfg.client_auth) {
        (_, ClientAuth::None) => builder.with_no_client_auth(),
        (None, _) => {
            return Err(TlsError::ClientAuthWithoutCa);
        }
        (Some(ca), mode) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca, "server.tls.client_ca")? {
                roots.add(cert).map_err(TlsError::ClientCa)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(TlsError::ClientVerifier)?)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(TlsError::KeyMismatch)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(cert: PathBuf, key: PathBuf) -> TlsConfig {
        TlsConfig {
            cert,
            key,
            client_ca: None,
            client_auth: ClientAuth::None,
        }
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let missing = dir.path().join("missing.pem");
        let err = |c: TlsConfig| acceptor(&c).err().expect("error").to_string();
        assert_eq!(
            err(cfg(missing.clone(), empty.clone())),
            format!(
                "server.tls.cert: cannot open {}: No such file or directory (os error 2)",
                missing.display()
            )
        );
        assert_eq!(
            err(cfg(empty.clone(), empty.clone())),
            format!("server.tls.cert: no certificate in {}", empty.display())
        );
    }
}
