//! RFC 7692 section 5 and 7.1: pick the first `permessage-deflate` offer the service can
//! honour and word the response. An offer it cannot honour (unknown or repeated parameter,
//! a bad value) is skipped, and with none left the handshake goes on uncompressed: a bad
//! offer never fails the handshake.

use http::{header, HeaderMap};

use super::config::{CompressionConfig, CompressorMode};

/// What both sides agreed for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreed {
    /// The server compresses each message on its own (the shared compressor).
    pub server_no_context_takeover: bool,
    /// The client compresses each message on its own (no decompressor kept between them).
    pub client_no_context_takeover: bool,
    /// The window the server compresses with, 9 to 15.
    pub server_window_bits: u8,
    /// The window the decompressor needs, 9 to 15 (8 decodes with 9).
    pub client_window_bits: u8,
    pub level: u32,
    pub min_size: usize,
    /// The `Sec-WebSocket-Extensions` value of the 101 response.
    pub response: String,
}

#[derive(Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

fn window_bits(value: Option<&str>) -> Option<u8> {
    let v = value?.trim_matches('"');
    // RFC 7692 7.1.2: 1*DIGIT without leading zeros, 8 to 15.
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = v.parse().ok()?;
    (8..=15).contains(&bits).then_some(bits)
}

/// One offer's parameters, or `None` when the offer cannot be accepted as written.
fn parse_offer<'a>(params: impl Iterator<Item = &'a str>) -> Option<Offer> {
    let mut offer = Offer::default();
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (param.trim(), None),
        };
        match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover"
                if value.is_none() && !offer.server_no_context_takeover =>
            {
                offer.server_no_context_takeover = true
            }
            "client_no_context_takeover"
                if value.is_none() && !offer.client_no_context_takeover =>
            {
                offer.client_no_context_takeover = true
            }
            "server_max_window_bits" if offer.server_max_window_bits.is_none() => {
                offer.server_max_window_bits = Some(window_bits(value)?)
            }
            "client_max_window_bits" if offer.client_max_window_bits.is_none() => {
                offer.client_max_window_bits = Some(match value {
                    None => None,
                    Some(_) => Some(window_bits(value)?),
                })
            }
            _ => return None,
        }
    }
    Some(offer)
}

fn accept(offer: &Offer, cfg: &CompressionConfig) -> Agreed {
    let mut response = String::from("permessage-deflate");
    let server_no_context_takeover =
        offer.server_no_context_takeover || cfg.mode == CompressorMode::Shared;
    if server_no_context_takeover {
        response.push_str("; server_no_context_takeover");
    }
    let client_no_context_takeover =
        offer.client_no_context_takeover || cfg.client_no_context_takeover;
    if client_no_context_takeover {
        response.push_str("; client_no_context_takeover");
    }
    let server_bits = cfg
        .server_max_window_bits
        .min(offer.server_max_window_bits.unwrap_or(15));
    if offer.server_max_window_bits.is_some() || server_bits < 15 {
        response.push_str(&format!("; server_max_window_bits={server_bits}"));
    }
    // Only a client that offered client_max_window_bits may be told a window; any other
    // compresses with up to 15 bits, which the decompressor must then allow.
    let client_bits = match offer.client_max_window_bits {
        Some(offered) => {
            let bits = cfg.client_max_window_bits.min(offered.unwrap_or(15));
            if bits < 15 {
                response.push_str(&format!("; client_max_window_bits={bits}"));
            }
            bits
        }
        None => 15,
    };
    Agreed {
        server_no_context_takeover,
        client_no_context_takeover,
        // zlib has no 256-byte window; with 512 bytes its matches reach at most 250 back.
        server_window_bits: server_bits.max(9),
        client_window_bits: client_bits.max(9),
        level: cfg.level,
        min_size: cfg.min_size,
        response,
    }
}

/// The agreement for a handshake's `Sec-WebSocket-Extensions`, if any offer can be taken.
pub fn negotiate(headers: &HeaderMap, cfg: &CompressionConfig) -> Option<Agreed> {
    if !cfg.enabled {
        return None;
    }
    headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|ext| {
            let mut parts = ext.split(';');
            let name = parts.next()?.trim();
            if !name.eq_ignore_ascii_case("permessage-deflate") {
                return None;
            }
            parse_offer(parts.filter(|p| !p.trim().is_empty()))
        })
        .map(|offer| accept(&offer, cfg))
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::config::CompressorMode;

    fn cfg(mode: CompressorMode) -> CompressionConfig {
        serde_json::from_value(serde_json::json!({ "mode": mode })).unwrap()
    }

    fn offer(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append(header::SEC_WEBSOCKET_EXTENSIONS, value.parse().unwrap());
        h
    }

    #[test]
    fn shared_mode_always_answers_without_server_context() {
        let a = negotiate(
            &offer("permessage-deflate; client_max_window_bits"),
            &cfg(CompressorMode::Shared),
        )
        .unwrap();
        assert_eq!(
            a.response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert!(a.server_no_context_takeover && a.client_no_context_takeover);
        assert_eq!((a.server_window_bits, a.client_window_bits), (15, 15));
    }

    #[test]
    fn dedicated_mode_keeps_context_unless_asked() {
        let mut c = cfg(CompressorMode::Dedicated);
        c.client_no_context_takeover = false;
        let a = negotiate(&offer("permessage-deflate"), &c).unwrap();
        assert_eq!(a.response, "permessage-deflate");
        let a = negotiate(&offer("permessage-deflate; server_no_context_takeover"), &c).unwrap();
        assert!(a.server_no_context_takeover);
    }

    #[test]
    fn windows_take_the_smaller_and_eight_compresses_with_nine() {
        let mut c = cfg(CompressorMode::Dedicated);
        c.client_max_window_bits = 10;
        c.client_no_context_takeover = false;
        let a = negotiate(
            &offer("permessage-deflate; server_max_window_bits=8; client_max_window_bits=12"),
            &c,
        )
        .unwrap();
        assert_eq!(
            a.response,
            "permessage-deflate; server_max_window_bits=8; client_max_window_bits=10"
        );
        assert_eq!((a.server_window_bits, a.client_window_bits), (9, 10));
    }

    #[test]
    fn a_bad_offer_is_skipped_for_the_next() {
        let c = cfg(CompressorMode::Shared);
        let h = offer(
            "permessage-deflate; server_max_window_bits=16, permessage-deflate; x=1, \
             permessage-deflate; client_no_context_takeover",
        );
        let a = negotiate(&h, &c).unwrap();
        assert!(a.client_no_context_takeover);
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover=1",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(negotiate(&offer(bad), &c), None, "{bad}");
        }
    }

    #[test]
    fn disabled_answers_nothing() {
        let mut c = cfg(CompressorMode::Shared);
        c.enabled = false;
        assert_eq!(negotiate(&offer("permessage-deflate"), &c), None);
    }
}
