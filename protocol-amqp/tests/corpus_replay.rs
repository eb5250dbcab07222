//! Replays the fuzz seed corpus and any saved fuzzer regressions through the fuzz target's
//! logic (the same file, included by path), so they stay fixed without a nightly toolchain.

use std::path::Path;

#[path = "../fuzz/fuzz_logic.rs"]
mod fuzz_logic;

fn replay(dir: &Path) -> usize {
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
        let outcome = std::panic::catch_unwind(|| fuzz_logic::fuzz_decode(&data));
        assert!(outcome.is_ok(), "fuzz logic panicked on {}", path.display());
        count += 1;
    }
    count
}

#[test]
fn corpus_and_regressions_do_not_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let seeds = replay(&root.join("corpus/decode"));
    assert!(seeds >= 30, "seed corpus went missing ({seeds} files)");
    replay(&root.join("regressions/decode"));
}
