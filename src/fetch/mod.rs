//! Fetch: the mirror client, InRelease verification, Packages indices and .deb downloads into a
//! content-addressed cache. Nothing leaves this module unverified.

mod client;
mod download;
mod hash;
mod index;
mod keyring;
mod release;

pub use client::{FetchError, Fetcher};
pub use download::{download, CachedDeb};
pub use hash::Sha256Digest;
pub use index::{parse_packages, IndexParseError, Package, RepoIndex};
pub use keyring::{Keyring, KeyringError};
pub use release::{ReleaseError, ReleaseFile, ReleasePolicy, VerifiedRelease};
