use std::fmt;

use crate::close_code;

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

/// Why a session ended badly. The transport turns it into a close code the client sees.
#[derive(Debug)]
pub struct BridgeError {
    source: ErrorSource,
    message: String,
    close_code: Option<u16>,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BridgeError {
    pub fn new(source: ErrorSource, message: impl Into<String>) -> Self {
        BridgeError {
            source,
            message: message.into(),
            close_code: None,
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

    pub fn with_close_code(mut self, code: u16) -> Self {
        self.close_code = Some(code);
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

    /// The close code the client gets: explicit if the bridge chose one, else by side.
    pub fn close_code(&self) -> u16 {
        self.close_code.unwrap_or(match self.source {
            ErrorSource::Client => close_code::POLICY_VIOLATION,
            ErrorSource::Backend => close_code::BAD_GATEWAY,
            ErrorSource::Internal => close_code::INTERNAL_ERROR,
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
