//! Replays the fuzz seed corpora and any saved fuzzer regressions through the fuzz
//! targets' logic, so they stay fixed without a nightly toolchain.

use std::path::Path;

fn replay(dir: &Path, target: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut count = 0;
    for entry in entries {
        let path = entry.expect("readable directory").path();
        if !path.is_file() {
            continue;
        }
        let data = std::fs::read(&path).expect("readable corpus file");
        let outcome = std::panic::catch_unwind(|| target(&data));
        assert!(outcome.is_ok(), "fuzz logic panicked on {}", path.display());
        count += 1;
    }
    count
}

#[test]
fn corpora_and_regressions_do_not_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let streams = replay(&root.join("corpus/stream"), protocol_xmpp::fuzz_stream);
    assert!(
        streams >= 30,
        "stream corpus went missing ({streams} files)"
    );
    let messages = replay(
        &root.join("corpus/client_message"),
        protocol_xmpp::fuzz_client_message,
    );
    assert!(
        messages >= 30,
        "client message corpus went missing ({messages} files)"
    );
    replay(&root.join("regressions/stream"), protocol_xmpp::fuzz_stream);
    replay(
        &root.join("regressions/client_message"),
        protocol_xmpp::fuzz_client_message,
    );
}
