//! Spreading connections: over worker processes (each has its own open-file limit) and over
//! loopback source addresses (each gives one ephemeral-port range towards the server's port).
//!
//! Connection `g` of `total` (0-based) belongs to worker `g % processes` and leaves from
//! source address `g % sources`, so both spreads stay within one of even.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

/// First source address used when spreading: 127.0.0.2, 127.0.0.3, ...
/// (127.0.0.1 is left to everything else on the machine.)
pub const FIRST_SOURCE_OCTET: u32 = 2;

/// How one run's connections are divided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub total: usize,
    pub processes: usize,
    /// 0: connect from whatever address the kernel picks (no bind).
    pub sources: usize,
}

/// One connection a worker opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Index among all the run's connections.
    pub global: usize,
    /// Local address to bind before connecting, if spreading over sources.
    pub source: Option<IpAddr>,
}

impl Plan {
    /// How many connections worker `w` opens.
    pub fn share(&self, w: usize) -> usize {
        assert!(w < self.processes);
        self.total / self.processes + usize::from(w < self.total % self.processes)
    }

    /// The connections of worker `w`, in the order it should open them.
    pub fn slots(&self, w: usize) -> impl Iterator<Item = Slot> + '_ {
        assert!(w < self.processes);
        (w..self.total).step_by(self.processes).map(|g| Slot {
            global: g,
            source: self.source_for(g),
        })
    }

    pub fn source_for(&self, global: usize) -> Option<IpAddr> {
        if self.sources == 0 {
            None
        } else {
            Some(source_addr(global % self.sources))
        }
    }

    /// The largest number of connections any one source address carries.
    pub fn max_per_source(&self) -> usize {
        if self.sources == 0 {
            self.total
        } else {
            self.total.div_ceil(self.sources)
        }
    }
}

/// The `k`-th source address: 127.0.0.2 upwards through the 127/8 loopback block.
pub fn source_addr(k: usize) -> IpAddr {
    let n = u32::from(Ipv4Addr::new(127, 0, 0, 0)) + FIRST_SOURCE_OCTET + k as u32;
    IpAddr::V4(Ipv4Addr::from(n))
}

/// Source addresses needed so that no address carries more than ~90% of `ports_per_source`
/// connections to the one server port (every connection from one address needs its own
/// ephemeral port). Returns 0, "don't bind", when one address is enough.
pub fn auto_sources(total: usize, ports_per_source: usize) -> usize {
    let usable = (ports_per_source * 9 / 10).max(1);
    if total <= usable {
        0
    } else {
        total.div_ceil(usable)
    }
}

/// Size of the kernel's ephemeral port range, from `ip_local_port_range` text.
pub fn parse_port_range(text: &str) -> Option<usize> {
    let mut it = text.split_whitespace().map(|s| s.parse::<usize>());
    let (lo, hi) = (it.next()?.ok()?, it.next()?.ok()?);
    (hi >= lo).then(|| hi - lo + 1)
}

/// The machine's ephemeral port count (28,232 on a default Linux).
pub fn ephemeral_ports() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| parse_port_range(&t))
        .unwrap_or(28_232)
}

/// Whether binding source addresses makes sense for this server address: only towards
/// loopback, where every 127.x address is local.
pub fn can_spread_sources(server: &SocketAddr) -> bool {
    server.ip().is_loopback() && server.is_ipv4()
}

/// A TCP connection to `server`, from `source` when given; `kernel_buffer` fixes the
/// socket's send and receive buffer sizes (otherwise the kernel autotunes them).
pub async fn connect_tcp(
    server: SocketAddr,
    source: Option<IpAddr>,
    kernel_buffer: Option<u32>,
) -> io::Result<TcpStream> {
    let socket = if server.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    if let Some(size) = kernel_buffer {
        // The kernel doubles this and applies its own minimum.
        let _ = socket.set_recv_buffer_size(size);
        let _ = socket.set_send_buffer_size(size);
    }
    let stream = socket.connect(server).await?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashSet};

    #[test]
    fn every_connection_belongs_to_exactly_one_worker() {
        for (total, processes) in [(19_000, 4), (10, 3), (2, 5), (0, 2), (7, 1)] {
            let plan = Plan {
                total,
                processes,
                sources: 0,
            };
            let mut seen = HashSet::new();
            for w in 0..processes {
                let slots: Vec<_> = plan.slots(w).collect();
                assert_eq!(slots.len(), plan.share(w), "worker {w} of {plan:?}");
                for s in slots {
                    assert!(seen.insert(s.global), "{} twice", s.global);
                }
            }
            assert_eq!(seen.len(), total);
            let shares: Vec<_> = (0..processes).map(|w| plan.share(w)).collect();
            assert!(
                shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1,
                "{shares:?}"
            );
        }
    }

    #[test]
    fn sources_are_balanced_across_the_run_and_within_workers() {
        let plan = Plan {
            total: 60_001,
            processes: 4,
            sources: 3,
        };
        let mut per_source: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for w in 0..4 {
            let mut mine: BTreeMap<IpAddr, usize> = BTreeMap::new();
            for s in plan.slots(w) {
                *per_source.entry(s.source.unwrap()).or_default() += 1;
                *mine.entry(s.source.unwrap()).or_default() += 1;
            }
            // Each worker uses every source, roughly evenly.
            assert_eq!(mine.len(), 3);
            let (lo, hi) = (mine.values().min().unwrap(), mine.values().max().unwrap());
            assert!(hi - lo <= 1, "worker {w}: {mine:?}");
        }
        let counts: Vec<_> = per_source.values().copied().collect();
        assert_eq!(counts, vec![20_001, 20_000, 20_000]);
        assert_eq!(plan.max_per_source(), 20_001);
        let addrs: Vec<_> = per_source.keys().map(|a| a.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    }

    #[test]
    fn no_sources_means_no_bind() {
        let plan = Plan {
            total: 5,
            processes: 2,
            sources: 0,
        };
        assert!(plan.slots(1).all(|s| s.source.is_none()));
        assert_eq!(plan.max_per_source(), 5);
    }

    #[test]
    fn source_addresses_carry_into_the_next_octet() {
        assert_eq!(source_addr(0).to_string(), "127.0.0.2");
        assert_eq!(source_addr(253).to_string(), "127.0.0.255");
        assert_eq!(source_addr(254).to_string(), "127.0.1.0");
    }

    #[test]
    fn auto_sources_kicks_in_past_the_port_range() {
        let ports = 28_232; // Linux default 32768..=60999
        assert_eq!(auto_sources(19_000, ports), 0);
        assert_eq!(auto_sources(25_408, ports), 0);
        assert_eq!(auto_sources(25_409, ports), 2);
        assert_eq!(auto_sources(100_000, ports), 4);
        assert_eq!(auto_sources(1, 0), 0);
    }

    #[test]
    fn port_range_parsing() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some(28_232));
        assert_eq!(parse_port_range("1024 1024"), Some(1));
        assert_eq!(parse_port_range("9 3"), None);
        assert_eq!(parse_port_range("x"), None);
    }

    #[test]
    fn only_ipv4_loopback_targets_get_spread() {
        assert!(can_spread_sources(&"127.0.0.1:8080".parse().unwrap()));
        assert!(!can_spread_sources(&"[::1]:8080".parse().unwrap()));
        assert!(!can_spread_sources(&"10.0.0.1:8080".parse().unwrap()));
    }

    #[tokio::test]
    async fn connects_from_a_chosen_loopback_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let source = source_addr(5);
        let (client, accepted) = tokio::join!(
            connect_tcp(server, Some(source), Some(4096)),
            listener.accept()
        );
        let client = client.unwrap();
        let (_conn, peer) = accepted.unwrap();
        assert_eq!(client.local_addr().unwrap().ip(), source);
        assert_eq!(peer.ip(), source);
    }
}
