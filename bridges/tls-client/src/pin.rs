//! `pin_sha256`: SHA-256 hashes of a certificate's SubjectPublicKeyInfo, written as HPKP
//! and curl's `--pinnedpubkey` write them (`sha256//` + base64, several joined by `;`), as
//! bare base64, or as hex (with or without `:` between bytes, as `openssl` prints them).

use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use serde::Deserialize;

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pin(pub [u8; 32]);

impl Pin {
    /// The pin of a DER SubjectPublicKeyInfo (outer SEQUENCE included).
    pub fn of_spki(spki: &[u8]) -> Pin {
        let digest = ring::digest::digest(&ring::digest::SHA256, spki);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Pin(out)
    }

    pub fn parse(raw: &str) -> Result<Pin, String> {
        let s = raw.trim();
        let body = s.strip_prefix("sha256//").unwrap_or(s);
        let hex: String = body.chars().filter(|c| *c != ':').collect();
        let bytes = if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|e| e.to_string())?
        } else {
            STANDARD
                .decode(body)
                .or_else(|_| STANDARD_NO_PAD.decode(body))
                .map_err(|_| {
                    format!(
                        "{raw:?} is not a SHA-256 pin: expected sha256//BASE64 (as curl's \
                         --pinnedpubkey), base64 or 64 hex digits"
                    )
                })?
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!(
                "{raw:?} is {} bytes, a SHA-256 pin is 32 (is it a hash of the key, not of \
                 the certificate or with another algorithm?)",
                b.len()
            )
        })?;
        Ok(Pin(bytes))
    }
}

/// In curl's form, so an error message can be pasted into the settings.
impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256//{}", STANDARD.encode(self.0))
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One string (curl's `sha256//A;sha256//B` included) or a list of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins(pub Vec<Pin>);

impl Pins {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, pin: &Pin) -> bool {
        self.0.contains(pin)
    }

    fn parse_all<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Pins, String> {
        let mut pins = Vec::new();
        for item in items {
            for part in item.split(';').filter(|p| !p.trim().is_empty()) {
                pins.push(Pin::parse(part)?);
            }
        }
        if pins.is_empty() {
            return Err("no pin given (leave pin_sha256 out instead)".into());
        }
        Ok(Pins(pins))
    }
}

impl<'de> Deserialize<'de> for Pins {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Pins, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let raw = Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a pin string (sha256//BASE64) or a list of them")
        })?;
        let parsed = match &raw {
            Raw::One(s) => Pins::parse_all([s.as_str()]),
            Raw::Many(v) => Pins::parse_all(v.iter().map(String::as_str)),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SHA-256 of "abc", a value whose forms are known independently of this code.
    const HEX: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const B64: &str = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";

    #[test]
    fn every_written_form_is_the_same_pin() {
        let want = Pin::parse(HEX).unwrap();
        let colons: Vec<String> = (0..32)
            .map(|i| HEX[2 * i..2 * i + 2].to_uppercase())
            .collect();
        for form in [
            format!("sha256//{B64}"),
            B64.to_string(),
            B64.trim_end_matches('=').to_string(),
            colons.join(":"),
            format!("  {HEX} "),
        ] {
            assert_eq!(Pin::parse(&form).unwrap(), want, "{form}");
        }
        assert_eq!(want.to_string(), format!("sha256//{B64}"));
        assert_eq!(Pin::of_spki(b"abc"), want);
    }

    #[test]
    fn curl_lists_and_toml_lists() {
        let one: Pins =
            serde_json::from_value(serde_json::json!(format!("sha256//{B64};sha256//{B64}")))
                .unwrap();
        assert_eq!(one.0.len(), 2);
        let many: Pins = serde_json::from_value(serde_json::json!([HEX, B64])).unwrap();
        assert_eq!(many.0.len(), 2);
    }

    #[test]
    fn wrong_pins_say_why() {
        let short = Pin::parse("sha256//AAAA").unwrap_err();
        assert!(short.contains("3 bytes"), "{short}");
        let junk = Pin::parse("sha256//not base64!").unwrap_err();
        assert!(junk.contains("--pinnedpubkey"), "{junk}");
        let e = serde_json::from_value::<Pins>(serde_json::json!("")).unwrap_err();
        assert!(e.to_string().contains("no pin"), "{e}");
        let e = serde_json::from_value::<Pins>(serde_json::json!(5)).unwrap_err();
        assert!(e.to_string().contains("pin string"), "{e}");
    }
}
