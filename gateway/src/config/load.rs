use std::path::Path;

use config::{Config, Environment, File, FileFormat};

use super::GatewayConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {0}")]
    Source(#[from] config::ConfigError),
    #[error("configuration key `{key}`: {message}")]
    Key { key: String, message: String },
}

/// The file (if any), then `GATEWAY__SECTION__KEY` environment overrides, deserialized with
/// the path of the first bad key kept for the error message.
pub fn load(path: Option<&Path>) -> Result<GatewayConfig, ConfigError> {
    let mut builder = Config::builder();
    if let Some(path) = path {
        builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
    }
    builder = builder.add_source(
        Environment::with_prefix("GATEWAY")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("server.trusted_proxies")
            .with_list_parse_key("server.proxy_protocol"),
    );
    let merged = builder.build()?;
    serde_path_to_error::deserialize(merged).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Key {
            key: if key == "." { "(root)".into() } else { key },
            message: e.into_inner().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(toml: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(toml.as_bytes()).unwrap();
        f
    }

    #[test]
    fn unknown_key_is_named() {
        let f = write("[server]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n");
        let err = load(Some(f.path())).unwrap_err().to_string();
        assert!(err.contains("listne"), "{err}");
    }

    #[test]
    fn bad_value_names_its_key() {
        let f = write("[limits]\nidle_timeout = \"soon\"\n");
        let err = load(Some(f.path())).unwrap_err().to_string();
        assert!(err.contains("limits.idle_timeout"), "{err}");
    }

    #[test]
    fn socket_send_buffer_defaults_to_64_kib_and_0_turns_it_off() {
        let f = write("[server]\nlisten = \"127.0.0.1:1\"\n");
        assert_eq!(
            load(Some(f.path())).unwrap().limits.socket_send_buffer,
            65536
        );
        let f = write("[limits]\nsocket_send_buffer = 0\n");
        assert_eq!(load(Some(f.path())).unwrap().limits.socket_send_buffer, 0);
        let f = write("[limits]\nsocket_send_buffer = -1\n");
        let err = load(Some(f.path())).unwrap_err().to_string();
        assert!(err.contains("limits.socket_send_buffer"), "{err}");
    }

    #[test]
    fn proxy_protocol_and_handshake_rate() {
        let f = write(
            "[server]\nproxy_protocol = [\"10.0.0.0/8\", \"127.0.0.1/32\"]\n\
             [limits]\nhandshakes_per_ip_per_second = 5\nhandshake_burst_per_ip = 10\n",
        );
        let cfg = load(Some(f.path())).unwrap();
        assert_eq!(cfg.server.proxy_protocol.len(), 2);
        assert_eq!(cfg.limits.handshakes_per_ip_per_second, 5.0);
        cfg.limits.validate().unwrap();

        let f = write("[server]\nproxy_protocol = [\"10.0.0.300/8\"]\n");
        let err = load(Some(f.path())).unwrap_err().to_string();
        assert!(err.contains("server.proxy_protocol"), "{err}");

        let f = write("[limits]\nhandshakes_per_ip_per_second = 5\nhandshake_burst_per_ip = 0\n");
        let err = load(Some(f.path())).unwrap().limits.validate().unwrap_err();
        assert!(
            err.to_string().contains("limits.handshake_burst_per_ip"),
            "{err}"
        );
        let f = write("[limits]\nhandshakes_per_ip_per_second = -1\n");
        let err = load(Some(f.path())).unwrap().limits.validate().unwrap_err();
        assert!(
            err.to_string()
                .contains("limits.handshakes_per_ip_per_second"),
            "{err}"
        );

        let defaults = load(None).unwrap();
        assert!(defaults.server.proxy_protocol.is_empty());
        assert_eq!(defaults.limits.handshakes_per_ip_per_second, 0.0);
    }

    #[test]
    fn services_and_settings_parse() {
        let f = write(
            "[[service]]\nname = \"irc\"\npath = \"/tcp\"\nbridge = \"tcp\"\n\
             [service.settings]\ntarget = \"127.0.0.1:6667\"\n",
        );
        let cfg = load(Some(f.path())).unwrap();
        assert_eq!(cfg.services.len(), 1);
        assert_eq!(cfg.services[0].settings["target"], "127.0.0.1:6667");
    }
}
