//! Resident memory per idle `StreamReader`: thousands of sessions each keep one between
//! stanzas. Measured as growth of the process's resident set over many readers (the only
//! test in this binary, so nothing else allocates meanwhile).

#![cfg(target_os = "linux")]

use protocol_xmpp::{Limits, ServerEvent, StreamReader};

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    id='8643b0bb-57bd-45a8-ad24-f16e8ba33e73' xmlns:stream='http://etherx.jabber.org/streams' \
    from='localhost' xml:lang='en' version='1.0'>";

const STANZAS: &[&[u8]] = &[
    b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><required/></bind>\
      </stream:features>",
    b"<iq id='b1' type='result'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
      <jid>alice@localhost/cap</jid></bind></iq>",
    b"<message from='bob@localhost/x' type='chat'><body>hello there</body></message>\n",
];

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("procfs");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("resident pages");
    pages * 4096
}

fn idle_reader() -> StreamReader {
    let mut reader = StreamReader::new(Limits::default());
    reader.feed(HEADER).unwrap();
    for stanza in STANZAS {
        reader.feed(stanza).unwrap();
    }
    let mut events = 0;
    while let Some(event) = reader.next_event().unwrap() {
        assert!(!matches!(event, ServerEvent::End));
        events += 1;
    }
    assert_eq!(events, 1 + STANZAS.len());
    reader
}

#[test]
fn idle_readers_hold_a_few_kib_each() {
    const READERS: usize = 10_000;
    // Warm the allocator so its own start-up does not count.
    drop((0..100).map(|_| idle_reader()).collect::<Vec<_>>());
    let before = resident_bytes();
    let readers: Vec<StreamReader> = (0..READERS).map(|_| idle_reader()).collect();
    let per_reader = (resident_bytes() - before) / READERS;
    println!(
        "idle StreamReader: {per_reader} bytes resident each over {READERS} readers \
         ({} bytes inline)",
        std::mem::size_of::<StreamReader>()
    );
    assert!(per_reader <= 4096, "{per_reader} bytes per idle reader");
    drop(readers);
}
