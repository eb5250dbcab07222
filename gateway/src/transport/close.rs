use bridge_api::{close_code, BridgeError, CloseFrame};

/// Close reasons must fit a control frame (125 bytes with the code).
pub fn truncate_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

/// The close frame for a session whose bridge returned `result`.
pub fn close_for_bridge_result(
    result: &Result<(), BridgeError>,
    shutting_down: bool,
) -> CloseFrame {
    match result {
        Err(e) => CloseFrame {
            code: e.close_code(),
            reason: truncate_reason(e.message()),
        },
        Ok(()) if shutting_down => CloseFrame {
            code: close_code::GOING_AWAY,
            reason: "server shutting down".into(),
        },
        Ok(()) => CloseFrame {
            code: close_code::NORMAL,
            reason: String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_by_side_and_shutdown() {
        let backend = Err(BridgeError::backend("refused"));
        assert_eq!(close_for_bridge_result(&backend, false).code, 1014);
        assert_eq!(close_for_bridge_result(&Ok(()), true).code, 1001);
        assert_eq!(close_for_bridge_result(&Ok(()), false).code, 1000);
    }

    #[test]
    fn reasons_fit_a_control_frame() {
        let long = "é".repeat(100);
        let r = truncate_reason(&long);
        assert!(r.len() <= 123);
        assert!(long.starts_with(&r));
    }
}
