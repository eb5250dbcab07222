//! The level filter: which spec is in force and whether a configured one is sound.

use tracing_subscriber::EnvFilter;

use super::LogError;

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// `RUST_LOG` when set and not blank, else the configured spec; lapin's own logging off
/// unless the spec names it. lapin logs every lost broker connection and every refused
/// declare at ERROR level; the bridges log those themselves, with their context, at the
/// level an expected outage deserves (and a refusal is the client's error, not ours).
pub fn log_spec(rust_log: Option<&str>, configured: &str) -> String {
    let spec = rust_log
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(configured);
    if spec.contains("lapin") {
        spec.to_string()
    } else {
        format!("{spec},lapin=off")
    }
}

/// The filter for `spec`; blanks around directives are allowed (`EnvFilter` refuses them).
pub fn build(spec: &str) -> Result<EnvFilter, LogError> {
    EnvFilter::builder()
        .parse(directives(spec).collect::<Vec<_>>().join(","))
        .map_err(|e| LogError::level(spec, e.to_string()))
}

/// A configured `log.level`: what `EnvFilter` accepts, minus what it accepts by accident.
/// A bare word that is not a level (`debg`) parses as "everything from target `debg`",
/// which silently turns the rest of the log off; a target alone must say `target=level`.
pub fn check_level(spec: &str) -> Result<(), LogError> {
    if directives(spec).next().is_none() {
        return Err(LogError::level(
            spec,
            format!("empty; use one of {}", LEVELS.join(", ")),
        ));
    }
    for directive in directives(spec) {
        let bare = !directive.contains(['=', '[']);
        if bare
            && !LEVELS.contains(&directive.to_ascii_lowercase().as_str())
            && !directive.contains("::")
        {
            return Err(LogError::level(
                spec,
                format!(
                    "`{directive}` is not a level ({}); a target needs one: `{directive}=debug`",
                    LEVELS.join(", ")
                ),
            ));
        }
    }
    build(spec).map(|_| ())
}

/// The comma-separated directives, as `EnvFilter` splits them.
fn directives(spec: &str) -> impl Iterator<Item = &str> {
    spec.split(',').map(str::trim).filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_wins_when_set_and_lapin_stays_quiet_unless_asked_for() {
        assert_eq!(log_spec(None, "info"), "info,lapin=off");
        assert_eq!(log_spec(Some(" "), "warn"), "warn,lapin=off");
        assert_eq!(log_spec(Some("debug"), "warn"), "debug,lapin=off");
        assert_eq!(log_spec(None, "info,lapin=debug"), "info,lapin=debug");
        assert_eq!(
            log_spec(Some("info,lapin=debug"), "warn"),
            "info,lapin=debug"
        );
        assert!(build(&log_spec(None, "warn")).is_ok());
    }

    #[test]
    fn levels_and_target_rules_are_accepted() {
        for ok in [
            "info",
            "WARN",
            "off",
            "warn,bridge_stomp=debug",
            "gateway::transport",
            "info,gateway[session{service=chat}]=debug",
            " debug , hyper=warn ",
        ] {
            assert!(check_level(ok).is_ok(), "{ok}: {:?}", check_level(ok));
        }
    }

    #[test]
    fn typos_are_refused_with_the_reason() {
        let err = check_level("debg").unwrap_err().to_string();
        assert!(err.contains("`debg` is not a level"), "{err}");
        assert!(err.contains("debg=debug"), "{err}");
        let err = check_level("info,lapin").unwrap_err().to_string();
        assert!(err.contains("`lapin`"), "{err}");
        let err = check_level("bridge_stomp=loud").unwrap_err().to_string();
        assert!(err.contains("bridge_stomp=loud"), "{err}");
        for empty in ["", " ", " , "] {
            let err = check_level(empty).unwrap_err().to_string();
            assert!(err.contains("empty"), "{err}");
        }
    }
}
