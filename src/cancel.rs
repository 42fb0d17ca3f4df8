//! Cooperative cancellation: the CLI's signal handler raises a flag, long loops poll it and
//! return [`Cancelled`], and the guards they hold undo mounts and remove partial output as the
//! error unwinds.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// What a failed or interrupted build could not remove.
static LEFT_BEHIND: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Build directories moved or replaced by someone else during the build, by the path they had.
static MOVED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

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

/// Records that cleanup could not remove `path`, so the CLI does not claim it did.
pub fn left_behind(path: PathBuf) {
    LEFT_BEHIND
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(path);
}

/// What cleanup could not remove, in the order it was recorded.
pub fn leftovers() -> Vec<PathBuf> {
    LEFT_BEHIND
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Records that the build directory once at `path` was moved or replaced during the build: it
/// was not removed, and what is at `path` now is not ours to delete.
pub fn moved_away(path: PathBuf) {
    MOVED.lock().unwrap_or_else(|e| e.into_inner()).push(path);
}

/// The paths recorded by [`moved_away`], in order.
pub fn moved() -> Vec<PathBuf> {
    MOVED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
