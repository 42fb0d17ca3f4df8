//! Resolve: a verified [`RepoIndex`] and a [`Selection`] (variant, --include, --exclude) become a
//! [`Resolution`], the exact package set, sorted by name, each pinned to one version.

use crate::config::Variant;
use crate::fetch::{Package, RepoIndex};

/// What to install.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub variant: Variant,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// The target architecture (packages of `all` are always eligible).
    pub arch: String,
}

/// The chosen packages, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    pub packages: Vec<Package>,
}

/// Why no package set could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("not implemented")]
    Unimplemented,
}

/// Chooses the package set.
pub fn resolve(index: &RepoIndex, selection: &Selection) -> Result<Resolution, ResolveError> {
    let _ = (index, selection);
    Err(ResolveError::Unimplemented)
}
