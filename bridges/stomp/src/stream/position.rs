//! A place in a stream: `<epoch>-<seq>`. The epoch (hex) names one unbroken history; it
//! changes whenever history is lost (a restart, a lost upstream subscription), so a client
//! holding a position from before can tell it cannot resume from it.

use std::fmt;
use std::hash::{BuildHasher, Hasher};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub epoch: u64,
    pub seq: u64,
}

impl Position {
    /// Parse a `resume` header value.
    pub fn parse(raw: &str) -> Result<Position, String> {
        let bad = || {
            format!("resume {raw:?} is not a position (<epoch>-<seq>, as in the position header)")
        };
        let (epoch, seq) = raw.split_once('-').ok_or_else(bad)?;
        if epoch.is_empty() || epoch.len() > 16 || seq.is_empty() || seq.len() > 20 {
            return Err(bad());
        }
        Ok(Position {
            epoch: u64::from_str_radix(epoch, 16).map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}-{}", self.epoch, self.seq)
    }
}

/// A fresh epoch: random (std's per-process hash keys are), never 0, 48 bits so it stays
/// short in every MESSAGE.
pub fn new_epoch(previous: u64) -> u64 {
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(previous);
        let e = h.finish() & 0xffff_ffff_ffff;
        if e != 0 && e != previous {
            return e;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let p = Position {
            epoch: 0x3fa9c2,
            seq: 1024,
        };
        assert_eq!(p.to_string(), "3fa9c2-1024");
        assert_eq!(Position::parse("3fa9c2-1024"), Ok(p));
        for bad in [
            "",
            "-",
            "12",
            "x-1",
            "1-",
            "-1",
            "1-x",
            "1--2",
            "1-2-3",
            "11111111111111111-1",
        ] {
            assert!(Position::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn epochs_differ() {
        let a = new_epoch(0);
        let b = new_epoch(a);
        assert_ne!(a, b);
        assert!(a != 0 && a <= 0xffff_ffff_ffff);
    }
}
