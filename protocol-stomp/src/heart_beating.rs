//! STOMP 1.1+ heart-beating (§Heart-beating): each side's `heart-beat: x,y` says it can send
//! every `x` ms and wants to receive every `y` ms; 0 means cannot / does not want.

/// A `heart-beat` header's two numbers; `None` when the header is not `x,y`.
pub fn parse_heart_beat(header: &str) -> Option<(u64, u64)> {
    let (x, y) = header.split_once(',')?;
    Some((x.trim().parse().ok()?, y.trim().parse().ok()?))
}

/// The negotiated intervals in ms, from our `heart-beat: x,y` and the peer's: how often
/// we send, max(our x, their y), and how often we expect to hear from them, max(their x,
/// our y); 0 (never) when either side said 0.
pub fn negotiate(ours: (u64, u64), theirs: (u64, u64)) -> (u64, u64) {
    let every = |a: u64, b: u64| if a == 0 || b == 0 { 0 } else { a.max(b) };
    (every(ours.0, theirs.1), every(theirs.0, ours.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slower_side_wins_and_zero_means_never() {
        assert_eq!(negotiate((1000, 1000), (10_000, 500)), (1000, 10_000));
        assert_eq!(negotiate((1000, 1000), (0, 0)), (0, 0));
        assert_eq!(negotiate((0, 5000), (4000, 4000)), (0, 5000));
    }

    #[test]
    fn headers_are_two_numbers() {
        assert_eq!(parse_heart_beat("10000, 0"), Some((10_000, 0)));
        assert_eq!(parse_heart_beat("1,2,3"), None);
        assert_eq!(parse_heart_beat("soon"), None);
    }
}
