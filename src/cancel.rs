//! Cooperative cancellation: the CLI's signal handler raises a flag, long loops poll it and
//! return [`Cancelled`], and the guards they hold undo mounts and remove partial output as the
//! error unwinds.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// The build was interrupted (SIGINT or SIGTERM).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("interrupted")]
pub struct Cancelled;

/// Asks every running stage to stop at its next check.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Whether a stop was requested.
pub fn is_requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Returns `Err(Cancelled)` once a stop was requested.
pub fn check() -> Result<(), Cancelled> {
    if is_requested() {
        Err(Cancelled)
    } else {
        Ok(())
    }
}
