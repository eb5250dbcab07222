//! Who a SASL `<auth/>` names, read from its initial response without verifying anything.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use minidom::Element;

use crate::NS_SASL;

/// Who a SASL `<auth/>` element says is logging in (PLAIN's authzid/authcid, SCRAM's `n=`),
/// so a gateway can match it against the user it already authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslIdentity {
    pub mechanism: String,
    /// Authorization identity (a JID) when the client gave one.
    pub authzid: Option<String>,
    /// Authentication identity: the username (local part).
    pub authcid: String,
}

/// Clients differ on padding; the payload is what matters.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `None` when the element is not a SASL `<auth/>`, or its mechanism is one whose initial
/// response names no user (e.g. EXTERNAL, ANONYMOUS) or the payload is malformed.
pub fn sasl_identity(auth: &Element) -> Option<SaslIdentity> {
    if !auth.is("auth", NS_SASL) {
        return None;
    }
    let mechanism = auth.attr("mechanism")?;
    let encoded: String = auth
        .text()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    // RFC 6120 6.4.2: `=` is an empty initial response; nothing at all means none was sent.
    if encoded.is_empty() || encoded == "=" {
        return None;
    }
    let payload = String::from_utf8(BASE64.decode(encoded).ok()?).ok()?;
    let (authzid, authcid) = if mechanism == "PLAIN" {
        plain(&payload)?
    } else if mechanism.starts_with("SCRAM-") {
        scram(&payload)?
    } else {
        return None;
    };
    if authcid.is_empty() {
        return None;
    }
    Some(SaslIdentity {
        mechanism: mechanism.to_owned(),
        authzid: authzid.filter(|id| !id.is_empty()),
        authcid,
    })
}

/// RFC 4616: `authzid NUL authcid NUL passwd`.
fn plain(payload: &str) -> Option<(Option<String>, String)> {
    let mut parts = payload.split('\0');
    let authzid = parts.next()?;
    let authcid = parts.next()?;
    let _password = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    Some((Some(authzid.to_owned()), authcid.to_owned()))
}

/// RFC 5802 client-first-message: `gs2-cbind-flag "," [ "a=" saslname ] "," "n=" saslname
/// "," "r=" nonce ...`.
fn scram(payload: &str) -> Option<(Option<String>, String)> {
    let mut parts = payload.splitn(4, ',');
    let cbind = parts.next()?;
    if !(cbind == "n" || cbind == "y" || cbind.starts_with("p=")) {
        return None;
    }
    let authzid = match parts.next()? {
        "" => None,
        field => Some(saslname(field.strip_prefix("a=")?)?),
    };
    // A leading `m=` extension is one this code does not know, so the user is unknown too.
    let user = saslname(parts.next()?.strip_prefix("n=")?)?;
    parts.next()?.strip_prefix("r=")?;
    Some((authzid, user))
}

/// Undoes `=2C` (comma) and `=3D` (equals); any other `=` is malformed.
fn saslname(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3)?;
        out.push(match escape {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(mechanism: &str, payload: &[u8]) -> Element {
        Element::builder("auth", NS_SASL)
            .attr(rxml::NcName::try_from("mechanism").unwrap(), mechanism)
            .append(base64::engine::general_purpose::STANDARD.encode(payload))
            .build()
    }

    fn identity(mechanism: &str, authzid: Option<&str>, authcid: &str) -> Option<SaslIdentity> {
        Some(SaslIdentity {
            mechanism: mechanism.into(),
            authzid: authzid.map(Into::into),
            authcid: authcid.into(),
        })
    }

    #[test]
    fn plain() {
        assert_eq!(
            sasl_identity(&auth("PLAIN", b"\0juliet\0r0m30")),
            identity("PLAIN", None, "juliet")
        );
        assert_eq!(
            sasl_identity(&auth("PLAIN", b"juliet@example.com\0juliet\0r0m30")),
            identity("PLAIN", Some("juliet@example.com"), "juliet")
        );
        // Strophe.js sends the bare JID as authzid.
        let strophe: Element = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' \
            mechanism='PLAIN'>YWxpY2VAbG9jYWxob3N0AGFsaWNlAGFsaWNlLXBhc3M=</auth>"
            .parse()
            .unwrap();
        assert_eq!(
            sasl_identity(&strophe),
            identity("PLAIN", Some("alice@localhost"), "alice")
        );
        for bad in [
            &b"juliet"[..],
            b"\0juliet",
            b"\0\0pass",
            b"a\0b\0c\0d",
            b"\0\xff\xfe\0p",
        ] {
            assert_eq!(sasl_identity(&auth("PLAIN", bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn scram() {
        assert_eq!(
            sasl_identity(&auth(
                "SCRAM-SHA-1",
                b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
            )),
            identity("SCRAM-SHA-1", None, "user")
        );
        assert_eq!(
            sasl_identity(&auth(
                "SCRAM-SHA-256-PLUS",
                b"p=tls-exporter,a=admin=2Cx@example.com,n=we=3Dird=2Cname,r=abc,e=ext"
            )),
            identity(
                "SCRAM-SHA-256-PLUS",
                Some("admin,x@example.com"),
                "we=ird,name"
            )
        );
        assert_eq!(
            sasl_identity(&auth("SCRAM-SHA-1", b"y,,n=u,r=n")),
            identity("SCRAM-SHA-1", None, "u")
        );
        for bad in [
            &b"n,,m=ext,n=user,r=x"[..],
            b"n,,n=user",
            b"n,,n=,r=x",
            b"n,,n=us=41er,r=x",
            b"x,,n=user,r=x",
            b"n,b=x,n=user,r=x",
            b"n,,n=user=,r=x",
        ] {
            assert_eq!(sasl_identity(&auth("SCRAM-SHA-1", bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn nothing_to_read() {
        let empty: Element =
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>=</auth>"
                .parse()
                .unwrap();
        assert_eq!(sasl_identity(&empty), None);
        let none: Element =
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'/>"
                .parse()
                .unwrap();
        assert_eq!(sasl_identity(&none), None);
        assert_eq!(
            sasl_identity(&auth("EXTERNAL", b"juliet@example.com")),
            None
        );
        assert_eq!(sasl_identity(&auth("ANONYMOUS", b"trace")), None);
        let garbage: Element =
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!!</auth>"
                .parse()
                .unwrap();
        assert_eq!(sasl_identity(&garbage), None);
        let no_mechanism: Element =
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>AGEAYg==</auth>"
                .parse()
                .unwrap();
        assert_eq!(sasl_identity(&no_mechanism), None);
        let response: Element =
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>AGEAYg==</response>"
                .parse()
                .unwrap();
        assert_eq!(sasl_identity(&response), None);
        let wrong_ns: Element = "<auth xmlns='jabber:client' mechanism='PLAIN'>AGEAYg==</auth>"
            .parse()
            .unwrap();
        assert_eq!(sasl_identity(&wrong_ns), None);
        let unpadded: Element =
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg</auth>"
                .parse()
                .unwrap();
        assert_eq!(sasl_identity(&unpadded), identity("PLAIN", None, "a"));
    }
}
