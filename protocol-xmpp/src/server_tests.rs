use super::*;
use crate::{
    parse_client_message, to_client, ClientFrame, StanzaKind, StreamErrorCondition, NS_CLIENT,
    NS_SASL, NS_STREAMS, NS_TLS,
};

const PLAIN: &[u8] = include_bytes!("../testdata/prosody-c2s-1-plain.xml");
const TLS: &[u8] = include_bytes!("../testdata/prosody-c2s-2-tls.xml");
const AUTHENTICATED: &[u8] = include_bytes!("../testdata/prosody-c2s-3-authenticated.xml");

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='s1' version='1.0'>";

/// The third document with whitespace keepalives between its top-level elements.
fn with_keepalives(doc: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(doc).unwrap();
    text.replace("</iq>", "</iq>\n")
        .replace("</presence>", "</presence> \t \r\n ")
        .replace("</message>", "</message>     ")
        .into_bytes()
}

/// Feeds each document in chunks of `chunk` bytes, draining events after each feed and
/// restarting after `<proceed/>` and `<success/>` as the bridge does.
fn read_session(docs: &[&[u8]], chunk: usize, limits: &Limits) -> Vec<ServerEvent> {
    let mut reader = StreamReader::new(limits.clone());
    let mut events = Vec::new();
    for doc in docs {
        for piece in doc.chunks(chunk) {
            reader.feed(piece).unwrap();
            while let Some(event) = reader.next_event().unwrap() {
                events.push(event);
            }
        }
        let restart = matches!(events.last(), Some(ServerEvent::Element(e))
            if e.is("proceed", NS_TLS) || e.is("success", NS_SASL));
        if restart {
            reader.restart();
        }
    }
    events
}

fn element(event: &ServerEvent) -> &Element {
    match event {
        ServerEvent::Element(element) => element,
        other => panic!("expected an element, got {other:?}"),
    }
}

fn header(event: &ServerEvent) -> &StreamHeader {
    match event {
        ServerEvent::Header(header) => header,
        other => panic!("expected a header, got {other:?}"),
    }
}

fn reader_with(limits: Limits, bytes: &[u8]) -> StreamReader {
    let mut reader = StreamReader::new(limits);
    reader.feed(bytes).unwrap();
    reader
}

/// Drains events until an error, which it returns.
fn first_error(reader: &mut StreamReader) -> StreamError {
    loop {
        match reader.next_event() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("no error"),
            Err(err) => return err,
        }
    }
}

/// Feeds `bytes` in `chunk`-sized pieces until feeding or reading fails.
fn feed_until_error(limits: Limits, bytes: &[u8], chunk: usize) -> (StreamError, usize) {
    let mut reader = StreamReader::new(limits);
    let mut fed = 0;
    for piece in bytes.chunks(chunk) {
        if let Err(err) = reader.feed(piece) {
            return (err, fed);
        }
        fed += piece.len();
        loop {
            match reader.next_event() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(err) => return (err, fed),
            }
        }
    }
    panic!("no error after {fed} bytes");
}

#[test]
fn prosody_session_byte_by_byte() {
    let third = with_keepalives(AUTHENTICATED);
    let events = read_session(&[PLAIN, TLS, &third], 1, &Limits::default());
    let mut it = events.iter();

    let first = header(it.next().unwrap());
    assert_eq!(first.from.as_deref(), Some("localhost"));
    assert_eq!(first.version.as_deref(), Some("1.0"));
    assert_eq!(first.lang.as_deref(), Some("en"));
    assert_eq!(
        first.id.as_deref(),
        Some("222cd805-3443-4fe4-8edd-0936fd54282e")
    );
    let features = element(it.next().unwrap());
    assert!(features.is("features", NS_STREAM));
    let starttls = features.get_child("starttls", NS_TLS).unwrap();
    assert!(starttls.has_child("required", NS_TLS));
    assert!(element(it.next().unwrap()).is("proceed", NS_TLS));

    assert_eq!(
        header(it.next().unwrap()).id.as_deref(),
        Some("0e330e6f-099e-4879-88fe-f93bba0971e0")
    );
    let features = element(it.next().unwrap());
    let mechanisms: Vec<String> = features
        .get_child("mechanisms", NS_SASL)
        .unwrap()
        .children()
        .map(Element::text)
        .collect();
    assert_eq!(mechanisms, ["PLAIN", "SCRAM-SHA-1"]);
    assert!(element(it.next().unwrap()).is("success", NS_SASL));

    header(it.next().unwrap());
    let features = element(it.next().unwrap());
    assert!(features.has_child("bind", "urn:ietf:params:xml:ns:xmpp-bind"));
    assert!(features.has_child("c", "http://jabber.org/protocol/caps"));

    let bind = element(it.next().unwrap());
    assert_eq!(StanzaKind::of(bind), StanzaKind::Iq);
    assert_eq!(
        bind.get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
            .unwrap()
            .get_child("jid", "urn:ietf:params:xml:ns:xmpp-bind")
            .unwrap()
            .text(),
        "alice@localhost/cap"
    );
    let roster = element(it.next().unwrap());
    let item = roster
        .get_child("query", "jabber:iq:roster")
        .unwrap()
        .get_child("item", "jabber:iq:roster")
        .unwrap();
    assert_eq!(item.attr("jid"), Some("bob@localhost"));
    assert_eq!(item.attr("subscription"), Some("both"));

    let presence = element(it.next().unwrap());
    assert!(presence.is("presence", NS_CLIENT));
    assert_eq!(crate::xml_lang(presence).as_deref(), Some("en"));
    assert_eq!(
        presence.get_child("status", NS_CLIENT).unwrap().text(),
        "here & there"
    );
    let unavailable = element(it.next().unwrap());
    assert_eq!(unavailable.attr("type"), Some("unavailable"));

    let message = element(it.next().unwrap());
    assert_eq!(StanzaKind::of(message), StanzaKind::Message);
    assert_eq!(
        message.get_child("body", NS_CLIENT).unwrap().text(),
        "hi <3 & \"quotes\" é漢😀"
    );
    assert_eq!(StanzaKind::of(element(it.next().unwrap())), StanzaKind::Iq);

    let error = element(it.next().unwrap());
    assert!(error.is("error", NS_STREAM));
    assert_eq!(
        StreamError::from_element(error).condition,
        StreamErrorCondition::UnsupportedStanzaType
    );
    assert_eq!(it.next(), Some(&ServerEvent::End));
    assert_eq!(it.next(), None);
}

#[test]
fn every_chunking_gives_the_same_events() {
    let third = with_keepalives(AUTHENTICATED);
    let docs: [&[u8]; 3] = [PLAIN, TLS, &third];
    let reference = read_session(&docs, 1, &Limits::default());
    for chunk in (2..=70).chain([100, 333, 1000, 4096]) {
        assert_eq!(
            read_session(&docs, chunk, &Limits::default()),
            reference,
            "chunk size {chunk}"
        );
    }
}

#[test]
fn elements_sent_to_the_browser_are_self_contained() {
    let events = read_session(&[AUTHENTICATED], 7, &Limits::default());
    let mut checked = 0;
    for event in &events {
        let ServerEvent::Element(element) = event else {
            continue;
        };
        let text = to_client(element);
        match parse_client_message(&text, &Limits::default()) {
            Ok(ClientFrame::Element(again)) => assert_eq!(&again, element, "{text}"),
            other => panic!("{text} re-parsed as {other:?}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 8);
    let message = events
        .iter()
        .map(element_or_none)
        .find(|e| e.is_some_and(|e| e.name() == "message"));
    let text = to_client(message.unwrap().unwrap());
    assert!(
        text.starts_with(r#"<message xmlns="jabber:client" "#),
        "{text}"
    );
    assert!(text.contains(r#"xml:lang="en""#), "{text}");
    assert!(text.contains("hi &lt;3 &amp; \"quotes\" é漢😀"), "{text}");
}

fn element_or_none(event: &ServerEvent) -> Option<&Element> {
    match event {
        ServerEvent::Element(element) => Some(element),
        _ => None,
    }
}

#[test]
fn whitespace_keepalives_yield_nothing_and_hold_nothing() {
    let mut reader = reader_with(Limits::default(), HEADER.as_bytes());
    assert!(matches!(
        reader.next_event(),
        Ok(Some(ServerEvent::Header(_)))
    ));
    for _ in 0..200 {
        reader.feed(&[b' '; 1000]).unwrap();
        assert_eq!(reader.next_event(), Ok(None));
        reader.feed(b"\n").unwrap();
        assert_eq!(reader.next_event(), Ok(None));
    }
    assert_eq!(reader.pending.capacity(), 0);
    reader.feed(b"<presence/>").unwrap();
    let presence = reader.next_event().unwrap().unwrap();
    assert!(element(&presence).is("presence", NS_CLIENT));
    assert!(element(&presence).nodes().next().is_none());
}

#[test]
fn ten_megabyte_stanza_is_refused_after_the_limit_not_at_the_end() {
    let limits = Limits::default();
    let mut stream = HEADER.as_bytes().to_vec();
    stream.extend_from_slice(b"<message><body>");
    stream.resize(10 * 1024 * 1024, b'a');
    let chunk = 16 * 1024;
    let (err, fed) = feed_until_error(limits.clone(), &stream, chunk);
    assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
    assert!(
        fed <= limits.max_element_bytes + HEADER.len() + chunk,
        "read {fed} bytes before refusing"
    );
    assert!(fed >= limits.max_element_bytes - chunk, "refused at {fed}");
}

#[test]
fn ten_megabytes_in_one_feed_are_refused_without_buffering() {
    let mut reader = StreamReader::new(Limits::default());
    let big = vec![b' '; 10 * 1024 * 1024];
    let err = reader.feed(&big).unwrap_err();
    assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
    assert_eq!(reader.pending.capacity(), 0);
}

#[test]
fn element_limit_counts_xml_bytes() {
    // The stream header counts too while it is read, so it must fit.
    let limits = Limits {
        max_element_bytes: 200,
        ..Limits::default()
    };
    let fits = format!(
        "{HEADER}<message><body>{}</body></message>",
        "x".repeat(110)
    );
    let events = read_session(&[fits.as_bytes()], 50, &limits);
    assert_eq!(events.len(), 2);
    let too_big = format!(
        "{HEADER}<message><body>{}</body></message>",
        "x".repeat(190)
    );
    let (err, _) = feed_until_error(limits, too_big.as_bytes(), 50);
    assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
}

#[test]
fn split_multibyte_characters_count_all_their_bytes() {
    // 4-byte characters fed a byte at a time: rxml's own event lengths would credit one
    // byte per character.
    let limits = Limits {
        max_element_bytes: 1000,
        ..Limits::default()
    };
    let emoji = format!(
        "{HEADER}<message><body>{}</body></message>",
        "😀".repeat(300)
    );
    let (err, fed) = feed_until_error(limits.clone(), emoji.as_bytes(), 1);
    assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
    assert!(fed <= HEADER.len() + 1001, "read {fed} bytes");
    let fits = format!(
        "{HEADER}<message><body>{}</body></message>",
        "😀".repeat(200)
    );
    assert_eq!(read_session(&[fits.as_bytes()], 1, &limits).len(), 2);
}

#[test]
fn ten_thousand_deep_nesting_is_refused() {
    let mut stream = HEADER.as_bytes().to_vec();
    stream.extend(std::iter::repeat_n(&b"<a>"[..], 10_000).flatten());
    let (err, _) = feed_until_error(Limits::default(), &stream, 4096);
    assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
    assert!(err.text.contains("deeper"), "{err}");
}

#[test]
fn depth_limit_counts_the_stanza_as_one() {
    let limits = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    let ok = format!("{HEADER}<message><body><x/></body></message>");
    let events = read_session(&[ok.as_bytes()], 5, &limits);
    assert_eq!(events.len(), 2);
    let deep = format!("{HEADER}<message><body><x><y/></x></body></message>");
    let mut reader = reader_with(limits, deep.as_bytes());
    assert_eq!(
        first_error(&mut reader).condition,
        StreamErrorCondition::PolicyViolation
    );
}

#[test]
fn billion_laughs_fails_fast() {
    let dtd = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>\
        <!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]>\
        <stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams'>&lol2;";
    let mut reader = reader_with(Limits::default(), dtd.as_bytes());
    assert_eq!(
        first_error(&mut reader).condition,
        StreamErrorCondition::RestrictedXml
    );

    let reference = format!("{HEADER}<message><body>&lol9;</body></message>");
    let mut reader = reader_with(Limits::default(), reference.as_bytes());
    assert_eq!(
        first_error(&mut reader).condition,
        StreamErrorCondition::RestrictedXml
    );
}

#[test]
fn comments_and_processing_instructions_are_restricted() {
    for inner in [
        "<!-- hi -->",
        "<?php echo 1; ?>",
        "<message><!-- x --></message>",
    ] {
        let stream = format!("{HEADER}{inner}");
        let mut reader = reader_with(Limits::default(), stream.as_bytes());
        assert_eq!(
            first_error(&mut reader).condition,
            StreamErrorCondition::RestrictedXml,
            "{inner}"
        );
    }
}

#[test]
fn attribute_limits() {
    // The header has five attributes, declarations included.
    let limits = Limits {
        max_attributes: 5,
        ..Limits::default()
    };
    let ok = format!("{HEADER}<message a='1' b='2' c='3' d='4' e='5'/>");
    assert_eq!(read_session(&[ok.as_bytes()], 3, &limits).len(), 2);
    let many = format!("{HEADER}<message a='1' b='2' c='3' d='4' e='5' f='6'/>");
    let mut reader = reader_with(limits, many.as_bytes());
    assert_eq!(
        first_error(&mut reader).condition,
        StreamErrorCondition::PolicyViolation
    );
    let twice = format!("{HEADER}<message a='1' a='2'/>");
    let mut reader = reader_with(Limits::default(), twice.as_bytes());
    assert_eq!(
        first_error(&mut reader).condition,
        StreamErrorCondition::NotWellFormed
    );
}

#[test]
fn text_between_stanzas_is_bad_format() {
    let stream = format!("{HEADER}<presence/>hello<presence/>");
    let mut reader = reader_with(Limits::default(), stream.as_bytes());
    assert_eq!(
        first_error(&mut reader).condition,
        StreamErrorCondition::BadFormat
    );
}

#[test]
fn malformed_streams() {
    let cases = [
        (
            "<stream:stream xmlns:stream='urn:wrong'>",
            StreamErrorCondition::InvalidNamespace,
        ),
        (
            "HTTP/1.1 400 Bad Request\r\n\r\n",
            StreamErrorCondition::NotWellFormed,
        ),
        (
            "\u{16}\u{3}\u{1}\u{2}\u{0}",
            StreamErrorCondition::NotWellFormed,
        ),
        (
            "<message><body>x</message>",
            StreamErrorCondition::NotWellFormed,
        ),
        ("<x:message/>", StreamErrorCondition::NotWellFormed),
    ];
    for (input, condition) in cases {
        let stream = if input.starts_with("<message") || input.starts_with("<x:") {
            format!("{HEADER}{input}")
        } else {
            input.to_owned()
        };
        let mut reader = reader_with(Limits::default(), stream.as_bytes());
        let err = first_error(&mut reader);
        assert_eq!(err.condition, condition, "{input}: {err}");
    }
    // A UTF-16 byte order mark.
    let mut reader = reader_with(Limits::default(), &[0xff, 0xfe, b'<']);
    assert_eq!(
        first_error(&mut reader).condition,
        StreamErrorCondition::UnsupportedEncoding
    );
    let invalid_utf8 = [HEADER.as_bytes(), b"<message>\xc3\x28</message>"].concat();
    let mut reader = reader_with(Limits::default(), &invalid_utf8);
    assert_eq!(
        first_error(&mut reader).condition,
        StreamErrorCondition::UnsupportedEncoding
    );
}

#[test]
fn errors_are_final() {
    let stream = format!("{HEADER}<a><!-- x -->");
    let mut reader = reader_with(Limits::default(), stream.as_bytes());
    let err = first_error(&mut reader);
    assert_eq!(reader.next_event(), Err(err.clone()));
    assert_eq!(reader.feed(b"<presence/>"), Err(err.clone()));
    reader.restart();
    reader.feed(HEADER.as_bytes()).unwrap();
    assert!(matches!(
        reader.next_event(),
        Ok(Some(ServerEvent::Header(_)))
    ));
}

#[test]
fn end_of_stream_then_nothing() {
    let stream = format!("{HEADER}<presence/></stream:stream>");
    let events = read_session(&[stream.as_bytes()], 4, &Limits::default());
    assert_eq!(events.len(), 3);
    assert_eq!(events[2], ServerEvent::End);
    let mut reader = reader_with(Limits::default(), stream.as_bytes());
    while reader.next_event().unwrap() != Some(ServerEvent::End) {}
    reader.feed(b"garbage <<<").unwrap();
    assert_eq!(reader.next_event(), Ok(None));
}

#[test]
fn restart_discards_buffered_bytes() {
    let mut reader = reader_with(
        Limits::default(),
        format!("{HEADER}<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>\u{16}\u{3}")
            .as_bytes(),
    );
    assert!(matches!(
        reader.next_event(),
        Ok(Some(ServerEvent::Header(_)))
    ));
    assert!(matches!(
        reader.next_event(),
        Ok(Some(ServerEvent::Element(_)))
    ));
    reader.restart();
    reader.feed(b"\n").unwrap();
    assert_eq!(reader.next_event(), Ok(None));
    reader.feed(HEADER.as_bytes()).unwrap();
    assert!(matches!(
        reader.next_event(),
        Ok(Some(ServerEvent::Header(_)))
    ));
}

#[test]
fn unprefixed_stream_root_is_the_same_element() {
    let stream = "<stream xmlns='http://etherx.jabber.org/streams' version='1.0'>\
        <features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></features>";
    let events = read_session(&[stream.as_bytes()], 3, &Limits::default());
    assert_eq!(header(&events[0]).version.as_deref(), Some("1.0"));
    assert!(element(&events[1]).is("features", NS_STREAM));
}

#[test]
fn header_without_declaration_and_unprefixed_stream_children() {
    let stream = "<stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' xml:lang='de'>\
        <error xmlns='http://etherx.jabber.org/streams'><host-unknown \
        xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text \
        xmlns='urn:ietf:params:xml:ns:xmpp-streams'>no such host</text></error>";
    let events = read_session(&[stream.as_bytes()], 9, &Limits::default());
    assert_eq!(header(&events[0]).lang.as_deref(), Some("de"));
    let error = element(&events[1]);
    assert!(error.is("error", NS_STREAM));
    let parsed = StreamError::from_element(error);
    assert_eq!(parsed.condition, StreamErrorCondition::HostUnknown);
    assert_eq!(parsed.text, "no such host");
    assert!(error.has_child("host-unknown", NS_STREAMS));
}

#[test]
fn memory_is_given_back_after_a_big_stanza() {
    let mut reader = reader_with(Limits::default(), HEADER.as_bytes());
    reader.next_event().unwrap();
    let big = format!("<message><body>{}</body></message>", "y".repeat(200_000));
    for piece in big.as_bytes().chunks(8192) {
        reader.feed(piece).unwrap();
        while reader.next_event().unwrap().is_some() {}
    }
    assert_eq!(reader.pending.capacity(), 0);
    assert!(reader.guard.between_elements());
}

#[test]
fn root_attributes_are_checked_whatever_the_chunking() {
    let twice = "<stream:stream xmlns='jabber:client' xmlns:stream='urn:a' \
        xmlns:stream='http://etherx.jabber.org/streams'>";
    let many = format!(
        "{}<presence/>",
        HEADER.replace("id='s1'", "id='s1' a='1' b='2'")
    );
    let limits = Limits {
        max_attributes: 6,
        ..Limits::default()
    };
    for chunk in [1, 2, 7, 1000] {
        let (err, _) = feed_until_error(Limits::default(), twice.as_bytes(), chunk);
        assert_eq!(
            err.condition,
            StreamErrorCondition::NotWellFormed,
            "chunk {chunk}"
        );
        let (err, _) = feed_until_error(limits.clone(), many.as_bytes(), chunk);
        assert_eq!(
            err.condition,
            StreamErrorCondition::PolicyViolation,
            "chunk {chunk}"
        );
    }
}
