//! A refused session as an HTTP answer: the status, the reason as plain text, a
//! challenge when credentials were missing or wrong, and when to come back (after a rate
//! limit, or while too many logins are being checked).

use http::{header, HeaderValue, Response};

use crate::admission::Refusal;
use crate::response::{text, Body};

pub fn refusal_response(refusal: &Refusal) -> Response<Body> {
    let mut resp = text(refusal.status, format!("{}\n", refusal.reason));
    if refusal.challenge {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"gateway\", Bearer"),
        );
    }
    if let Some(secs) = refusal.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}
