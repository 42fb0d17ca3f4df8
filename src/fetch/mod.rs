//! Fetch: the mirror client, InRelease verification, Packages indices and .deb downloads into a
//! content-addressed cache. Nothing leaves this module unverified.

mod cache;
mod client;
mod download;
mod hash;
mod index;
mod keyring;
mod release;
mod suite;

pub use cache::UnsafeCache;
pub use client::{
    Expected, FetchError, Fetcher, Limits, MAX_REDIRECTS, MAX_RELEASE, MAX_SIGNATURE,
};
pub use download::{download, CachedDeb, DebReader, DownloadRequest, MAX_DEB};
pub use hash::Sha256Digest;
pub use index::{parse_packages, IndexParseError, Package, RepoIndex};
pub use keyring::{Keyring, KeyringError};
pub use release::{ReleaseError, ReleaseFile, ReleasePolicy, VerifiedRelease};
pub use suite::{index, IndexRequest, MAX_INDEX};
