//! A list of networks read on every connection and replaceable while running (a reload
//! swaps it; connections already past the check keep what they saw).

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use ipnet::IpNet;

#[derive(Debug, Default)]
pub struct SharedNets(RwLock<Arc<[IpNet]>>);

impl SharedNets {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let nets = self.0.read().unwrap_or_else(|p| p.into_inner());
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        nets.iter().any(|n| n.contains(&ip))
    }

    pub fn replace(&self, nets: Vec<IpNet>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = nets.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_and_replace() {
        let nets = SharedNets::default();
        assert!(!nets.contains("10.1.2.3".parse().unwrap()));
        nets.replace(vec!["10.0.0.0/8".parse().unwrap()]);
        assert!(nets.contains("10.1.2.3".parse().unwrap()));
        assert!(nets.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!nets.contains("127.0.0.1".parse().unwrap()));
        nets.replace(vec!["127.0.0.1/32".parse().unwrap()]);
        assert!(nets.contains("127.0.0.1".parse().unwrap()));
        assert!(!nets.contains("10.1.2.3".parse().unwrap()));
    }
}
