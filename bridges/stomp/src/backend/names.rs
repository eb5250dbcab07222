//! What this gateway calls the queues it creates on a broker that other gateways share.
//!
//! Every name starts with the gateway's node name (`server.node`), so an operator listing
//! the broker's queues sees whose each is, and with a random part drawn when the backend is
//! built: two processes configured with the same node (a restart while the old process's
//! exclusive queues still exist, a copied configuration, a reload's new bridge beside the
//! old one) never reuse each other's names.

use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct BrokerNames {
    /// `<node>.<12 hex digits>`.
    owner: Arc<str>,
}

impl BrokerNames {
    pub fn new(node: &str) -> BrokerNames {
        BrokerNames::with_random(node, random48())
    }

    pub fn with_random(node: &str, random: u64) -> BrokerNames {
        BrokerNames {
            owner: format!("{node}.{:012x}", random & 0xffff_ffff_ffff).into(),
        }
    }

    /// `<node>.<random>`: this backend among all gateways' on the broker.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The broker queue behind one session's `/temp-queue/NAME`, under `prefix`
    /// (`stomp-gw` on RabbitMQ, `gateway-tmp` on STOMP brokers).
    pub fn temp_queue(&self, prefix: &str, session: u64, name: &str) -> String {
        format!("{prefix}.{}.{session}.{name}", self.owner)
    }

    /// The broker queue of shared upstream topic subscription number `n`.
    pub fn topic_queue(&self, prefix: &str, n: u64) -> String {
        format!("{prefix}.{}.topic.{n}", self.owner)
    }
}

fn random48() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness (never seen on Linux): the clock and pid still differ per process.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        return nanos ^ (u64::from(std::process::id()) << 32);
    }
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_node_and_a_random_part() {
        let n = BrokerNames::with_random("gw-a", 0xabc);
        assert_eq!(n.owner(), "gw-a.000000000abc");
        assert_eq!(
            n.temp_queue("stomp-gw", 7, "replies"),
            "stomp-gw.gw-a.000000000abc.7.replies"
        );
        assert_eq!(
            n.topic_queue("stomp-gw", 3),
            "stomp-gw.gw-a.000000000abc.topic.3"
        );
    }

    #[test]
    fn two_processes_with_one_node_name_do_not_collide() {
        let (a, b) = (BrokerNames::new("gw-a"), BrokerNames::new("gw-a"));
        assert_ne!(a.owner(), b.owner());
        assert_ne!(a.temp_queue("t", 1, "x"), b.temp_queue("t", 1, "x"));
        assert!(a.owner().starts_with("gw-a.") && a.owner().len() == "gw-a.".len() + 12);
    }

    #[test]
    fn two_gateways_do_not_collide() {
        let (a, c) = (
            BrokerNames::with_random("gw-a", 1),
            BrokerNames::with_random("gw-c", 1),
        );
        assert_ne!(a.topic_queue("q", 1), c.topic_queue("q", 1));
        assert_ne!(a.temp_queue("q", 1, "r"), c.temp_queue("q", 1, "r"));
    }
}
