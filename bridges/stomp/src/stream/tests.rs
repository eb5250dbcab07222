use std::sync::Arc;
use std::time::Duration;

use bridge_api::{Outbox, OutboxReceiver, Outgoing};
use protocol_stomp::{Headers, Version};

use super::*;
use crate::backend::fanout::{DirectSub, Target};
use crate::inbox::{Inbox, Policy};
use crate::settings::StreamRule;

fn rule(history: usize, keys: usize) -> StreamRule {
    StreamRule {
        destination: "/topic/prices.".into(),
        history,
        history_age: Duration::from_secs(60),
        snapshot_keys: keys,
        conflate_key: None,
        snapshot: SnapshotMode::OnRequest,
    }
}

const SNAPSHOT: Request = Request {
    snapshot: true,
    resume: None,
};

fn resume(from: Position, snapshot: bool) -> Request {
    Request {
        snapshot,
        resume: Some(from),
    }
}

fn stream(history: usize, keys: usize) -> Stream {
    Stream::new(rule(history, keys), &StompMetrics::new("test"))
}

fn publish(s: &Stream, symbol: &str, n: u32) {
    let mut h = Headers::new();
    h.push("position", "forged-1");
    s.publish(&Arc::new(SharedMessage::new(
        format!("/topic/prices.{symbol}"),
        format!("m{n}"),
        &h,
        bytes::Bytes::from(format!("{symbol}{n}")),
    )));
}

struct Client {
    rx: OutboxReceiver,
    sub: LocalSub,
}

fn client(key: SubKey) -> Client {
    let (outbox, rx) = Outbox::channel(8);
    let lane = outbox.open_lane(100_000, bridge_api::LanePolicy::DropOldest);
    lane.resume();
    std::mem::forget(outbox); // the receiver stays open for the test
    let sub = LocalSub {
        session: u64::from(key),
        key,
        target: Target::Direct(Arc::new(DirectSub::new(
            lane,
            "s".into(),
            Version::V1_2,
            Policy::DropOldest,
            Inbox::new(StompMetrics::new("test")),
            key,
        ))),
    };
    Client { rx, sub }
}

/// (body, position, mark) of every MESSAGE the client got.
fn got(c: &mut Client) -> Vec<(String, String, &'static str)> {
    let mut out = Vec::new();
    c.rx.try_recv_many(&mut out, 100_000);
    out.into_iter()
        .map(|o| {
            let Outgoing::Message(m) = o else {
                panic!("close")
            };
            let text = String::from_utf8_lossy(&m.payload()).to_string();
            let (head, body) = text.split_once("\n\n").unwrap();
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .map(str::to_owned)
            };
            let mark = if header("snapshot").is_some() {
                "snapshot"
            } else if header("resumed").is_some() {
                "resumed"
            } else {
                "live"
            };
            (
                body.trim_end_matches('\0').to_string(),
                header("position").unwrap(),
                mark,
            )
        })
        .collect()
}

fn seq(p: &str) -> u64 {
    p.split_once('-').unwrap().1.parse().unwrap()
}

#[test]
fn live_messages_are_numbered_and_forged_positions_dropped() {
    let s = stream(10, 10);
    let mut c = client(1);
    s.join("prices.*", c.sub.clone(), Request::default());
    publish(&s, "A", 1);
    publish(&s, "B", 1);
    let m = got(&mut c);
    assert_eq!(m.len(), 2);
    assert_eq!(seq(&m[0].1) + 1, seq(&m[1].1));
    assert!(!m[0].1.starts_with("forged"));
    assert_eq!(m[0].2, "live");
}

#[test]
fn snapshot_then_live_without_gap_or_duplicate() {
    let s = stream(10, 10);
    publish(&s, "A", 1);
    publish(&s, "B", 1);
    publish(&s, "A", 2);
    let mut c = client(1);
    let joined = s.join("prices.*", c.sub.clone(), SNAPSHOT);
    assert_eq!(joined.backlog, 2);
    assert_eq!(joined.position.seq, 3);
    publish(&s, "B", 2);
    let m = got(&mut c);
    let bodies: Vec<(&str, &str)> = m.iter().map(|(b, _, k)| (b.as_str(), *k)).collect();
    assert_eq!(
        bodies,
        vec![("B1", "snapshot"), ("A2", "snapshot"), ("B2", "live")]
    );
    // A pattern picks its own keys from the snapshot.
    let mut only_a = client(2);
    s.join("prices.A", only_a.sub.clone(), SNAPSHOT);
    assert_eq!(got(&mut only_a).len(), 1);
}

#[test]
fn resume_gives_exactly_the_missed_messages() {
    let s = stream(100, 10);
    let mut c = client(1);
    s.join("prices.*", c.sub.clone(), Request::default());
    publish(&s, "A", 1);
    let last = got(&mut c).pop().unwrap().1;
    s.leave("prices.*", 1, 1);
    for n in 2..=5 {
        publish(&s, "A", n);
    }
    let mut again = client(1);
    let joined = s.join(
        "prices.*",
        again.sub.clone(),
        resume(Position::parse(&last).unwrap(), true),
    );
    assert_eq!(joined.resume, Some(Ok(())));
    publish(&s, "A", 6);
    let m = got(&mut again);
    let bodies: Vec<&str> = m.iter().map(|(b, _, _)| b.as_str()).collect();
    assert_eq!(bodies, vec!["A2", "A3", "A4", "A5", "A6"]);
    assert!(m[..4].iter().all(|x| x.2 == "resumed"));
    assert_eq!(m[4].2, "live");
}

#[test]
fn resume_beyond_the_window_or_epoch_gets_the_snapshot() {
    let s = stream(2, 10);
    for n in 1..=5 {
        publish(&s, "A", n);
    }
    let epoch = s.position().epoch;
    for (from, why) in [
        (Position { epoch, seq: 1 }, "older"),
        (Position { epoch, seq: 99 }, "ahead"),
        (
            Position {
                epoch: epoch ^ 1,
                seq: 4,
            },
            "epoch",
        ),
    ] {
        let mut c = client(1);
        let joined = s.join("prices.*", c.sub.clone(), resume(from, false));
        s.leave("prices.*", 1, 1);
        let reason = joined.resume.unwrap().unwrap_err();
        assert!(reason.contains(why), "{reason}");
        let m = got(&mut c);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].0.as_str(), m[0].2), ("A5", "snapshot"));
    }
}

#[test]
fn lost_history_starts_an_epoch_and_restamps_last_values() {
    let s = stream(10, 10);
    publish(&s, "A", 1);
    let before = s.position();
    s.history_lost();
    let after = s.position();
    assert_ne!(before.epoch, after.epoch);
    assert_eq!(after.seq, 0);
    let mut c = client(1);
    let joined = s.join("prices.*", c.sub.clone(), resume(before, false));
    assert!(joined.resume.unwrap().is_err());
    let m = got(&mut c);
    assert_eq!(m[0].1, format!("{:x}-0", after.epoch));
    // Resuming from the re-stamped value gets everything of the new epoch.
    publish(&s, "A", 2);
    let mut d = client(2);
    let joined = s.join(
        "prices.*",
        d.sub.clone(),
        resume(Position::parse(&m[0].1).unwrap(), false),
    );
    assert_eq!(joined.resume, Some(Ok(())));
    assert_eq!(got(&mut d)[0].0, "A2");
}

#[test]
fn streams_are_found_by_prefix_and_ignore_other_destinations() {
    let m = StompMetrics::new("test");
    let streams = Streams::new(&[rule(10, 10)], &m);
    assert!(streams.find("prices.*").is_some());
    assert!(streams.find("prices.AAPL").is_some());
    assert!(streams.find("pricesX").is_none());
    assert!(streams.find("#").is_none());
    let s = streams.find("prices.#").unwrap();
    // The feed's `prices.#` also hears `prices` itself, which is not in the stream.
    s.publish(&Arc::new(SharedMessage::new(
        "/topic/prices".into(),
        "m".into(),
        &Headers::new(),
        bytes::Bytes::new(),
    )));
    assert_eq!(s.position().seq, 0);
}
