//! Whom the client trusts: the usual chain check, a `ca_file` certificate taken as it is,
//! and pinned keys.

use std::fmt;
use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore, SignatureScheme,
};

use crate::pin::{Pin, Pins};

#[derive(Debug)]
pub(crate) struct Verifier {
    /// System roots plus the `ca_file`; `None` when pins alone decide.
    pub chain: Option<Arc<WebPkiServerVerifier>>,
    /// The `ca_file`'s certificates, each trusted as a server certificate byte for byte.
    pub exact: Vec<CertificateDer<'static>>,
    pub pins: Pins,
    pub provider: Arc<CryptoProvider>,
}

/// The server showed no pinned key: says which key it did show, in the form
/// `pin_sha256` takes, so an operator can compare (it is public, not a secret).
pub(crate) struct PinMismatch {
    pub shown: Pin,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no certificate of the server's chain has a pinned key (pin_sha256); \
             the server's own key is {}",
            self.shown
        )
    }
}

// rustls prints a verifier's own error with `{:?}`.
impl fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for PinMismatch {}

fn bad_encoding() -> Error {
    Error::InvalidCertificate(CertificateError::BadEncoding)
}

fn check_name(cert: &webpki::EndEntityCert<'_>, name: &ServerName<'_>) -> Result<(), Error> {
    cert.verify_is_valid_for_subject_name(name)
        .map_err(|_| Error::InvalidCertificate(CertificateError::NotValidForName))
}

impl Verifier {
    /// A pinned leaf is trusted as it is (name checked); a pinned CA certificate in the
    /// chain is the trust anchor of an ordinary chain check, so a chain that merely
    /// carries a copy of the pinned certificate proves nothing.
    fn pinned(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<(), Error> {
        let leaf = webpki::EndEntityCert::try_from(end_entity).map_err(|_| bad_encoding())?;
        let shown = Pin::of_spki(&leaf.subject_public_key_info());
        if self.pins.contains(&shown) {
            return check_name(&leaf, server_name);
        }
        for (i, ca) in intermediates.iter().enumerate() {
            let Ok(parsed) = webpki::EndEntityCert::try_from(ca) else {
                continue;
            };
            if !self
                .pins
                .contains(&Pin::of_spki(&parsed.subject_public_key_info()))
            {
                continue;
            }
            let anchor = webpki::anchor_from_trusted_cert(ca)
                .map_err(|_| bad_encoding())?
                .to_owned();
            let roots = RootCertStore {
                roots: vec![anchor],
            };
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                    .build()
                    .map_err(|e| Error::General(e.to_string()))?;
            // Servers do not always send their chain in order: every other certificate
            // may be a step between the leaf and the anchor.
            let others: Vec<CertificateDer<'_>> = intermediates
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, c)| c.clone())
                .collect();
            verifier.verify_server_cert(end_entity, &others, server_name, ocsp_response, now)?;
            return Ok(());
        }
        Err(Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(PinMismatch { shown })),
        )))
    }

    /// The chain check against the roots; failing that, a server certificate that is byte
    /// for byte one of the `ca_file`'s is trusted if it names the server. A self-signed
    /// certificate made by `openssl req -x509` has CA:TRUE, which the chain check refuses
    /// as an end entity (`CaUsedAsEndEntity`): pointing `ca_file` at it is the operator
    /// saying "this one".
    fn chain_or_exact(
        &self,
        chain: &WebPkiServerVerifier,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<(), Error> {
        let refused = match chain.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if !self.exact.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            return Err(refused);
        }
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| refused)?;
        check_name(&cert, server_name)
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if !self.pins.is_empty() {
            self.pinned(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        if let Some(chain) = &self.chain {
            self.chain_or_exact(
                chain,
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    // Whatever decided the trust, the server must prove it holds the certificate's key:
    // rustls's own signature check, with the provider's algorithms.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `insecure = true`: signatures are still checked (the handshake needs them to be
/// consistent), the certificate chain and name are not.
#[derive(Debug)]
pub(crate) struct AcceptAnyCertificate(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
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
    ) -> Result<HandshakeSignatureValid, Error> {
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
