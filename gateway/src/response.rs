//! The response body type and plain-text responses, shared by the public and admin listeners.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

pub type Body = Full<Bytes>;

/// A plain-text response: refusals always say why.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.into())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
