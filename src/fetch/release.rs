//! InRelease / Release verification: the only way to get a [`VerifiedRelease`] is through a good
//! OpenPGP signature by a trusted, currently valid key, with Date and Valid-Until checked.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::hash::Sha256Digest;
use super::keyring::Keyring;

/// What the caller asked for and when, checked against the Release.
#[derive(Debug, Clone)]
pub struct ReleasePolicy<'a> {
    /// The suite or codename requested; refused when both Suite and Codename differ.
    pub suite: &'a str,
    /// The time to check Date, Valid-Until and key validity against.
    pub now: SystemTime,
    /// Accept a Valid-Until in the past (snapshot archives).
    pub ignore_valid_until: bool,
}

/// One index file listed in the Release's SHA256 section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseFile {
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// Why a Release was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{url}: not implemented")]
    Unimplemented { url: String },
}

/// A Release whose signature, dates and suite were checked; fields are private so that only
/// the verifying constructors can make one.
#[derive(Debug, Clone)]
pub struct VerifiedRelease {
    suite: String,
    codename: String,
    acquire_by_hash: bool,
    architectures: Vec<String>,
    components: Vec<String>,
    files: BTreeMap<String, ReleaseFile>,
    signer: String,
}

impl VerifiedRelease {
    /// Verifies an inline-signed InRelease fetched from `url` and parses only the signed text.
    pub fn from_inrelease(
        url: &str,
        signed: &[u8],
        keyring: &Keyring,
        policy: &ReleasePolicy,
    ) -> Result<VerifiedRelease, ReleaseError> {
        let _ = (signed, keyring, policy);
        Err(ReleaseError::Unimplemented {
            url: url.to_string(),
        })
    }

    /// Verifies a Release against its detached Release.gpg signature.
    pub fn from_detached(
        url: &str,
        release: &[u8],
        signature: &[u8],
        keyring: &Keyring,
        policy: &ReleasePolicy,
    ) -> Result<VerifiedRelease, ReleaseError> {
        let _ = (release, signature, keyring, policy);
        Err(ReleaseError::Unimplemented {
            url: url.to_string(),
        })
    }

    pub fn suite(&self) -> &str {
        &self.suite
    }

    pub fn codename(&self) -> &str {
        &self.codename
    }

    /// Whether indices may be fetched by their hash (`Acquire-By-Hash: yes`).
    pub fn acquire_by_hash(&self) -> bool {
        self.acquire_by_hash
    }

    pub fn architectures(&self) -> &[String] {
        &self.architectures
    }

    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// The size and SHA256 of an index file, by its path relative to `dists/SUITE/`.
    pub fn file(&self, path: &str) -> Option<&ReleaseFile> {
        self.files.get(path)
    }

    /// The fingerprint of the key that made the accepted signature.
    pub fn signer(&self) -> &str {
        &self.signer
    }
}
