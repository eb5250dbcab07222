//! The XMPP bridge's metrics. Names start with `gateway_xmpp_`, like the rest of the
//! gateway's. Stanza counters are resolved once per service so the per-stanza cost is an
//! atomic add.

use metrics::{Counter, Gauge};
use protocol_xmpp::{StanzaKind, StreamErrorCondition};

/// Who produced a stream error: the client sent one, the server sent one, or the gateway
/// generated it (for either side's fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
    Gateway,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
            Side::Gateway => "gateway",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Login {
    Success,
    SaslFailure,
    TlsFailure,
    ServerUnreachable,
}

impl Login {
    fn as_str(self) -> &'static str {
        match self {
            Login::Success => "success",
            Login::SaslFailure => "sasl-failure",
            Login::TlsFailure => "tls-failure",
            Login::ServerUnreachable => "server-unreachable",
        }
    }
}

const KINDS: [StanzaKind; 4] = [
    StanzaKind::Message,
    StanzaKind::Presence,
    StanzaKind::Iq,
    StanzaKind::Other,
];

fn kind_index(kind: StanzaKind) -> usize {
    match kind {
        StanzaKind::Message => 0,
        StanzaKind::Presence => 1,
        StanzaKind::Iq => 2,
        StanzaKind::Other => 3,
    }
}

pub struct Metrics {
    stanzas_in: [Counter; 4],
    stanzas_out: [Counter; 4],
}

impl Metrics {
    pub fn new() -> Self {
        describe();
        let counters = |direction: &'static str| {
            KINDS.map(|kind| {
                metrics::counter!("gateway_xmpp_stanzas_total", "direction" => direction, "kind" => kind.as_str())
            })
        };
        Metrics {
            stanzas_in: counters("in"),
            stanzas_out: counters("out"),
        }
    }

    /// Client to server.
    pub fn stanza_in(&self, kind: StanzaKind) {
        self.stanzas_in[kind_index(kind)].increment(1);
    }

    /// Server to client.
    pub fn stanza_out(&self, kind: StanzaKind) {
        self.stanzas_out[kind_index(kind)].increment(1);
    }
}

pub fn login(result: Login) {
    metrics::counter!("gateway_xmpp_logins_total", "result" => result.as_str()).increment(1);
}

pub fn stream_error(condition: StreamErrorCondition, side: Side) {
    metrics::counter!("gateway_xmpp_stream_errors_total", "condition" => condition.as_str(), "side" => side.as_str())
        .increment(1);
}

pub fn connect_seconds(seconds: f64) {
    metrics::histogram!("gateway_xmpp_server_connect_seconds").record(seconds);
}

/// Counts a session towards `gateway_xmpp_sessions_active{server}` for as long as it lives.
pub struct ActiveSession(Gauge);

impl ActiveSession {
    pub fn new(server: String) -> Self {
        let gauge = metrics::gauge!("gateway_xmpp_sessions_active", "server" => server);
        gauge.increment(1.0);
        ActiveSession(gauge)
    }
}

impl Drop for ActiveSession {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        "gateway_xmpp_sessions_active",
        "XMPP sessions with an open server stream, by server"
    );
    describe_counter!(
        "gateway_xmpp_logins_total",
        "XMPP logins and connection attempts by result"
    );
    describe_counter!(
        "gateway_xmpp_stanzas_total",
        "Top-level XMPP elements relayed, by direction (in: client to server) and kind"
    );
    describe_counter!(
        "gateway_xmpp_stream_errors_total",
        "Stream errors by condition and the side that produced them"
    );
    describe_histogram!(
        "gateway_xmpp_server_connect_seconds",
        Unit::Seconds,
        "TCP connect plus TLS to the XMPP server"
    );
}
