//! The static directory served at `/`: files from disk when configured, else the demo pages
//! built into the binary (so the default command needs nothing beside it).

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use include_dir::{include_dir, Dir};

use crate::response::{full, text, Body};

static DEMO: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/static");

pub enum StaticFiles {
    Embedded,
    Disk(PathBuf),
}

/// The request path as a relative file path, or `None` if it tries to leave the root.
fn relative_path(url_path: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(url_path)
        .decode_utf8()
        .ok()?;
    let mut rel = PathBuf::new();
    for comp in Path::new(decoded.trim_start_matches('/')).components() {
        match comp {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if decoded.ends_with('/') || rel.as_os_str().is_empty() {
        rel.push("index.html");
    }
    Some(rel)
}

impl StaticFiles {
    pub async fn serve(&self, url_path: &str, head_only: bool) -> Response<Body> {
        let Some(rel) = relative_path(url_path) else {
            return text(StatusCode::BAD_REQUEST, "bad path\n");
        };
        let content = match self {
            StaticFiles::Embedded => DEMO
                .get_file(&rel)
                .or_else(|| DEMO.get_file(rel.join("index.html")))
                .map(|f| Bytes::from_static(f.contents())),
            StaticFiles::Disk(root) => {
                let mut full = root.join(&rel);
                if tokio::fs::metadata(&full).await.is_ok_and(|m| m.is_dir()) {
                    full.push("index.html");
                }
                tokio::fs::read(&full).await.ok().map(Bytes::from)
            }
        };
        let Some(content) = content else {
            return text(StatusCode::NOT_FOUND, "not found\n");
        };
        let mime = mime_guess::from_path(&rel).first_or_octet_stream();
        let len = content.len();
        let mut resp = Response::new(full(if head_only { Bytes::new() } else { content }));
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
            h.insert(http::header::CONTENT_TYPE, v);
        }
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        h.insert(
            http::header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_escape_the_root() {
        assert_eq!(relative_path("/"), Some(PathBuf::from("index.html")));
        assert_eq!(relative_path("/a/b.js"), Some(PathBuf::from("a/b.js")));
        assert_eq!(relative_path("/a/"), Some(PathBuf::from("a/index.html")));
        assert_eq!(relative_path("/../etc/passwd"), None);
        assert_eq!(relative_path("/a/%2e%2e/%2e%2e/x"), None);
    }

    #[tokio::test]
    async fn embedded_index_is_served() {
        let resp = StaticFiles::Embedded.serve("/", false).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()[http::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let missing = StaticFiles::Embedded.serve("/nope.txt", false).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }
}
