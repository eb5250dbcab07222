use super::*;
use crate::{
    parse_client_message, ClientFrame, Limits, ServerEvent, StreamErrorCondition, StreamReader,
    NS_SASL,
};

const STREAM_HEADER: &str = "<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams'>";

fn from_client(text: &str) -> Element {
    match parse_client_message(text, &Limits::default()) {
        Ok(ClientFrame::Element(element)) => element,
        other => panic!("{text} gave {other:?}"),
    }
}

/// What `text` is when it arrives inside a server stream.
fn from_stream(text: &str) -> Element {
    let mut reader = StreamReader::new(Limits::default());
    reader.feed(STREAM_HEADER.as_bytes()).unwrap();
    reader.feed(text.as_bytes()).unwrap();
    assert!(matches!(
        reader.next_event(),
        Ok(Some(ServerEvent::Header(_)))
    ));
    match reader.next_event() {
        Ok(Some(ServerEvent::Element(element))) => element,
        other => panic!("{text} gave {other:?}"),
    }
}

#[test]
fn stanza_inheriting_jabber_client_declares_it_for_the_browser() {
    let message = from_stream("<message to='a@b' type='chat'><body>hi</body></message>");
    assert_eq!(
        to_client(&message),
        r#"<message xmlns="jabber:client" to="a@b" type="chat"><body>hi</body></message>"#
    );
    assert_eq!(from_client(&to_client(&message)), message);
}

#[test]
fn stream_elements_declare_the_stream_prefix_for_the_browser() {
    let features = from_stream(
        "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
         <mechanism>PLAIN</mechanism></mechanisms><ver xmlns='urn:xmpp:features:rosterver'/>\
         </stream:features>",
    );
    let text = to_client(&features);
    assert_eq!(
        text,
        "<stream:features xmlns:stream=\"http://etherx.jabber.org/streams\">\
         <mechanisms xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\"><mechanism>PLAIN</mechanism>\
         </mechanisms><ver xmlns=\"urn:xmpp:features:rosterver\"/></stream:features>"
    );
    assert_eq!(from_client(&text), features);
}

#[test]
fn stream_children_in_the_default_namespace_stay_there() {
    let error = from_stream("<stream:error><x/></stream:error>");
    let text = to_client(&error);
    assert!(text.contains(r#"<x xmlns="jabber:client"/>"#), "{text}");
    assert_eq!(from_client(&text), error);
    assert_eq!(from_stream(&to_server(&error)), error);
}

#[test]
fn stanzas_to_the_server_rely_on_the_stream_default() {
    let message =
        from_client(r#"<message xmlns="jabber:client" to="a@b"><body>x</body></message>"#);
    assert_eq!(
        to_server(&message),
        r#"<message to="a@b"><body>x</body></message>"#
    );
    let auth = from_client(
        r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">AGEAYg==</auth>"#,
    );
    assert_eq!(
        to_server(&auth),
        r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">AGEAYg==</auth>"#
    );
    assert_eq!(from_stream(&to_server(&auth)), auth);
    assert!(auth.is("auth", NS_SASL));
}

#[test]
fn escaping_round_trips_on_both_sides() {
    let nasty = "a&b<c>d\"e'f\tg\nh\ri]]>j &amp; é漢😀";
    let element = Element::builder("message", NS_CLIENT)
        .attr(rxml::NcName::try_from("to").unwrap(), nasty)
        .append(Element::builder("body", NS_CLIENT).append(nasty).build())
        .build();
    let text = to_client(&element);
    assert!(text.contains("&amp;b&lt;c&gt;d&quot;e&apos;f&#9;g&#10;h&#13;i]]&gt;j &amp;amp;"));
    let again = from_client(&text);
    assert_eq!(again, element);
    assert_eq!(again.attr("to"), Some(nasty));
    assert_eq!(again.get_child("body", NS_CLIENT).unwrap().text(), nasty);
    assert_eq!(from_stream(&to_server(&element)), element);
}

#[test]
fn characters_xml_cannot_carry_are_replaced() {
    let element = Element::builder("message", NS_CLIENT)
        .append(
            Element::builder("body", NS_CLIENT)
                .append("a\u{0}b\u{1b}c\u{fffe}")
                .build(),
        )
        .build();
    let again = from_client(&to_client(&element));
    assert_eq!(
        again.get_child("body", NS_CLIENT).unwrap().text(),
        "a\u{fffd}b\u{fffd}c\u{fffd}"
    );
}

#[test]
fn lang_and_namespaced_attributes_survive() {
    let stanza = from_stream(
        "<message xml:lang='de' xmlns:x='urn:x' x:flag='1'><body xml:lang='en'>hi</body>\
         <data xmlns='urn:y' xmlns:z='urn:z' z:a='2' b='3'/></message>",
    );
    let text = to_client(&stanza);
    assert!(text.contains(r#"xml:lang="de""#), "{text}");
    let again = from_client(&text);
    assert_eq!(again, stanza);
    assert_eq!(again.attr_ns("urn:x", "flag"), Some("1"));
    assert_eq!(from_stream(&to_server(&stanza)), stanza);
}

#[test]
fn no_namespace_stays_no_namespace() {
    let stanza = from_stream("<message><x xmlns=''><y/></x></message>");
    let x = stanza.children().next().unwrap();
    assert_eq!(x.ns(), "");
    assert_eq!(from_client(&to_client(&stanza)), stanza);
    assert_eq!(from_stream(&to_server(&stanza)), stanza);
    let top = Element::bare("x", "");
    assert_eq!(to_client(&top), r#"<x xmlns=""/>"#);
    assert_eq!(from_client(&to_client(&top)), top);
}

#[test]
fn open_for_the_browser() {
    let header = StreamHeader {
        from: Some("example.com".into()),
        to: None,
        id: Some("a\"b".into()),
        version: Some("1.0".into()),
        lang: Some("en".into()),
    };
    let open = client_open(&header);
    assert_eq!(
        open,
        r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from="example.com" id="a&quot;b" version="1.0" xml:lang="en"/>"#
    );
    match parse_client_message(&open, &Limits::default()) {
        Ok(ClientFrame::Open(parsed)) => {
            assert_eq!(parsed.from, header.from);
            assert_eq!(parsed.id, header.id);
            assert_eq!(parsed.lang, header.lang);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        parse_client_message(client_close(), &Limits::default()),
        Ok(ClientFrame::Close)
    );
}

#[test]
fn header_for_the_server() {
    let open = Open {
        to: Some("example.com".into()),
        from: Some("juliet@example.com".into()),
        id: Some("ignored".into()),
        version: None,
        lang: Some("en".into()),
    };
    let text = server_header(&open);
    assert!(
        text.starts_with("<?xml version='1.0'?><stream:stream "),
        "{text}"
    );
    let mut reader = StreamReader::new(Limits::default());
    reader.feed(text.as_bytes()).unwrap();
    reader.feed(b"<presence/>").unwrap();
    reader.feed(server_close().as_bytes()).unwrap();
    let Ok(Some(ServerEvent::Header(header))) = reader.next_event() else {
        panic!("no header");
    };
    assert_eq!(header.to.as_deref(), Some("example.com"));
    assert_eq!(header.from.as_deref(), Some("juliet@example.com"));
    assert_eq!(header.id, None);
    assert_eq!(header.version.as_deref(), Some("1.0"));
    assert_eq!(header.lang.as_deref(), Some("en"));
    let Ok(Some(ServerEvent::Element(presence))) = reader.next_event() else {
        panic!("no presence");
    };
    assert!(presence.is("presence", NS_CLIENT));
    assert_eq!(reader.next_event(), Ok(Some(ServerEvent::End)));
}

#[test]
fn stream_errors_on_both_sides() {
    let error = StreamError::new(StreamErrorCondition::PolicyViolation, "too <big> & \"bad\"");
    let text = stream_error_to_client(&error);
    assert_eq!(
        text,
        "<stream:error xmlns:stream=\"http://etherx.jabber.org/streams\">\
         <policy-violation xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>\
         <text xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\">too &lt;big&gt; &amp; \"bad\"</text>\
         </stream:error>"
    );
    assert_eq!(StreamError::from_element(&from_client(&text)), error);
    let to_server = stream_error_to_server(&error);
    assert!(!to_server.contains("xmlns:stream"));
    assert_eq!(StreamError::from_element(&from_stream(&to_server)), error);

    let bare = StreamError::new(StreamErrorCondition::Conflict, "");
    assert_eq!(
        stream_error_to_client(&bare),
        "<stream:error xmlns:stream=\"http://etherx.jabber.org/streams\">\
         <conflict xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/></stream:error>"
    );
}
