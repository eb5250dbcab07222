//! Why the service table could not be built. Each error names its configuration key, so an
//! operator finds the line to fix.

use crate::origin::OriginError;

#[derive(Debug, thiserror::Error)]
#[error("{at}: {kind}")]
pub struct ServiceError {
    /// The configuration key, e.g. `service[0].bridge` or `service[1].settings.target`.
    pub at: String,
    pub kind: ServiceErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceErrorKind {
    #[error("duplicate service name `{0}`")]
    DuplicateName(String),
    #[error("`{0}` must start with /")]
    RelativePath(String),
    #[error("unknown bridge `{bridge}` (known: {})", .known.join(", "))]
    UnknownBridge {
        bridge: String,
        known: Vec<&'static str>,
    },
    /// The bridge's own message about its settings.
    #[error("{0}")]
    Settings(String),
    #[error(transparent)]
    Origin(#[from] OriginError),
}
