//! Figures that tests measure and CI prints: faults injected, calls made, errors by code, resources
//! before and after. A test calls [`record`]; `cargo xtask ci` prints every record after the test
//! step, so the numbers are in CI's log whatever the test runner captures.
//!
//! This is a report, not an assertion: a test asserts its bounds itself and records what it saw.

use std::path::PathBuf;

/// The folder the records go to: `$CARGO_TARGET_DIR/figures`, or `target/figures` in the workspace.
pub fn dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("figures")
}

/// Writes `figures` as `<dir>/<name>.json`, replacing an earlier record of the same name.
///
/// # Panics
/// When the folder cannot be written: a figure CI cannot print is a failed test.
pub fn record(name: &str, figures: serde_json::Value) {
    let dir = dir();
    std::fs::create_dir_all(&dir).expect("create the figures folder");
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, format!("{figures}\n")).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
