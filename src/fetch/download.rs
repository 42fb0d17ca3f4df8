//! .deb downloads (stub).

use std::path::PathBuf;

use super::index::Package;

/// A .deb in the cache whose size and SHA256 match its verified index entry.
#[derive(Debug, Clone)]
pub struct CachedDeb {
    pub package: Package,
    pub path: PathBuf,
}

/// Downloads every package (stub).
pub fn download() {}
