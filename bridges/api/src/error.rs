use std::fmt;

use crate::EndKind;

/// Which side of the gateway failed (cf. pingora's `ErrorSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client sent something wrong or broke a rule.
    Client,
    /// The backend server failed, refused or went away.
    Backend,
    /// A fault in the gateway itself.
    Internal,
}

impl ErrorSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorSource::Client => "client",
            ErrorSource::Backend => "backend",
            ErrorSource::Internal => "internal",
        }
    }
}

/// Why a session ended badly. The transport tells the client its [`EndKind`].
#[derive(Debug)]
pub struct BridgeError {
    source: ErrorSource,
    message: String,
    end: Option<EndKind>,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BridgeError {
    pub fn new(source: ErrorSource, message: impl Into<String>) -> Self {
        BridgeError {
            source,
            message: message.into(),
            end: None,
            cause: None,
        }
    }

    pub fn client(message: impl Into<String>) -> Self {
        Self::new(ErrorSource::Client, message)
    }

    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(ErrorSource::Backend, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorSource::Internal, message)
    }

    /// End the session this way rather than the default for the failing side.
    pub fn with_end(mut self, kind: EndKind) -> Self {
        self.end = Some(kind);
        self
    }

    pub fn with_cause(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Box::new(cause));
        self
    }

    pub fn source_side(&self) -> ErrorSource {
        self.source
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// How the session ends for the client: what the bridge chose, else by side.
    pub fn end_kind(&self) -> EndKind {
        self.end.unwrap_or(match self.source {
            ErrorSource::Client => EndKind::PolicyViolation,
            ErrorSource::Backend => EndKind::BackendFailed,
            ErrorSource::Internal => EndKind::Internal,
        })
    }
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.source.as_str(), self.message)?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BridgeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_by_side_unless_chosen() {
        assert_eq!(
            BridgeError::client("x").end_kind(),
            EndKind::PolicyViolation
        );
        assert_eq!(BridgeError::backend("x").end_kind(), EndKind::BackendFailed);
        assert_eq!(BridgeError::internal("x").end_kind(), EndKind::Internal);
        let chosen = BridgeError::client("x").with_end(EndKind::UnsupportedData);
        assert_eq!(chosen.end_kind(), EndKind::UnsupportedData);
    }
}
