//! The workspace rules (see the crate docs) run on this very workspace as part of
//! `cargo test`: a violation outside the allow-list, or a stale allow-list entry, fails.

use std::path::Path;

#[test]
fn workspace_is_tidy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let report = match rlaunch_tidy::check(&root) {
        Ok(report) => report,
        Err(e) => panic!("tidy could not run: {e}"),
    };
    assert!(report.is_clean(), "\n{report}");
}
