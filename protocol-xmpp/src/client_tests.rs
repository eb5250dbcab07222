use super::*;
use crate::{StreamErrorCondition, NS_SASL};

fn parse(text: &str) -> Result<ClientFrame, StreamError> {
    parse_client_message(text, &Limits::default())
}

fn condition(text: &str) -> StreamErrorCondition {
    match parse(text) {
        Err(err) => err.condition,
        Ok(frame) => panic!("{text:?} parsed as {frame:?}"),
    }
}

fn element(text: &str) -> Element {
    match parse(text) {
        Ok(ClientFrame::Element(element)) => element,
        other => panic!("{text:?} gave {other:?}"),
    }
}

#[test]
fn open_and_close() {
    // What Strophe.js and @xmpp/client send.
    let open = parse(
        r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" version="1.0" xml:lang="en" from="juliet@example.com" id="x"/>"#,
    )
    .unwrap();
    assert_eq!(
        open,
        ClientFrame::Open(Open {
            to: Some("example.com".into()),
            from: Some("juliet@example.com".into()),
            id: Some("x".into()),
            version: Some("1.0".into()),
            lang: Some("en".into()),
        })
    );
    assert_eq!(
        parse("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>").unwrap(),
        ClientFrame::Open(Open::default())
    );
    assert_eq!(
        parse(r#"<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>"#).unwrap(),
        ClientFrame::Close
    );
}

#[test]
fn framing_elements_in_the_wrong_namespace() {
    for text in [
        "<open to='example.com' version='1.0'/>",
        "<open xmlns='jabber:client' to='example.com'/>",
        "<open xmlns='http://etherx.jabber.org/streams'/>",
        "<close/>",
        "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing-wrong'/>",
        "<message xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
    ] {
        assert_eq!(
            condition(text),
            StreamErrorCondition::InvalidNamespace,
            "{text}"
        );
    }
}

#[test]
fn stanzas_default_to_jabber_client() {
    let bare = element("<message to='romeo@example.net'><body>hi</body></message>");
    assert!(bare.is("message", NS_CLIENT));
    assert!(bare.get_child("body", NS_CLIENT).is_some());
    let declared = element(
        r#"<message xmlns="jabber:client" to="romeo@example.net"><body>hi</body></message>"#,
    );
    assert_eq!(bare, declared);
    let prefixed = element(
        "<c:message xmlns:c='jabber:client' to='romeo@example.net'><c:body>hi</c:body></c:message>",
    );
    assert_eq!(prefixed, declared);
}

#[test]
fn child_namespaces_and_lang_survive() {
    let iq = element(
        "<iq type='get' id='r1' xml:lang='fr'><query xmlns='jabber:iq:roster'><item jid='a@b'/></query></iq>",
    );
    assert_eq!(crate::xml_lang(&iq).as_deref(), Some("fr"));
    let query = iq.get_child("query", "jabber:iq:roster").unwrap();
    assert!(query.has_child("item", "jabber:iq:roster"));
    let auth = element(
        r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">AGp1bGlldAByMG0zMA==</auth>"#,
    );
    assert!(auth.is("auth", NS_SASL));
    assert_eq!(auth.text(), "AGp1bGlldAByMG0zMA==");
}

#[test]
fn whitespace_around_the_element_is_allowed() {
    assert!(element("\n  <presence/>\r\n\t").is("presence", NS_CLIENT));
    assert!(element("<?xml version='1.0'?><presence/>").is("presence", NS_CLIENT));
}

#[test]
fn one_element_per_message() {
    for text in [
        "hello <presence/>",
        "<presence/> hello",
        "<presence/><presence/>",
        "<message/><iq/>",
        "",
        "   ",
        "just text",
        "<message/><!-- hi -->",
    ] {
        assert_eq!(
            condition(text),
            StreamErrorCondition::NotWellFormed,
            "{text:?}"
        );
    }
}

#[test]
fn broken_xml_is_not_well_formed() {
    for text in [
        "<message>",
        "<message><body>hi</message>",
        "<message",
        "<message to='x>",
        "<x:message/>",
        "<message a='1' a='2'/>",
        "<message xmlns:a='urn:a' xmlns:b='urn:a' a:x='1' a:x='2'/>",
        "<1message/>",
        "</message>",
        "<message>\u{1}</message>",
        "<message>&#0;</message>",
    ] {
        assert_eq!(
            condition(text),
            StreamErrorCondition::NotWellFormed,
            "{text:?}"
        );
    }
}

#[test]
fn binary_garbage_is_refused_without_panicking() {
    let mut seed = 0x2545_f491_u32;
    for len in 0..300 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        let text = String::from_utf8_lossy(&bytes);
        assert!(parse(&text).is_err(), "{text:?}");
    }
    assert_eq!(
        condition("\u{16}\u{3}\u{1}\u{0}\u{a5}\u{1}"),
        StreamErrorCondition::NotWellFormed
    );
}

#[test]
fn dtds_entities_comments_and_processing_instructions_are_restricted() {
    let billion_laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]><message><body>&lol2;</body></message>"#;
    for text in [
        billion_laughs,
        "<!DOCTYPE message><message/>",
        "<message><body>&lol9;</body></message>",
        "<message><body>&nbsp;</body></message>",
        "<message><!-- hi --></message>",
        "<!-- hi --><message/>",
        "<message><?php x ?></message>",
        "<?php x ?><message/>",
        "<?xml version='1.1'?><message/>",
    ] {
        assert_eq!(
            condition(text),
            StreamErrorCondition::RestrictedXml,
            "{text}"
        );
    }
    assert_eq!(
        condition("<?xml version='1.0' encoding='ISO-8859-1'?><message/>"),
        StreamErrorCondition::UnsupportedEncoding
    );
    // The five predefined entities and character references are plain XML.
    let body = element("<body>&lt;&gt;&amp;&apos;&quot;&#65;&#x42;</body>");
    assert_eq!(body.text(), "<>&'\"AB");
}

#[test]
fn limits_are_policy_violations() {
    let limits = Limits {
        max_element_bytes: 64,
        max_depth: 3,
        max_attributes: 2,
    };
    let check = |text: &str| parse_client_message(text, &limits).map(|_| ());
    assert_eq!(check("<message><body><x/></body></message>"), Ok(()));
    assert_eq!(check("<message a='1' b='2'/>"), Ok(()));
    for text in [
        "<message><body><x><y/></x></body></message>",
        "<message a='1' b='2' c='3'/>",
        "<message xmlns='jabber:client' a='1' b='2'/>",
        &format!("<message>{}</message>", "x".repeat(60)),
    ] {
        assert_eq!(
            check(text).unwrap_err().condition,
            StreamErrorCondition::PolicyViolation,
            "{text}"
        );
    }
}

#[test]
fn ten_thousand_deep_nesting_is_refused() {
    let deep = "<a>".repeat(10_000) + &"</a>".repeat(10_000);
    let err = parse(&deep).unwrap_err();
    assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
    let unclosed = "<a>".repeat(10_000);
    assert_eq!(condition(&unclosed), StreamErrorCondition::PolicyViolation);
}

#[test]
fn ten_megabyte_message_is_refused_before_parsing() {
    let big = format!("<message><body>{}</body></message>", "x".repeat(10 << 20));
    let err = parse(&big).unwrap_err();
    assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
}

#[test]
fn long_names_are_policy_violations() {
    let long = format!("<message to='{}'/>", "x".repeat(20_000));
    assert_eq!(condition(&long), StreamErrorCondition::PolicyViolation);
    let long_text = format!("<message><body>{}</body></message>", "x".repeat(100_000));
    let body = element(&long_text)
        .get_child("body", NS_CLIENT)
        .unwrap()
        .text();
    assert_eq!(body.len(), 100_000);
}
