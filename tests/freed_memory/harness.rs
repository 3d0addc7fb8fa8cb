//! What both freed-memory test binaries share around the watch: the allocator itself, one
//! test at a time, and running a flow armed.

use std::sync::{Mutex, MutexGuard};

use super::keys::Secrets;
use super::watch;

#[global_allocator]
static WATCH: watch::Watch = watch::Watch;

/// The tests share the allocator's registry: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the registry for one test.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `flow` armed against `secrets`; returns the secrets found in freed memory, split into
/// failures and hits on secrets that are exempt in this build.
pub fn watch_flow(
    what: &str,
    secrets: &Secrets,
    flow: impl FnOnce(),
) -> (Vec<String>, Vec<String>) {
    secrets.install();
    watch::arm(true);
    flow();
    watch::arm(false);
    let (blocks, bytes) = watch::scanned();
    assert!(blocks > 0, "the watch saw no freed block: it is not armed");
    eprintln!("freed_memory: {what}: scanned {blocks} freed blocks, {bytes} bytes");
    secrets.report()
}

/// Fails naming every secret found (exempt ones are printed only).
pub fn assert_clean(what: &str, (failures, exempt): (Vec<String>, Vec<String>)) {
    for e in &exempt {
        eprintln!("freed_memory: {what}: exempt in this build: {e}");
    }
    assert!(
        failures.is_empty(),
        "{what} left {} secret(s) in freed memory:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
