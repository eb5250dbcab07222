//! What an operator writes about one TLS client (a `[service.settings.tls]` table, or the
//! XMPP bridge's keys of the same names).

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::pin::Pins;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificates trusted in addition to the system roots. A server certificate that
    /// is itself in the file is trusted as it is (a self-signed one, CA:TRUE or not).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of the SubjectPublicKeyInfo of the server's certificate or of a CA
    /// certificate in its chain. Given alone, the pin is the trust (no CA check); with a
    /// `ca_file`, both must hold.
    #[serde(default)]
    pub pin_sha256: Pins,
    /// PEM certificate chain presented to a server that asks for one...
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// ...and its PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// The name sent (SNI) and checked in the certificate, instead of the URI's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Accept any server certificate. For development only; logged loudly.
    #[serde(default)]
    pub insecure: bool,
}

impl TlsSettings {
    /// Nothing set: system roots, the URI's host name, no client certificate.
    pub fn is_default(&self) -> bool {
        self.ca_file.is_none()
            && self.pin_sha256.is_empty()
            && self.client_cert.is_none()
            && self.client_key.is_none()
            && self.server_name.is_none()
            && !self.insecure
    }
}

/// A setting that cannot be used, with the key it is about (`ca_file`, `pin_sha256`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    pub key: &'static str,
    pub message: String,
}

impl TlsError {
    pub fn new(key: &'static str, message: impl Into<String>) -> TlsError {
        TlsError {
            key,
            message: message.into(),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for TlsError {}
