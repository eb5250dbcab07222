use bytes::Bytes;
use protocol_stomp::Headers;

use super::*;
use crate::backend::{Backend, OpenRequest};
use crate::inbox::{Delivery, Policy};

async fn session(broker: &EmbeddedBroker, id: u64) -> (Box<dyn BackendSession>, Arc<Inbox>) {
    let inbox = Inbox::new(StompMetrics::new("test"));
    let s = broker
        .open(OpenRequest {
            session_id: id,
            inbox: inbox.clone(),
            login: None,
        })
        .await
        .unwrap();
    (s, inbox)
}

fn sub(key: SubKey, dest: &str, ack: AckMode, prefetch: usize) -> Subscription {
    Subscription {
        key,
        destination: Destination::parse(dest, true).unwrap(),
        ack,
        prefetch,
        version: protocol_stomp::Version::V1_2,
        direct: None,
        feed: None,
        stream_offset: None,
    }
}

async fn send(s: &mut Box<dyn BackendSession>, dest: &str, body: &str) {
    s.publish(
        &Destination::parse(dest, false).unwrap(),
        &Headers::new(),
        Bytes::from(body.to_string()),
    )
    .await
    .unwrap();
}

fn take(inbox: &Inbox) -> Vec<Delivery> {
    let mut out = Vec::new();
    inbox.take(1000, &mut out);
    out.into_iter().map(|(_, d)| d).collect()
}

fn bodies(ds: &[Delivery]) -> Vec<String> {
    ds.iter()
        .map(|d| String::from_utf8_lossy(&d.message.body).into_owned())
        .collect()
}

#[tokio::test]
async fn topic_wildcards_fan_out_one_shared_message() {
    let broker = EmbeddedBroker::new(100, StompMetrics::new("test"));
    let (mut a, ia) = session(&broker, 1).await;
    let (mut b, ib) = session(&broker, 2).await;
    ia.add(1, 10, Policy::DropOldest);
    ib.add(1, 10, Policy::DropOldest);
    a.subscribe(&sub(1, "/topic/prices.*", AckMode::Auto, 0))
        .await
        .unwrap();
    b.subscribe(&sub(1, "/topic/prices.#", AckMode::Auto, 0))
        .await
        .unwrap();
    send(&mut a, "/topic/prices.AAPL", "1").await;
    send(&mut a, "/topic/prices.AAPL.bid", "2").await;
    let (da, db) = (take(&ia), take(&ib));
    assert_eq!(bodies(&da), vec!["1"]);
    assert_eq!(bodies(&db), vec!["1", "2"]);
    assert!(
        Arc::ptr_eq(&da[0].message, &db[0].message),
        "one message shared by subscribers"
    );
}

#[tokio::test]
async fn direct_subscribers_get_one_shared_frame_in_their_outbox_lanes() {
    use crate::backend::fanout::DirectSub;
    use bridge_api::{Outbox, Outgoing};
    let broker = EmbeddedBroker::new(100, StompMetrics::new("test"));
    let mut outs = Vec::new();
    let mut sessions = Vec::new();
    for id in 1..=3u64 {
        let (mut s, inbox) = session(&broker, id).await;
        let (outbox, rx) = Outbox::channel(4);
        let lane = outbox.open_lane(10, bridge_api::LanePolicy::DropOldest);
        let mut spec = sub(1, "/topic/prices.*", AckMode::Auto, 0);
        spec.direct = Some(Arc::new(DirectSub::new(
            lane.clone(),
            "sub-0".into(),
            protocol_stomp::Version::V1_2,
            Policy::DropOldest,
            inbox.clone(),
            1,
        )));
        s.subscribe(&spec).await.unwrap();
        lane.resume();
        outs.push((outbox, rx, inbox));
        sessions.push(s);
    }
    for n in 0..3 {
        send(&mut sessions[0], "/topic/prices.AAPL", &n.to_string()).await;
    }
    let mut first: Vec<Bytes> = Vec::new();
    for (i, (_outbox, rx, inbox)) in outs.iter_mut().enumerate() {
        assert!(!inbox.has_pending(), "nothing went through the session");
        let mut got = Vec::new();
        rx.try_recv_many(&mut got, 100);
        let frames: Vec<Bytes> = got
            .into_iter()
            .map(|o| match o {
                Outgoing::Message(m) => m.payload(),
                Outgoing::Close(_) => panic!("no close"),
            })
            .collect();
        assert_eq!(frames.len(), 3, "in order, all three");
        for (n, f) in frames.iter().enumerate() {
            let text = String::from_utf8_lossy(f);
            assert!(text.ends_with(&format!("\n\n{n}\0")), "{text:?}");
        }
        if i == 0 {
            first = frames;
        } else {
            for (a, b) in first.iter().zip(&frames) {
                assert_eq!(a.as_ptr(), b.as_ptr(), "one encoding shared");
            }
        }
    }
}

#[tokio::test]
async fn queue_round_robins_between_consumers() {
    let broker = EmbeddedBroker::new(100, StompMetrics::new("test"));
    let (mut a, ia) = session(&broker, 1).await;
    let (mut b, ib) = session(&broker, 2).await;
    ia.add(1, 10, Policy::Disconnect);
    ib.add(1, 10, Policy::Disconnect);
    a.subscribe(&sub(1, "/queue/work", AckMode::Auto, 0))
        .await
        .unwrap();
    b.subscribe(&sub(1, "/queue/work", AckMode::Auto, 0))
        .await
        .unwrap();
    for n in 0..4 {
        send(&mut a, "/queue/work", &n.to_string()).await;
    }
    assert_eq!(bodies(&take(&ia)), vec!["0", "2"]);
    assert_eq!(bodies(&take(&ib)), vec!["1", "3"]);
}

#[tokio::test]
async fn messages_wait_in_the_queue_for_a_consumer() {
    let broker = EmbeddedBroker::new(100, StompMetrics::new("test"));
    let (mut a, ia) = session(&broker, 1).await;
    send(&mut a, "/queue/later", "x").await;
    ia.add(1, 10, Policy::Disconnect);
    a.subscribe(&sub(1, "/queue/later", AckMode::Auto, 0))
        .await
        .unwrap();
    assert_eq!(bodies(&take(&ia)), vec!["x"]);
}

#[tokio::test]
async fn nack_redelivers_flagged_to_another_consumer() {
    let broker = EmbeddedBroker::new(100, StompMetrics::new("test"));
    let (mut a, ia) = session(&broker, 1).await;
    let (mut b, ib) = session(&broker, 2).await;
    ia.add(1, 10, Policy::Disconnect);
    ib.add(1, 10, Policy::Disconnect);
    a.subscribe(&sub(1, "/queue/q", AckMode::ClientIndividual, 1))
        .await
        .unwrap();
    send(&mut a, "/queue/q", "m").await;
    let got = take(&ia);
    assert_eq!(bodies(&got), vec!["m"]);
    assert!(!got[0].redelivered);
    b.subscribe(&sub(1, "/queue/q", AckMode::ClientIndividual, 1))
        .await
        .unwrap();
    a.nack(got[0].ack.unwrap()).await.unwrap();
    let mut again = take(&ia);
    again.extend(take(&ib));
    assert_eq!(bodies(&again), vec!["m"]);
    assert!(again[0].redelivered);
}

#[tokio::test]
async fn prefetch_bounds_unacknowledged_deliveries() {
    let broker = EmbeddedBroker::new(100, StompMetrics::new("test"));
    let (mut a, ia) = session(&broker, 1).await;
    ia.add(1, 100, Policy::Disconnect);
    a.subscribe(&sub(1, "/queue/p", AckMode::ClientIndividual, 2))
        .await
        .unwrap();
    for n in 0..5 {
        send(&mut a, "/queue/p", &n.to_string()).await;
    }
    let first = take(&ia);
    assert_eq!(bodies(&first), vec!["0", "1"]);
    a.ack(first[0].ack.unwrap()).await.unwrap();
    assert_eq!(bodies(&take(&ia)), vec!["2"]);
}

#[tokio::test]
async fn a_departing_consumer_returns_unacked_and_undelivered_messages_in_order() {
    let broker = EmbeddedBroker::new(100, StompMetrics::new("test"));
    let (mut a, ia) = session(&broker, 1).await;
    ia.add(1, 100, Policy::Disconnect);
    a.subscribe(&sub(1, "/queue/r", AckMode::Client, 0))
        .await
        .unwrap();
    for n in 0..3 {
        send(&mut a, "/queue/r", &n.to_string()).await;
    }
    // The client saw "0" only; "1" and "2" are still in its inbox.
    let mut seen = Vec::new();
    ia.take(1, &mut seen);
    a.close().await;

    let (mut b, ib) = session(&broker, 2).await;
    ib.add(1, 100, Policy::Disconnect);
    b.subscribe(&sub(1, "/queue/r", AckMode::Auto, 0))
        .await
        .unwrap();
    let again = take(&ib);
    assert_eq!(bodies(&again), vec!["0", "1", "2"]);
    assert_eq!(
        again.iter().map(|d| d.redelivered).collect::<Vec<_>>(),
        vec![true, false, false]
    );
}

#[tokio::test]
async fn a_full_queue_refuses_sends() {
    let broker = EmbeddedBroker::new(2, StompMetrics::new("test"));
    let (mut a, _) = session(&broker, 1).await;
    send(&mut a, "/queue/f", "1").await;
    send(&mut a, "/queue/f", "2").await;
    let err = a
        .publish(
            &Destination::Queue("f".into()),
            &Headers::new(),
            Bytes::from_static(b"3"),
        )
        .await
        .unwrap_err();
    assert!(err.message.contains("full"), "{err}");
}

#[tokio::test]
async fn temp_queues_are_private_and_deleted_with_their_session() {
    let broker = EmbeddedBroker::new(100, StompMetrics::new("test"));
    let (mut a, ia) = session(&broker, 1).await;
    let (mut b, _) = session(&broker, 2).await;
    ia.add(1, 10, Policy::Disconnect);
    a.subscribe(&sub(1, "/temp-queue/replies", AckMode::Auto, 0))
        .await
        .unwrap();
    let address = a.temp_queue_address("replies");
    send(&mut b, &address, "pong").await;
    assert_eq!(bodies(&take(&ia)), vec!["pong"]);
    a.close().await;
    assert_eq!(broker.inner.queues().count(), 0);
}
