//! The demo price feed: a random walk per symbol, published to `/topic/prices.SYMBOL` on the
//! embedded broker, so the dashboard shows live prices with nothing else installed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bridge_api::Background;
use bytes::Bytes;
use protocol_stomp::Headers;

use crate::backend::embedded::EmbeddedBroker;
use crate::destination::Destination;
use crate::settings::DemoSettings;

/// xorshift64*: deterministic, dependency-free, plenty for simulated prices.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Publish made-up prices every `settings.interval` until the background's shutdown.
pub fn start(bg: &Background, broker: Arc<EmbeddedBroker>, settings: DemoSettings) {
    let shutdown = bg.shutdown().clone();
    bg.spawn(async move {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        let mut rng = Rng(seed);
        let mut prices: Vec<(String, f64)> = settings
            .symbols
            .iter()
            .map(|s| (s.clone(), 50.0 + rng.next_f64() * 450.0))
            .collect();
        let mut tick = tokio::time::interval(settings.interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            for (symbol, price) in prices.iter_mut() {
                let change = (rng.next_f64() - 0.5) * *price * 0.004;
                *price = (*price + change).max(1.0);
                let body = format!(
                    "{{\"symbol\":\"{symbol}\",\"price\":{:.2},\"change\":{:.2},\"ts\":{ts}}}",
                    price, change
                );
                let mut headers = Headers::new();
                headers.push("content-type", "application/json");
                headers.push("symbol", symbol.as_str());
                let dest = Destination::Topic(format!("prices.{symbol}"));
                let _ = broker.publish(&dest, &headers, Bytes::from(body));
            }
        }
    });
}
