//! rustls server configuration from PEM files, with optional client-certificate checks.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientAuth, TlsConfig};

fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let file =
        File::open(path).map_err(|e| format!("{key}: cannot open {}: {e}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{key}: bad PEM in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key}: no certificate in {}", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let file = File::open(path)
        .map_err(|e| format!("server.tls.key: cannot open {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| format!("server.tls.key: bad PEM in {}: {e}", path.display()))?
        .ok_or_else(|| format!("server.tls.key: no private key in {}", path.display()))
}

pub fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, String> {
    let certs = read_certs(&cfg.cert, "server.tls.cert")?;
    let key = read_key(&cfg.key)?;
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("server.tls: {e}"))?;
    let builder = match (&cfg.client_ca, cfg.client_auth) {
        (_, ClientAuth::None) => builder.with_no_client_auth(),
        (None, _) => {
            return Err("server.tls.client_auth: needs server.tls.client_ca".into());
        }
        (Some(ca), mode) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca, "server.tls.client_ca")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("server.tls.client_ca: {e}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("server.tls.client_ca: {e}"))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("server.tls: certificate and key do not match: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
