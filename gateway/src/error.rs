//! Why the gateway could not start (or `--check-config` refused a configuration). The text
//! names the configuration key at fault; it is what the operator sees on stderr.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::admin::MetricsError;
use crate::auth::AuthConfigError;
use crate::config::ConfigError;
use crate::services::ServiceError;
use crate::tls::TlsError;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("server.static_dir: {} is not a directory", .0.display())]
    StaticDir(PathBuf),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// `key` is `server.listen` or `admin.listen`.
    #[error("{key}: cannot bind {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("cannot print configuration: {0}")]
    Print(#[from] toml::ser::Error),
}
