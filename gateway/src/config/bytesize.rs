//! Byte counts in the configuration: a plain integer (`1048576`) or a number with a unit
//! (`"1 MiB"`, `"256KiB"`, `"64 KB"`, `"512B"`). Written back as an integer.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// `"256 KiB"` → 262144. Units: B, KB/MB/GB (powers of 1000), KiB/MiB/GiB (powers of 1024),
/// case-insensitive; a bare number is bytes.
pub fn parse(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("`{text}` is not a byte size (e.g. 1048576, \"1 MiB\", \"256 KiB\")")
    })?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" | "k" => 1024,
        "mib" | "m" => 1024 * 1024,
        "gib" | "g" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown byte unit `{other}` in `{text}` (B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    n.checked_mul(factor)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| format!("`{text}` is too large"))
}

struct ByteSize;

impl Visitor<'_> for ByteSize {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a byte size: an integer or a string such as \"1 MiB\"")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
        usize::try_from(v).map_err(|_| E::custom("byte size too large"))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
        usize::try_from(v).map_err(|_| E::custom(format!("byte size {v} is negative")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        parse(v).map_err(E::custom)
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    d.deserialize_any(ByteSize)
}

pub fn serialize<S: Serializer>(v: &usize, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(*v as u64)
}

/// The same for an optional value (unset: a default computed elsewhere).
pub mod option {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(deserialize_with = "super::deserialize")] usize);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }

    pub fn serialize<S: Serializer>(v: &Option<usize>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_u64(*v as u64),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn units() {
        assert_eq!(parse("1048576"), Ok(1 << 20));
        assert_eq!(parse("1 MiB"), Ok(1 << 20));
        assert_eq!(parse("256KiB"), Ok(256 * 1024));
        assert_eq!(parse("64 kb"), Ok(64_000));
        assert_eq!(parse("512B"), Ok(512));
        assert!(parse("lots").is_err());
        assert!(parse("1 parsec").is_err());
        assert!(parse("-1").is_err());
    }
}
