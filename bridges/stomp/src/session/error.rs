//! Why a STOMP session ends with an ERROR frame.

use bridge_api::close_code;

/// An ERROR frame to send, then close. `reason` labels the metric; `message` is the
/// frame's `message` header; `detail` its body.
#[derive(Debug)]
pub struct StompError {
    pub reason: &'static str,
    pub message: String,
    pub detail: String,
    pub close_code: u16,
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
            close_code: close_code::PROTOCOL_ERROR,
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
            close_code: close_code::POLICY_VIOLATION,
        }
    }

    pub fn backend(message: impl Into<String>) -> Self {
        let message = message.into();
        StompError {
            reason: "backend",
            detail: format!("The broker behind the gateway failed: {message}"),
            message,
            close_code: close_code::BAD_GATEWAY,
        }
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
