//! JSON answers of the admin API. Every error is `{"error": "..."}` saying what was wrong
//! and, where it helps, how to do it right.

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use serde::Serialize;

use crate::response::{full, Body};

pub fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_else(|e| {
        // Our own types always serialize; say so rather than panic if one ever does not.
        tracing::error!("admin API: cannot serialize a response: {e}");
        br#"{"error":"the gateway could not encode its answer"}"#.to_vec()
    });
    bytes.push(b'\n');
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Live state: a proxy or browser must not answer from a cache.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &ErrorBody { error: message })
}

pub fn bad_request(message: &str) -> Response<Body> {
    error(StatusCode::BAD_REQUEST, message)
}

pub fn not_found(message: &str) -> Response<Body> {
    error(StatusCode::NOT_FOUND, message)
}

/// An error answer not yet rendered: small enough to return in a `Result`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// `WWW-Authenticate` for a 401.
    challenge: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            challenge: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unauthorized(challenge: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            challenge: Some(challenge),
            ..Self::new(StatusCode::UNAUTHORIZED, message)
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let mut resp = error(self.status, &self.message);
        if let Some(c) = self.challenge {
            resp.headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        resp
    }
}
