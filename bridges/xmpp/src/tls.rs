//! The TLS client towards the XMPP server: system roots plus an optional CA file, ring
//! provider, built once per service and shared by its sessions.

use std::sync::Arc;

use bridge_api::SettingsError;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::settings::XmppSettings;

pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_owned()).map_err(|e| format!("{name:?}: {e}"))
}

/// The client configuration for a service's settings. Errors name the offending key.
pub fn client_config(settings: &XmppSettings) -> Result<Arc<ClientConfig>, SettingsError> {
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SettingsError::new("tls", e.to_string()))?;
    let config = if settings.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let (roots, pinned) = roots(settings)?;
        let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| SettingsError::new("ca_file", e.to_string()))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOrPinned { chain, pinned }))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// System roots plus the `ca_file`'s certificates, and those certificates again as pins.
fn roots(
    settings: &XmppSettings,
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), SettingsError> {
    let mut pinned = Vec::new();
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!("xmpp: skipping a system root certificate: {error}");
    }
    let (_, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!("xmpp: {ignored} system root certificates did not parse");
    }
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| SettingsError::new("ca_file", format!("{}: {e}", path.display())))?;
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| SettingsError::new("ca_file", format!("{}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(SettingsError::new(
                "ca_file",
                format!("{}: no PEM certificate in it", path.display()),
            ));
        }
        for cert in certs {
            pinned.push(cert.clone());
            roots
                .add(cert)
                .map_err(|e| SettingsError::new("ca_file", format!("{}: {e}", path.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(SettingsError::new(
            "ca_file",
            "no system root certificates found; give a ca_file",
        ));
    }
    Ok((roots, pinned))
}

/// The usual chain check against the roots; failing that, a server certificate that is
/// byte for byte one of the `ca_file`'s is trusted if it names the server. A self-signed
/// certificate made by `openssl req -x509` has CA:TRUE, which the chain check refuses as
/// an end entity (`CaUsedAsEndEntity`); small XMPP servers often have exactly that, and
/// pointing `ca_file` at it is the operator saying "this one".
#[derive(Debug)]
struct ChainOrPinned {
    chain: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for ChainOrPinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        let refused = match self.chain.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(ok) => return Ok(ok),
            Err(e) => e,
        };
        if !self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return Err(refused);
        }
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| refused.clone())?;
        cert.verify_is_valid_for_subject_name(server_name)
            .map_err(|_| {
                tokio_rustls::rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
            })?;
        Ok(ServerCertVerified::assertion())
    }

    // Handshake signatures are checked exactly as the chain verifier checks them.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// `insecure = true`: signatures are still checked (the handshake needs them to be
/// consistent), the certificate chain and name are not.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        crypto::verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        crypto::verify_tls13_signature(
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
    use super::*;
    use bridge_api::parse_settings;

    fn settings(v: serde_json::Value) -> XmppSettings {
        parse_settings(v).unwrap()
    }

    #[test]
    fn unreadable_or_empty_ca_file_is_a_settings_error() {
        let s = settings(serde_json::json!({"domains": ["x"], "ca_file": "/nonexistent/ca.pem"}));
        assert_eq!(client_config(&s).err().unwrap().path, "ca_file");
        let dir = std::env::temp_dir().join(format!("xmpp-ca-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate\n").unwrap();
        let s = settings(serde_json::json!({"domains": ["x"], "ca_file": dir}));
        let err = client_config(&s).err().unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(err.path, "ca_file");
        assert!(err.message.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn insecure_builds_without_roots() {
        let s = settings(serde_json::json!({"domains": ["x"], "insecure": true}));
        assert!(client_config(&s).is_ok());
    }

    #[test]
    fn server_names() {
        assert!(server_name("xmpp.example.org").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("not valid!").is_err());
    }
}
