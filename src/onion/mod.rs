//! Onion: the nginx site inside the chroot; the v3 onion key, torrc entry and schroot definition
//! on the host; and the start / stop / status commands.

use std::path::Path;

use crate::config::OnionConfig;

/// What to publish.
#[derive(Debug, Clone, Copy)]
pub struct OnionRequest<'a> {
    /// Service and chroot name.
    pub name: &'a str,
    /// Where the chroot is now (may be a temporary build directory).
    pub root: &'a Path,
    /// Where the chroot will be, as seen from the host's `/` (written into schroot's file).
    pub chroot_path: &'a Path,
    pub suite: &'a str,
    pub config: &'a OnionConfig,
}

/// The published service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionReport {
    /// The 56-character v3 address with `.onion`.
    pub address: String,
}

/// Why the onion stage failed.
#[derive(Debug, thiserror::Error)]
pub enum OnionError {
    #[error("not implemented")]
    Unimplemented,
}

/// Writes the site, key, torrc entry and schroot definition.
pub fn configure(request: &OnionRequest) -> Result<OnionReport, OnionError> {
    let _ = request;
    Err(OnionError::Unimplemented)
}

impl std::fmt::Display for OnionReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "onion address: {}", self.address)
    }
}
