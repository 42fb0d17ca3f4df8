//! Unpack: verified .debs become files under the target root, every path resolved inside it, plus
//! dpkg's database so dpkg in the chroot can configure them.

use std::path::Path;

use crate::fetch::CachedDeb;
use crate::progress::Reporter;

/// What to unpack where.
#[derive(Debug, Clone, Copy)]
pub struct UnpackRequest<'a> {
    /// The target root (need not exist yet).
    pub root: &'a Path,
    pub debs: &'a [CachedDeb],
    /// The dpkg architecture of the root.
    pub arch: &'a str,
}

/// A package as recorded in dpkg's status file after unpacking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// `Multi-Arch: same` packages are `NAME:ARCH` in dpkg's database.
    pub multi_arch_same: bool,
    pub essential: bool,
    pub priority: Option<String>,
    /// Names of the maintainer scripts the package ships (`preinst`, `postinst`, ...).
    pub scripts: Vec<String>,
}

/// The result of unpacking: every package, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct Unpacked {
    pub packages: Vec<UnpackedPackage>,
}

/// Why unpacking failed.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("not implemented")]
    Unimplemented,
}

/// Unpacks every .deb into the root and writes dpkg's database.
pub fn unpack(request: &UnpackRequest, reporter: &dyn Reporter) -> Result<Unpacked, UnpackError> {
    let _ = (request, reporter);
    Err(UnpackError::Unimplemented)
}
