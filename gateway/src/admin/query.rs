//! `?a=1&b=x` as name/value pairs, percent-decoded (`+` is a space, as forms send it).

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// The pairs in order; an error names a part that is not UTF-8 once decoded.
pub fn pairs(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let Some(query) = query else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// One path segment or query part, percent-decoded.
pub fn decode(raw: &str) -> Result<String, String> {
    let spaced: Cow<'_, str> = if raw.contains('+') {
        raw.replace('+', " ").into()
    } else {
        raw.into()
    };
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| format!("`{raw}` is not UTF-8 once percent-decoded"))
}

/// A path segment: `+` stays a plus there.
pub fn decode_segment(raw: &str) -> Result<String, String> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| format!("`{raw}` is not UTF-8 once percent-decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_names_and_values() {
        let got = pairs(Some(
            "service=echo&principal=ann+lee&peer=10.0.0.0%2F8&&flag",
        ))
        .unwrap();
        assert_eq!(
            got,
            vec![
                ("service".into(), "echo".into()),
                ("principal".into(), "ann lee".into()),
                ("peer".into(), "10.0.0.0/8".into()),
                ("flag".into(), "".into()),
            ]
        );
        assert!(pairs(Some("x=%FF")).unwrap_err().contains("%FF"));
        assert_eq!(decode_segment("a+b%20c").unwrap(), "a+b c");
    }
}
