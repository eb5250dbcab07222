//! Why a STOMP session ends with an ERROR frame.

use bridge_api::{BridgeError, EndKind, ErrorSource};

/// An ERROR frame to send, then the end of the session. `reason` labels the metric;
/// `message` is the frame's `message` header; `detail` its body; `receipt` the `receipt`
/// header of the frame that failed, which the ERROR names.
#[derive(Debug)]
pub struct StompError {
    pub reason: &'static str,
    pub message: String,
    pub detail: String,
    pub end: EndKind,
    pub receipt: Option<String>,
}

impl StompError {
    pub fn protocol(
        reason: &'static str,
        message: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        StompError {
            reason,
            message: message.into(),
            detail: detail.into(),
            end: EndKind::ProtocolError,
            receipt: None,
        }
    }

    pub fn policy(
        reason: &'static str,
        message: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        StompError {
            reason,
            message: message.into(),
            detail: detail.into(),
            end: EndKind::PolicyViolation,
            receipt: None,
        }
    }

    /// The gateway has too many password checks under way: not the client's fault, and
    /// the same CONNECT may succeed in a moment.
    pub fn login_busy() -> Self {
        StompError {
            reason: "login_busy",
            message: "login busy".into(),
            detail: "The gateway is checking too many logins at once; try again shortly.".into(),
            end: EndKind::TryAgainLater,
            receipt: None,
        }
    }

    pub fn backend(message: impl Into<String>) -> Self {
        let message = message.into();
        StompError {
            reason: "backend",
            detail: format!("The broker behind the gateway failed: {message}"),
            message,
            end: EndKind::BackendFailed,
            receipt: None,
        }
    }
}

impl StompError {
    pub fn with_receipt(mut self, receipt: Option<String>) -> Self {
        self.receipt = receipt;
        self
    }

    /// Whose fault it was: a broken or forbidden frame is the client's, a failed broker
    /// the backend's.
    pub fn source(&self) -> ErrorSource {
        match self.end {
            EndKind::BackendFailed => ErrorSource::Backend,
            EndKind::Internal | EndKind::TryAgainLater => ErrorSource::Internal,
            _ => ErrorSource::Client,
        }
    }
}

/// The session's result once its ERROR frame is out: the transport closes with `end`.
impl From<StompError> for BridgeError {
    fn from(e: StompError) -> Self {
        let source = e.source();
        BridgeError::new(source, e.message).with_end(e.end)
    }
}

/// A broker that refused is the client's business (a policy ERROR); one that failed is ours.
impl From<crate::backend::BackendError> for StompError {
    fn from(e: crate::backend::BackendError) -> Self {
        match e.kind {
            crate::backend::BackendErrorKind::Refused => {
                StompError::policy("backend_refused", e.message.clone(), e.message)
            }
            crate::backend::BackendErrorKind::Unavailable => StompError::backend(e.message),
        }
    }
}

pub type FrameResult = Result<(), StompError>;
