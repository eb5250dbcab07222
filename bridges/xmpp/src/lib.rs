//! The XMPP bridge: XMPP over WebSocket (RFC 7395, subprotocol `xmpp`) from the browser,
//! XMPP over TCP (RFC 6120) with STARTTLS to the server.
