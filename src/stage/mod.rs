//! Stage: finish an unpacked root through chroot(2) — mounts, policy-rc.d, maintainer scripts
//! and `dpkg --configure -a` — into a working Debian.

use std::path::Path;

use crate::progress::Reporter;
use crate::unpack::Unpacked;

/// What to finish.
#[derive(Debug, Clone, Copy)]
pub struct StageRequest<'a> {
    pub root: &'a Path,
    pub unpacked: &'a Unpacked,
    /// Mirror URL written to the chroot's apt sources.
    pub mirror: &'a str,
    pub suite: &'a str,
    pub components: &'a [String],
    /// The chroot's /etc/hostname.
    pub hostname: &'a str,
}

/// Why staging failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("not implemented")]
    Unimplemented,
}

/// Configures the root.
pub fn stage(request: &StageRequest, reporter: &dyn Reporter) -> Result<(), StageError> {
    let _ = (request, reporter);
    Err(StageError::Unimplemented)
}

/// Mount points at or below `root` (stub until the stage lands).
pub fn mounts_under(root: &Path) -> Vec<std::path::PathBuf> {
    let _ = root;
    Vec::new()
}
