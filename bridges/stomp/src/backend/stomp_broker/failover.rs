//! `failover:(stomp://h1:61613,stomp+ssl://h2:61614)?randomize=false`: ActiveMQ's failover
//! list for the STOMP-broker backend. The gateway connects to the first broker that
//! answers; when that connection is lost it tries the next one at once, and only after a
//! whole round of refusals does it back off (`initialReconnectDelay`, doubling up to
//! `maxReconnectDelay`). Which broker is in use is shared by the service's connections, so
//! every session of the service talks to the broker its shared topic subscriptions are on.
//!
//! `randomize` is off by default, unlike ActiveMQ's clients: a gateway is one client with a
//! few connections, and the order the operator wrote (primary first) is the order it
//! tries; `randomize=true` shuffles each round, to spread gateways over a network of brokers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::uri::{parse_uri, Endpoint};

const DEFAULT_INITIAL_DELAY: Duration = Duration::from_millis(250);
const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(10);
/// More members than any real failover list; keeps one round's attempts bounded.
const MAX_MEMBERS: usize = 16;

/// The brokers of a `backend` setting, one for a plain `stomp://` URI.
#[derive(Clone, Debug)]
pub struct Brokers {
    pub members: Vec<Endpoint>,
    pub randomize: bool,
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

impl Brokers {
    pub fn single(endpoint: Endpoint) -> Brokers {
        Brokers {
            members: vec![endpoint],
            randomize: false,
            initial_delay: DEFAULT_INITIAL_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
        }
    }

    /// Any member over TLS.
    pub fn secure(&self) -> bool {
        self.members.iter().any(|m| m.secure)
    }

    pub fn is_failover(&self) -> bool {
        self.members.len() > 1
    }
}

/// `stomp://...`, `stomp+ssl://...` or `failover:(URI,URI,...)?options` (the parentheses
/// may be left out, as ActiveMQ allows, when there are no options).
pub fn parse_brokers(raw: &str) -> Result<Brokers, String> {
    let Some(rest) = raw.strip_prefix("failover:") else {
        return parse_uri(raw).map(Brokers::single);
    };
    let example = "e.g. failover:(stomp://u:p@h1:61613,stomp://u:p@h2:61613)?randomize=false";
    let (list, query) = if let Some(inner) = rest.strip_prefix('(') {
        let (list, after) = inner
            .split_once(')')
            .ok_or_else(|| format!("unclosed ( in the failover list ({example})"))?;
        let query =
            match after {
                "" => None,
                q => Some(q.strip_prefix('?').ok_or_else(|| {
                    format!("unexpected {q:?} after the failover list ({example})")
                })?),
            };
        (list, query)
    } else {
        (rest, None)
    };
    let mut members = Vec::new();
    for (i, member) in list.split(',').map(str::trim).enumerate() {
        if member.is_empty() {
            return Err(format!("failover member {} is empty ({example})", i + 1));
        }
        members.push(parse_uri(member).map_err(|e| format!("failover member {}: {e}", i + 1))?);
    }
    if members.len() > MAX_MEMBERS {
        return Err(format!(
            "a failover list has at most {MAX_MEMBERS} brokers, not {}",
            members.len()
        ));
    }
    // As ActiveMQ's clients log in to each broker with one user: a member without one
    // takes the first login the list gives.
    if let Some(login) = members.iter().find_map(|m| m.login.clone()) {
        for m in members.iter_mut().filter(|m| m.login.is_none()) {
            m.login = Some(login.clone());
        }
    }
    let mut brokers = Brokers {
        members,
        randomize: false,
        initial_delay: DEFAULT_INITIAL_DELAY,
        max_delay: DEFAULT_MAX_DELAY,
    };
    for pair in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let ms = || {
            value
                .parse::<u64>()
                .ok()
                .filter(|v| *v > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    format!(
                        "failover option {key}: {value:?} is not a number of milliseconds above 0"
                    )
                })
        };
        match key {
            "randomize" => {
                brokers.randomize = match value {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(format!(
                            "failover option randomize: {value:?} is not true or false"
                        ))
                    }
                }
            }
            "initialReconnectDelay" => brokers.initial_delay = ms()?,
            "maxReconnectDelay" => brokers.max_delay = ms()?,
            _ => {
                return Err(format!(
                    "unknown failover option {key:?}: the gateway takes randomize, \
                     initialReconnectDelay and maxReconnectDelay (ms)"
                ))
            }
        }
    }
    if brokers.max_delay < brokers.initial_delay {
        return Err("failover option maxReconnectDelay is below initialReconnectDelay".into());
    }
    Ok(brokers)
}

/// Which broker of the list a service uses now, and the order to try the others in.
pub struct Rotation {
    brokers: Brokers,
    current: AtomicUsize,
}

impl Rotation {
    pub fn new(brokers: Brokers) -> Rotation {
        Rotation {
            brokers,
            current: AtomicUsize::new(0),
        }
    }

    pub fn brokers(&self) -> &Brokers {
        &self.brokers
    }

    /// The broker in use (or last tried): where sessions open their own connections.
    pub fn current(&self) -> &Endpoint {
        &self.brokers.members[self.current_index()]
    }

    pub fn current_index(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.brokers.members.len()
    }

    /// `i` answered: it is the broker in use from now on.
    pub fn settle(&self, i: usize) {
        self.current.store(i, Ordering::Relaxed);
    }

    /// One round of attempts. After losing broker `lost`, the next one comes first and the
    /// lost one last; otherwise the current one first. `randomize` shuffles the round
    /// (still trying a lost broker last).
    pub fn round(&self, lost: Option<usize>, seed: u64) -> Vec<usize> {
        let n = self.brokers.members.len();
        let start = match lost {
            Some(i) => (i + 1) % n,
            None => self.current_index(),
        };
        let mut order: Vec<usize> = (0..n).map(|k| (start + k) % n).collect();
        if self.brokers.randomize {
            shuffle(&mut order, seed);
            if let Some(i) = lost {
                order.retain(|&m| m != i);
                order.push(i);
            }
        }
        order
    }
}

/// Fisher-Yates with a small xorshift: spreading gateways needs no better randomness.
fn shuffle(v: &mut [usize], seed: u64) {
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_uri_is_a_list_of_one() {
        let b = parse_brokers("stomp://u:p@h:1").unwrap();
        assert_eq!(b.members.len(), 1);
        assert!(!b.is_failover() && !b.randomize && !b.secure());
    }

    #[test]
    fn failover_lists_as_activemq_writes_them() {
        let b = parse_brokers(
            "failover:(stomp://u:p@h1:61613,stomp+ssl://h2:61614)?randomize=true&initialReconnectDelay=10&maxReconnectDelay=2000",
        )
        .unwrap();
        let addrs: Vec<String> = b.members.iter().map(Endpoint::addr).collect();
        assert_eq!(addrs, ["h1:61613", "h2:61614"]);
        assert!(b.randomize && b.secure() && b.is_failover());
        assert!(!b.members[0].secure && b.members[1].secure);
        assert_eq!(
            b.members[1].login,
            Some(("u".into(), "p".into())),
            "a member without a login takes the list's"
        );
        assert_eq!(
            (b.initial_delay, b.max_delay),
            (Duration::from_millis(10), Duration::from_secs(2))
        );
        let bare = parse_brokers("failover:stomp://h1,stomp://h2:1").unwrap();
        assert_eq!(bare.members.len(), 2);
        assert!(!bare.randomize, "randomize is off unless asked for");
    }

    #[test]
    fn bad_lists_say_why() {
        let err = |raw: &str| parse_brokers(raw).unwrap_err();
        assert!(err("failover:(stomp://h1,stomp://h2").contains("unclosed"));
        assert!(err("failover:(stomp://h1,,stomp://h2)").contains("member 2 is empty"));
        assert!(err("failover:(stomp://h1,amqp://h2)").contains("member 2"));
        assert!(err("failover:(stomp://h1)?backup=true").contains("unknown failover option"));
        assert!(err("failover:(stomp://h1)?randomize=maybe").contains("randomize"));
        assert!(err("failover:(stomp://h1)?maxReconnectDelay=x").contains("maxReconnectDelay"));
        assert!(
            err("failover:(stomp://h1)?initialReconnectDelay=500&maxReconnectDelay=100")
                .contains("below")
        );
        assert!(err("failover:(stomp://h1)x").contains("after the failover list"));
        let many = vec!["stomp://h"; 17].join(",");
        assert!(err(&format!("failover:({many})")).contains("at most"));
    }

    #[test]
    fn after_a_loss_the_next_broker_comes_first_and_the_lost_one_last() {
        let r = Rotation::new(parse_brokers("failover:stomp://a,stomp://b,stomp://c").unwrap());
        assert_eq!(r.round(None, 1), [0, 1, 2]);
        r.settle(1);
        assert_eq!(r.current().host, "b");
        assert_eq!(r.round(Some(1), 1), [2, 0, 1]);
        assert_eq!(
            r.round(None, 1),
            [1, 2, 0],
            "reconnecting starts with the one in use"
        );
    }

    #[test]
    fn randomize_shuffles_each_round_but_keeps_the_lost_broker_last() {
        let r = Rotation::new(
            parse_brokers("failover:(stomp://a,stomp://b,stomp://c,stomp://d)?randomize=true")
                .unwrap(),
        );
        let mut firsts = std::collections::HashSet::new();
        for seed in 1..50u64 {
            let order = r.round(Some(2), seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            assert_eq!(order.len(), 4);
            assert_eq!(order[3], 2);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3]);
            firsts.insert(order[0]);
        }
        assert_eq!(firsts.len(), 3, "every other broker comes first sometimes");
    }
}
