//! Frame commands (the first line of every frame).

/// Every command defined by STOMP 1.0–1.2, client and server side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    Connect,
    Stomp,
    Send,
    Subscribe,
    Unsubscribe,
    Ack,
    Nack,
    Begin,
    Commit,
    Abort,
    Disconnect,
    Connected,
    Message,
    Receipt,
    Error,
}

/// All commands, used for parsing and for the early "can this still become
/// a command?" check that rejects garbage after its first byte.
const ALL: [Command; 15] = [
    Command::Connect,
    Command::Stomp,
    Command::Send,
    Command::Subscribe,
    Command::Unsubscribe,
    Command::Ack,
    Command::Nack,
    Command::Begin,
    Command::Commit,
    Command::Abort,
    Command::Disconnect,
    Command::Connected,
    Command::Message,
    Command::Receipt,
    Command::Error,
];

/// Length of the longest command name ("UNSUBSCRIBE").
pub(crate) const MAX_COMMAND_LEN: usize = 11;

impl Command {
    /// Every command, in declaration order: `Command::ALL[c as usize] == c`.
    pub const ALL: [Command; 15] = ALL;
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Connected => "CONNECTED",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// Exact, case-sensitive match: the spec spells commands in upper case
    /// and tolerating variants would only widen the attack surface.
    pub fn parse(line: &[u8]) -> Option<Command> {
        ALL.into_iter().find(|c| c.as_str().as_bytes() == line)
    }

    /// Whether `partial` (an incomplete first line) is a prefix of some
    /// command, so a non-STOMP stream (e.g. an HTTP request) fails at once
    /// instead of after a full line has been buffered.
    pub(crate) fn could_start(partial: &[u8]) -> bool {
        ALL.into_iter()
            .any(|c| c.as_str().as_bytes().starts_with(partial))
    }

    /// CONNECT, STOMP and CONNECTED never escape header octets (spec 1.1,
    /// 1.2), so that a peer can parse them before any version is agreed.
    pub(crate) fn is_unescaped(self) -> bool {
        matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_every_command() {
        for (i, c) in ALL.into_iter().enumerate() {
            assert_eq!(c as usize, i, "ALL is in declaration order");
            assert_eq!(Command::parse(c.as_str().as_bytes()), Some(c));
            assert!(c.as_str().len() <= MAX_COMMAND_LEN);
        }
        assert_eq!(Command::parse(b"send"), None);
        assert_eq!(Command::parse(b"SEND "), None);
        assert_eq!(Command::parse(b""), None);
    }

    #[test]
    fn could_start_rejects_foreign_protocols_early() {
        assert!(Command::could_start(b""));
        assert!(Command::could_start(b"CONN"));
        assert!(Command::could_start(b"UNSUBSCRIBE"));
        assert!(!Command::could_start(b"G"));
        assert!(!Command::could_start(b"SENDX"));
    }
}
