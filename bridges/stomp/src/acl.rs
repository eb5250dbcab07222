//! Destination access control: which roles may SEND to and SUBSCRIBE to which destinations.
//!
//! Patterns are destinations with wildcards, in the style of RabbitMQ topic bindings:
//! a destination is `/`-separated segments of `.`-separated words; `*` matches exactly one
//! word, `#` zero or more words of its segment, and a final `/**` segment everything below
//! the prefix before it. Patterns are compiled once when the service is built; a check
//! walks string slices and allocates nothing.

use bridge_api::Principal;
use serde::Deserialize;

/// The role an anonymous client (no principal) has for ACL purposes.
pub const ANONYMOUS: &str = "anonymous";
/// In `roles`: any authenticated principal, whatever its roles.
pub const ANY: &str = "*";

/// Kinds a pattern may start with: a typo such as `/topics/x` would otherwise silently
/// grant nothing.
const KINDS: &[&str] = &["topic", "queue", "temp-queue", "amq", "exchange"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    /// Any of these roles; `*` = any authenticated principal, `anonymous` = no principal.
    pub roles: Vec<String>,
    #[serde(default)]
    pub send: Vec<String>,
    #[serde(default)]
    pub subscribe: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Send,
    Subscribe,
}

impl Verb {
    pub fn command(self) -> &'static str {
        match self {
            Verb::Send => "SEND",
            Verb::Subscribe => "SUBSCRIBE",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Verb::Send => "send",
            Verb::Subscribe => "subscribe",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    Lit(String),
    /// `*`
    One,
    /// `#`
    Many,
}

#[derive(Debug, Clone)]
pub struct Pattern {
    segments: Vec<Vec<Word>>,
    /// Ended in `/**`: the destination may continue with any segments.
    prefix: bool,
}

fn valid_literal(w: &str) -> bool {
    !w.is_empty()
        && w.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ':' | '~' | '@'))
}

impl Pattern {
    pub fn compile(raw: &str) -> Result<Pattern, String> {
        let Some(body) = raw.strip_prefix('/') else {
            return Err(format!("{raw:?} must start with / (e.g. /topic/prices.#)"));
        };
        let mut parts: Vec<&str> = body.split('/').collect();
        let prefix = parts.last() == Some(&"**");
        if prefix {
            parts.pop();
        }
        if let Some(first) = parts.first() {
            if !KINDS.contains(first) && !matches!(*first, "*" | "#") {
                return Err(format!(
                    "{raw:?} must start with /topic/, /queue/, /temp-queue/, /amq/queue/ or /exchange/ (or be /**)"
                ));
            }
        }
        if !prefix && parts.len() < 2 {
            return Err(format!(
                "{raw:?} names no destination; use e.g. /queue/# for every queue"
            ));
        }
        let mut segments = Vec::with_capacity(parts.len());
        for part in parts {
            let mut words = Vec::new();
            for w in part.split('.') {
                let word = match w {
                    "*" => Word::One,
                    "#" => Word::Many,
                    w if valid_literal(w) => Word::Lit(w.to_string()),
                    "" => return Err(format!("{raw:?} has an empty word or segment")),
                    _ => {
                        return Err(format!(
                        "{raw:?}: words use letters, digits and - _ : ~ @; * and # must be whole words, ** a whole last segment"
                    ))
                    }
                };
                // `#.#` means the same as `#`; collapsing keeps matching linear.
                if !(word == Word::Many && words.last() == Some(&Word::Many)) {
                    words.push(word);
                }
            }
            segments.push(words);
        }
        Ok(Pattern { segments, prefix })
    }

    /// Whether every destination `dest` can denote is matched. `dest` is a destination as
    /// the client wrote it, already checked by `Destination::parse`; in a SUBSCRIBE it may
    /// hold `*` and `#` itself, which only the same or a wider wildcard covers.
    pub fn matches(&self, dest: &str) -> bool {
        let Some(body) = dest.strip_prefix('/') else {
            return false;
        };
        // `/exchange/logs/` and `/exchange/logs` are the same destination.
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut parts = body.split('/');
        for words in &self.segments {
            match parts.next() {
                Some(part) if match_words(words, Some(part)) => {}
                _ => return false,
            }
        }
        match parts.next() {
            None => !self.prefix,
            Some(rest) => self.prefix && !rest.is_empty(),
        }
    }
}

fn split_word(s: &str) -> (&str, Option<&str>) {
    match s.split_once('.') {
        Some((w, rest)) => (w, Some(rest)),
        None => (s, None),
    }
}

/// `rest` holds the words not matched yet (`None`: none left).
fn match_words(pat: &[Word], rest: Option<&str>) -> bool {
    match pat.split_first() {
        None => rest.is_none(),
        Some((Word::Lit(lit), tail)) => rest.is_some_and(|s| {
            let (w, more) = split_word(s);
            w == lit && match_words(tail, more)
        }),
        // A subscription's `#` may stand for several words, which one `*` does not cover.
        Some((Word::One, tail)) => rest.is_some_and(|s| {
            let (w, more) = split_word(s);
            w != "#" && match_words(tail, more)
        }),
        Some((Word::Many, tail)) => {
            match_words(tail, rest) || rest.is_some_and(|s| match_words(pat, split_word(s).1))
        }
    }
}

#[derive(Debug)]
struct Rule {
    any: bool,
    roles: Vec<String>,
    send: Vec<Pattern>,
    subscribe: Vec<Pattern>,
}

impl Rule {
    fn applies_to(&self, principal: Option<&Principal>) -> bool {
        match principal {
            None => self.roles.iter().any(|r| r == ANONYMOUS),
            Some(p) => self.any || p.roles.iter().any(|r| self.roles.contains(r)),
        }
    }

    fn patterns(&self, verb: Verb) -> &[Pattern] {
        match verb {
            Verb::Send => &self.send,
            Verb::Subscribe => &self.subscribe,
        }
    }
}

/// A service's compiled rules; empty when none are configured (everything allowed).
#[derive(Debug, Default)]
pub struct Acl {
    rules: Vec<Rule>,
}

/// What one session may do, resolved once at CONNECT from its principal.
#[derive(Debug, Default)]
pub enum Grant {
    /// No ACL configured.
    All,
    /// No rule is for this client: only its own temp queues. Also the state before
    /// CONNECT, so a session that never resolved its grant is denied, not let through.
    #[default]
    Nothing,
    /// Indices of the rules whose roles the client has.
    Rules(Box<[u32]>),
}

impl Acl {
    /// Compiles `acl` settings; errors name the key (`acl[0].send[1]`).
    pub fn compile(rules: &[AclRule]) -> Result<Acl, (String, String)> {
        let mut out = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            if rule.roles.is_empty() {
                return Err((
                    format!("acl[{i}].roles"),
                    format!("list at least one role (\"{ANY}\" = any authenticated client, \"{ANONYMOUS}\" = clients without credentials)"),
                ));
            }
            if rule.send.is_empty() && rule.subscribe.is_empty() {
                return Err((
                    format!("acl[{i}]"),
                    "a rule needs send or subscribe patterns".into(),
                ));
            }
            let compile = |verb: &str, list: &[String]| {
                list.iter()
                    .enumerate()
                    .map(|(j, p)| {
                        Pattern::compile(p).map_err(|e| (format!("acl[{i}].{verb}[{j}]"), e))
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            out.push(Rule {
                any: rule.roles.iter().any(|r| r == ANY),
                roles: rule.roles.clone(),
                send: compile("send", &rule.send)?,
                subscribe: compile("subscribe", &rule.subscribe)?,
            });
        }
        Ok(Acl { rules: out })
    }

    pub fn grant(&self, principal: Option<&Principal>) -> Grant {
        if self.rules.is_empty() {
            return Grant::All;
        }
        let granted: Box<[u32]> = (0u32..)
            .zip(&self.rules)
            .filter(|(_, r)| r.applies_to(principal))
            .map(|(i, _)| i)
            .collect();
        if granted.is_empty() {
            Grant::Nothing
        } else {
            Grant::Rules(granted)
        }
    }

    pub fn allows(&self, grant: &Grant, verb: Verb, dest: &str) -> bool {
        let rules: &[u32] = match grant {
            Grant::All => return true,
            Grant::Nothing => &[],
            Grant::Rules(r) => r,
        };
        // A temp queue is private to the session that names it: replies to a SEND's
        // `reply-to` and a subscription to one's own temp queue need no rule.
        if dest.starts_with("/temp-queue/") {
            return true;
        }
        rules.iter().any(|&i| {
            self.rules[i as usize]
                .patterns(verb)
                .iter()
                .any(|p| p.matches(dest))
        })
    }
}

/// The ERROR text for a refused frame, and its count.
pub fn denied(service: &str, verb: Verb, dest: &str, principal: Option<&Principal>) -> String {
    metrics::counter!("gateway_stomp_acl_denied_total", "service" => service.to_string(), "verb" => verb.label())
        .increment(1);
    let who = match principal {
        None => "anonymous clients".to_string(),
        Some(p) if p.roles.is_empty() => format!("user {:?} (no roles)", p.name),
        Some(p) => format!("user {:?} (roles: {})", p.name, p.roles.join(", ")),
    };
    format!("{} to {dest} is not allowed for {who}.", verb.command())
}

pub fn describe() {
    metrics::describe_counter!(
        "gateway_stomp_acl_denied_total",
        "SEND and SUBSCRIBE frames refused by the service's destination ACL, by verb"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_api::AuthMethod;

    fn p(s: &str) -> Pattern {
        Pattern::compile(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn star_is_one_word_hash_any_number() {
        let star = p("/topic/orders.*");
        assert!(star.matches("/topic/orders.new"));
        assert!(!star.matches("/topic/orders"));
        assert!(!star.matches("/topic/orders.new.eu"));
        let hash = p("/topic/prices.#");
        assert!(hash.matches("/topic/prices"));
        assert!(hash.matches("/topic/prices.AAPL"));
        assert!(hash.matches("/topic/prices.eu.SAP"));
        assert!(!hash.matches("/topic/pricesX"));
        assert!(!hash.matches("/topic/other.prices"));
        let middle = p("/topic/a.#.z");
        assert!(middle.matches("/topic/a.z"));
        assert!(middle.matches("/topic/a.b.c.z"));
        assert!(!middle.matches("/topic/a.b.c"));
    }

    #[test]
    fn literals_match_exactly_and_kinds_stay_apart() {
        let q = p("/queue/orders");
        assert!(q.matches("/queue/orders"));
        assert!(!q.matches("/queue/orders2"));
        assert!(!q.matches("/queue/orders.x"));
        assert!(!q.matches("/topic/orders"));
        assert!(!q.matches("/amq/queue/orders"));
        assert!(p("/queue/#").matches("/queue/tmp.3.reply"));
    }

    #[test]
    fn words_do_not_cross_segments() {
        let e = p("/exchange/amq.topic/orders.*");
        assert!(e.matches("/exchange/amq.topic/orders.new"));
        // The same words, split differently, name another exchange.
        assert!(!e.matches("/exchange/amq/topic.orders.new"));
        assert!(!p("/exchange/#").matches("/exchange/amq.topic/k"));
        assert!(p("/exchange/#/k").matches("/exchange/amq.topic/k"));
        assert!(p("/exchange/logs").matches("/exchange/logs/"));
        assert!(p("/amq/queue/stomp-gw.#").matches("/amq/queue/stomp-gw.i1.3.r"));
    }

    #[test]
    fn double_star_matches_a_whole_prefix() {
        let all_ex = p("/exchange/**");
        assert!(all_ex.matches("/exchange/logs"));
        assert!(all_ex.matches("/exchange/amq.topic/a.b"));
        assert!(!all_ex.matches("/exchange"));
        assert!(!all_ex.matches("/topic/a"));
        let all = p("/**");
        assert!(all.matches("/queue/x"));
        assert!(all.matches("/amq/queue/x"));
    }

    #[test]
    fn subscription_wildcards_need_an_equal_or_wider_pattern() {
        assert!(p("/topic/prices.#").matches("/topic/prices.*"));
        assert!(p("/topic/prices.#").matches("/topic/prices.#"));
        assert!(p("/topic/prices.*").matches("/topic/prices.*"));
        assert!(!p("/topic/prices.*").matches("/topic/prices.#"));
        assert!(!p("/topic/prices.AAPL").matches("/topic/prices.*"));
        assert!(!p("/topic/prices.#").matches("/topic/#"));
        assert!(!p("/topic/a.*.#").matches("/topic/a.#"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "topic/x",
            "/topics/x",
            "/topic/pri*",
            "/topic/a..b",
            "/topic/a b",
            "/topic/**/x",
            "/queue",
            "/topic/a.**",
        ] {
            assert!(Pattern::compile(bad).is_err(), "{bad} was accepted");
        }
    }

    fn rule(roles: &[&str], send: &[&str], subscribe: &[&str]) -> AclRule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        AclRule {
            roles: v(roles),
            send: v(send),
            subscribe: v(subscribe),
        }
    }

    fn user(roles: &[&str]) -> Principal {
        Principal {
            name: "u".into(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            method: AuthMethod::Basic,
            expires_at: None,
        }
    }

    #[test]
    fn rules_by_role_default_deny() {
        let acl = Acl::compile(&[
            rule(
                &["trader"],
                &["/topic/orders.*", "/queue/orders"],
                &["/topic/prices.#"],
            ),
            rule(&["viewer"], &[], &["/topic/prices.#"]),
            rule(&[ANY], &[], &["/topic/news"]),
            rule(&[ANONYMOUS], &[], &["/topic/status"]),
        ])
        .unwrap();
        let trader = acl.grant(Some(&user(&["trader"])));
        assert!(acl.allows(&trader, Verb::Send, "/queue/orders"));
        assert!(acl.allows(&trader, Verb::Subscribe, "/topic/prices.AAPL"));
        assert!(acl.allows(&trader, Verb::Subscribe, "/topic/news"));
        assert!(!acl.allows(&trader, Verb::Subscribe, "/queue/orders"));
        assert!(!acl.allows(&trader, Verb::Subscribe, "/topic/status"));

        let viewer = acl.grant(Some(&user(&["viewer"])));
        assert!(acl.allows(&viewer, Verb::Subscribe, "/topic/prices.*"));
        assert!(!acl.allows(&viewer, Verb::Send, "/queue/orders"));

        let nobody = acl.grant(Some(&user(&[])));
        assert!(acl.allows(&nobody, Verb::Subscribe, "/topic/news"));
        assert!(!acl.allows(&nobody, Verb::Subscribe, "/topic/prices.x"));

        let anon = acl.grant(None);
        assert!(acl.allows(&anon, Verb::Subscribe, "/topic/status"));
        assert!(!acl.allows(&anon, Verb::Subscribe, "/topic/news"));
        // Temp queues are the session's own.
        assert!(acl.allows(&anon, Verb::Subscribe, "/temp-queue/r1"));
        assert!(acl.allows(&Grant::Nothing, Verb::Send, "/temp-queue/r1"));
        assert!(!acl.allows(&Grant::Nothing, Verb::Send, "/queue/orders"));
    }

    #[test]
    fn no_rules_allow_everything() {
        let acl = Acl::compile(&[]).unwrap();
        assert!(matches!(acl.grant(None), Grant::All));
        assert!(acl.allows(&acl.grant(None), Verb::Send, "/queue/anything"));
    }

    #[test]
    fn errors_name_the_key() {
        let e = Acl::compile(&[
            rule(&["a"], &["/queue/x"], &[]),
            rule(&["b"], &[], &["/topic/ok", "/topic/b*d"]),
        ])
        .unwrap_err();
        assert_eq!(e.0, "acl[1].subscribe[1]");
        assert_eq!(
            Acl::compile(&[rule(&[], &["/queue/x"], &[])])
                .unwrap_err()
                .0,
            "acl[0].roles"
        );
        assert_eq!(
            Acl::compile(&[rule(&["a"], &[], &[])]).unwrap_err().0,
            "acl[0]"
        );
    }
}
