//! The fuzz targets' logic, shared with the corpus replay test so every corpus and
//! regression file is checked on each `cargo test`.

use crate::{
    client_open, parse_client_message, server_header, to_client, to_server, ClientFrame, Element,
    Limits, ServerEvent, StanzaKind, StreamError, StreamErrorCondition, StreamReader, NS_FRAMING,
};

/// Small limits so short inputs reach every limit check.
fn small_limits() -> Limits {
    Limits {
        max_element_bytes: 512,
        max_depth: 8,
        max_attributes: 8,
    }
}

/// Room for anything the serialisers make of an element that passed `small_limits`.
fn roomy_limits() -> Limits {
    Limits {
        max_element_bytes: 1 << 20,
        max_depth: 64,
        max_attributes: 64,
    }
}

const STREAM_HEADER: &str = "<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams'>";

/// What one reader run produced.
#[derive(Debug)]
struct Run {
    events: Vec<ServerEvent>,
    error: Option<StreamError>,
    /// The error came from `feed`'s buffering bound, which depends on the chunking.
    refused_feed: bool,
    /// Index of the document the error happened in.
    error_document: Option<usize>,
}

/// Input: byte 0 seeds the chunk sizes; the rest is the server's bytes, with NUL separating
/// XML documents (the reader restarts between them, as after STARTTLS and SASL). Any
/// chunking must give the events of byte-at-a-time feeding, or a prefix of them when
/// `feed` refuses to buffer more; every element must survive both serialisers.
#[doc(hidden)]
pub fn fuzz_stream(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let documents: Vec<&[u8]> = stream.split(|&b| b == 0).collect();
    let reference = run(&documents, &mut |_| 1);
    assert!(!reference.refused_feed || reference.error.is_some());
    let mut state = u32::from(seed) | 0x100;
    let max_chunk = 1 + usize::from(seed) * 3;
    let chunked = run(&documents, &mut |left| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (1 + state as usize % max_chunk).min(left)
    });
    if chunked.refused_feed {
        assert!(
            reference.events.starts_with(&chunked.events),
            "chunking changed events before a refused feed"
        );
    } else if chunked.error_document == reference.error_document {
        assert_eq!(chunked.events, reference.events, "chunking changed events");
        let (chunked, reference) = (condition(&chunked), condition(&reference));
        // Misplaced text that is also malformed (bad UTF-8, a forbidden character) is
        // reported for whichever fault rxml sees first, which depends on how much of it one
        // read holds.
        assert!(
            chunked == reference || (malformed_text(chunked) && malformed_text(reference)),
            "chunking changed the outcome: {chunked:?} instead of {reference:?}"
        );
    } else {
        // Whether rxml has already found malformed bytes in an unfinished token depends on
        // the read size. A restart discards such a token, so one run may fail in a document
        // a restart cut short while the other goes on; at the end of the input the other run
        // may simply still be waiting for the token's end (then it got no further).
        let at = |run: &Run| run.error_document.unwrap_or(usize::MAX);
        let (early, late) = if at(&chunked) < at(&reference) {
            (&chunked, &reference)
        } else {
            (&reference, &chunked)
        };
        let cut_short = early
            .error_document
            .is_some_and(|index| index + 1 < documents.len());
        let unfinished_at_end = late.error.is_none() && late.events == early.events;
        assert!(
            (cut_short || unfinished_at_end) && malformed_text(condition(early)),
            "chunking changed the outcome: {:?} in document {:?} instead of {:?} in {:?}",
            condition(&chunked),
            chunked.error_document,
            condition(&reference),
            reference.error_document
        );
        assert!(
            late.events.starts_with(&early.events),
            "chunking changed events"
        );
    }
    for event in &reference.events {
        match event {
            ServerEvent::Element(element) => check_element(element),
            ServerEvent::Header(header) => {
                let open = match parse_client_message(&client_open(header), &roomy_limits()) {
                    Ok(ClientFrame::Open(open)) => open,
                    other => panic!("client_open re-parsed as {other:?}"),
                };
                assert_eq!(
                    (&open.from, &open.to, &open.id, &open.lang),
                    (&header.from, &header.to, &header.id, &header.lang)
                );
            }
            ServerEvent::End => {}
        }
    }
}

/// Input: one WebSocket message (lossily UTF-8). Whatever parses must survive both
/// serialisers and read the same inside a server stream.
#[doc(hidden)]
pub fn fuzz_client_message(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match parse_client_message(&text, &small_limits()) {
        Ok(ClientFrame::Element(element)) => {
            check_element(&element);
            if !text.trim_start().starts_with("<?") {
                let mut stream = STREAM_HEADER.to_owned();
                stream.push_str(&text);
                assert_eq!(
                    stream_elements(stream.as_bytes(), &small_limits()),
                    vec![element],
                    "the stream reads the message differently"
                );
            }
        }
        Ok(ClientFrame::Open(open)) => {
            let mut reader = StreamReader::new(roomy_limits());
            reader.feed(server_header(&open).as_bytes()).unwrap();
            match reader.next_event() {
                Ok(Some(ServerEvent::Header(header))) => assert_eq!(
                    (&header.to, &header.from, &header.lang),
                    (&open.to, &open.from, &open.lang)
                ),
                other => panic!("server_header re-read as {other:?}"),
            }
        }
        Ok(ClientFrame::Close) | Err(_) => {}
    }
}

fn condition(run: &Run) -> Option<StreamErrorCondition> {
    run.error.as_ref().map(|e| e.condition)
}

fn malformed_text(condition: Option<StreamErrorCondition>) -> bool {
    matches!(
        condition,
        Some(
            StreamErrorCondition::NotWellFormed
                | StreamErrorCondition::BadFormat
                | StreamErrorCondition::UnsupportedEncoding
        )
    )
}

fn run(documents: &[&[u8]], next_chunk: &mut dyn FnMut(usize) -> usize) -> Run {
    let mut reader = StreamReader::new(small_limits());
    let mut events = Vec::new();
    for (index, document) in documents.iter().enumerate() {
        if index > 0 {
            reader.restart();
        }
        let mut rest = *document;
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(next_chunk(rest.len()));
            rest = tail;
            if let Err(err) = reader.feed(piece) {
                return Run {
                    events,
                    error: Some(err),
                    refused_feed: true,
                    error_document: Some(index),
                };
            }
            loop {
                match reader.next_event() {
                    Ok(Some(event)) => events.push(event),
                    Ok(None) => break,
                    Err(err) => {
                        return Run {
                            events,
                            error: Some(err),
                            refused_feed: false,
                            error_document: Some(index),
                        }
                    }
                }
            }
        }
    }
    Run {
        events,
        error: None,
        refused_feed: false,
        error_document: None,
    }
}

/// Every element must come back unchanged from what each side is sent.
fn check_element(element: &Element) {
    let _ = StanzaKind::of(element);
    let _ = crate::sasl_identity(element);
    let _ = StreamError::from_element(element);
    let framing = element.has_ns(NS_FRAMING) || matches!(element.name(), "open" | "close");
    let browser = to_client(element);
    if !framing {
        match parse_client_message(&browser, &roomy_limits()) {
            Ok(ClientFrame::Element(again)) => assert_eq!(&again, element, "{browser}"),
            other => panic!("to_client wrote {browser:?}, which re-parsed as {other:?}"),
        }
    }
    let mut stream = STREAM_HEADER.to_owned();
    stream.push_str(&to_server(element));
    assert_eq!(
        stream_elements(stream.as_bytes(), &roomy_limits()),
        vec![element.clone()],
        "to_server wrote {stream:?}"
    );
}

/// The elements of a stream that must read without error, fed in small reads as the
/// bridge does so the buffering bound does not apply.
fn stream_elements(stream: &[u8], limits: &Limits) -> Vec<Element> {
    let mut reader = StreamReader::new(limits.clone());
    let mut elements = Vec::new();
    let fail =
        |err: StreamError| -> ! { panic!("{err} reading {:?}", String::from_utf8_lossy(stream)) };
    for piece in stream.chunks(64) {
        reader.feed(piece).unwrap_or_else(|err| fail(err));
        loop {
            match reader.next_event() {
                Ok(Some(ServerEvent::Element(element))) => elements.push(element),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(err) => fail(err),
            }
        }
    }
    elements
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_run() {
        fuzz_stream(b"");
        fuzz_stream(b"\x07<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><stream:features/><proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\0<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'> <message><body>x &amp; y</body></message></stream:stream>");
        fuzz_client_message(b"<message to='a'><body>hi</body></message>");
        fuzz_client_message(
            b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='x' xml:lang='en'/>",
        );
        fuzz_client_message(b"\xff<<");
    }

    #[test]
    fn pseudo_random_inputs_hold_the_invariants() {
        let pieces: [&[u8]; 16] = [
            b"<message>",
            b"</message>",
            b"<body xml:lang='en'>",
            b"</body>",
            b"a&amp;b",
            b" ",
            b"<x xmlns='urn:x' a='1'/>",
            b"<stream:features>",
            b"</stream:features>",
            b"\0",
            STREAM_HEADER.as_bytes(),
            b"<iq type='get'><q xmlns:p='urn:p' p:a='&lt;'/></iq>",
            "é漢😀".as_bytes(),
            b"<!--",
            b"</stream:stream>",
            b"<y xmlns=''/>",
        ];
        let mut state = 0x1234_5678_u32;
        for _ in 0..3000 {
            let mut data = vec![state as u8];
            let mut stream = STREAM_HEADER.as_bytes().to_vec();
            for _ in 0..(state % 12) {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                stream.extend_from_slice(pieces[state as usize % pieces.len()]);
            }
            data.extend_from_slice(&stream);
            fuzz_stream(&data);
            fuzz_client_message(&stream[STREAM_HEADER.len()..]);
            state = state.wrapping_mul(2_654_435_761).wrapping_add(1);
        }
    }
}
