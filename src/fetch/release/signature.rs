//! The OpenPGP part of the Release check: sorts each signature sequoia reports into an
//! [`Outcome`] (good, by an unknown key, by a key expired or revoked now, with a weak hash, made
//! in the future), so that the caller can say exactly why nothing verified.

use std::time::SystemTime;

use sequoia_openpgp::cert::amalgamation::ValidAmalgamation;
use sequoia_openpgp::parse::stream::{
    GoodChecksum, MessageLayer, MessageStructure, VerificationError, VerificationHelper,
};
use sequoia_openpgp::policy::Policy;
use sequoia_openpgp::types::{HashAlgorithm, RevocationStatus};
use sequoia_openpgp::{Cert, Fingerprint, KeyHandle};

use super::dates::{format_date, later};
use super::{Cause, ReleaseError, SIGNATURE_CLOCK_SKEW};
use crate::fetch::keyring::Keyring;

/// What the signature check found, gathered by [`Helper::check`] and read once sequoia is done.
#[derive(Default)]
pub(super) struct Outcome {
    /// Whether sequoia got as far as checking signatures.
    checked: bool,
    /// Fingerprints of keys whose signatures are accepted.
    accepted: Vec<String>,
    /// The first signature by a trusted key that does not verify.
    bad: Option<anyhow::Error>,
    /// The creation time of a signature by a trusted key made too far after `now`.
    future: Option<SystemTime>,
    weak: Option<HashAlgorithm>,
    revoked: Option<String>,
    expired: Option<String>,
    invalid: Option<(String, anyhow::Error)>,
    /// Issuers of signatures by keys not in the keyring.
    unknown: Vec<String>,
}

impl Outcome {
    /// The verified bytes and the accepting key, or the most telling refusal: a signature that
    /// does not verify first, because it means the bytes were changed.
    pub(super) fn decide<T>(
        self,
        url: &str,
        verified: sequoia_openpgp::Result<T>,
    ) -> Result<(T, String), ReleaseError> {
        let url = url.to_string();
        if !self.checked {
            let source = verified.err().map(Cause::from);
            return Err(ReleaseError::NotSigned { url, source });
        }
        match (verified, self.accepted.into_iter().next()) {
            (Ok(verified), Some(signer)) => return Ok((verified, signer)),
            (Err(e), Some(_)) => {
                return Err(ReleaseError::BadSignature {
                    url,
                    source: e.into(),
                })
            }
            (_, None) => {}
        }
        if let Some(source) = self.bad {
            Err(ReleaseError::BadSignature {
                url,
                source: source.into(),
            })
        } else if let Some(signed_at) = self.future {
            Err(ReleaseError::SignedInFuture {
                url,
                signed_at: format_date(signed_at),
            })
        } else if let Some(hash) = self.weak {
            Err(ReleaseError::WeakHash {
                url,
                algorithm: hash.to_string(),
            })
        } else if let Some(fingerprint) = self.revoked {
            Err(ReleaseError::KeyRevoked { url, fingerprint })
        } else if let Some(fingerprint) = self.expired {
            Err(ReleaseError::KeyExpired { url, fingerprint })
        } else if let Some((fingerprint, source)) = self.invalid {
            Err(ReleaseError::KeyInvalid {
                url,
                fingerprint,
                source: source.into(),
            })
        } else if !self.unknown.is_empty() {
            Err(ReleaseError::UntrustedSigner {
                url,
                keyids: self.unknown,
            })
        } else {
            Err(ReleaseError::NotSigned { url, source: None })
        }
    }
}

/// Why a key that made a signature cannot be trusted now.
enum KeyProblem {
    Revoked(String),
    Expired(String),
    Invalid(String, anyhow::Error),
}

/// Sequoia's callbacks: hands it the keyring and sorts each signature into an [`Outcome`].
pub(super) struct Helper<'a> {
    keyring: &'a Keyring,
    policy: &'a dyn Policy,
    now: SystemTime,
    outcome: &'a mut Outcome,
}

impl<'a> Helper<'a> {
    pub(super) fn new(
        keyring: &'a Keyring,
        policy: &'a dyn Policy,
        now: SystemTime,
        outcome: &'a mut Outcome,
    ) -> Helper<'a> {
        Helper {
            keyring,
            policy,
            now,
            outcome,
        }
    }

    /// Sequoia judges the key as of the signature's creation; apt, and we, also require it to
    /// be alive and unrevoked now, so that a retired key cannot sign replayed Releases.
    fn key_problem_now(&self, cert: &Cert, key: Option<&Fingerprint>) -> Option<KeyProblem> {
        let cert_fpr = cert.fingerprint().to_hex();
        let valid = match cert.with_policy(self.policy, self.now) {
            Ok(valid) => valid,
            Err(e) => return Some(KeyProblem::Invalid(cert_fpr, e)),
        };
        if let RevocationStatus::Revoked(_) = valid.revocation_status() {
            return Some(KeyProblem::Revoked(cert_fpr));
        }
        if valid.alive().is_err() {
            return Some(KeyProblem::Expired(cert_fpr));
        }
        let key = key?;
        let key_fpr = key.to_hex();
        let Some(ka) = valid.keys().key_handle(key.clone()).next() else {
            let e = anyhow::anyhow!("the key is not bound to its certificate now");
            return Some(KeyProblem::Invalid(key_fpr, e));
        };
        if let RevocationStatus::Revoked(_) = ka.revocation_status() {
            return Some(KeyProblem::Revoked(key_fpr));
        }
        if ka.alive().is_err() {
            return Some(KeyProblem::Expired(key_fpr));
        }
        if !ka.for_signing() {
            let e = anyhow::anyhow!("the key is not marked for signing");
            return Some(KeyProblem::Invalid(key_fpr, e));
        }
        None
    }

    fn record_problem(&mut self, problem: KeyProblem) {
        let outcome = &mut *self.outcome;
        match problem {
            KeyProblem::Revoked(fpr) => {
                outcome.revoked.get_or_insert(fpr);
            }
            KeyProblem::Expired(fpr) => {
                outcome.expired.get_or_insert(fpr);
            }
            KeyProblem::Invalid(fpr, e) => {
                outcome.invalid.get_or_insert((fpr, e));
            }
        }
    }

    fn good(&mut self, good: &GoodChecksum) {
        if is_weak(good.sig.hash_algo()) {
            self.outcome.weak.get_or_insert(good.sig.hash_algo());
            return;
        }
        let key = good.ka.key().fingerprint();
        match self.key_problem_now(good.ka.cert(), Some(&key)) {
            Some(problem) => self.record_problem(problem),
            None => self.outcome.accepted.push(key.to_hex()),
        }
    }

    fn bad(&mut self, error: VerificationError) {
        match error {
            VerificationError::MissingKey { sig } => {
                let issuers = sig.get_issuers();
                if issuers.is_empty() {
                    self.outcome.unknown.push("(no issuer)".into());
                }
                // A signature usually names its key twice, by fingerprint and by key ID (the
                // fingerprint's tail): list each key once, by the longer name.
                let mut ids: Vec<String> = issuers.iter().map(KeyHandle::to_hex).collect();
                ids.sort_by_key(|id| std::cmp::Reverse(id.len()));
                for id in ids {
                    if !self
                        .outcome
                        .unknown
                        .iter()
                        .any(|known| known.ends_with(&id))
                    {
                        self.outcome.unknown.push(id);
                    }
                }
            }
            VerificationError::BadSignature { sig, .. } if is_weak(sig.hash_algo()) => {
                // The standard policy rejects SHA-1 data signatures; name the reason.
                self.outcome.weak.get_or_insert(sig.hash_algo());
            }
            VerificationError::BadSignature { sig, .. }
                if sig
                    .signature_creation_time()
                    .is_some_and(|t| t > later(self.now, SIGNATURE_CLOCK_SKEW)) =>
            {
                self.outcome.future = sig.signature_creation_time();
            }
            VerificationError::BadSignature { ka, error, .. } => {
                let key = ka.key().fingerprint();
                let e = error.context(format!("the signature by key {key} does not verify"));
                self.outcome.bad.get_or_insert(e);
            }
            VerificationError::MalformedSignature { error, .. } => {
                self.outcome
                    .bad
                    .get_or_insert(error.context("malformed signature"));
            }
            VerificationError::BadKey { ka, error, .. } => {
                let key = ka.key().fingerprint();
                match self.key_problem_now(ka.cert(), Some(&key)) {
                    Some(problem) => self.record_problem(problem),
                    None => self.record_problem(KeyProblem::Invalid(key.to_hex(), error)),
                }
            }
            VerificationError::UnboundKey { cert, error, .. } => {
                match self.key_problem_now(cert, None) {
                    Some(problem) => self.record_problem(problem),
                    None => {
                        let fpr = cert.fingerprint().to_hex();
                        self.record_problem(KeyProblem::Invalid(fpr, error));
                    }
                }
            }
            VerificationError::UnknownSignature { sig } => {
                // The parse error is borrowed from the packet; keep its text.
                let e = anyhow::anyhow!("cannot parse the signature packet: {}", sig.error());
                self.outcome.bad.get_or_insert(e);
            }
            // VerificationError is non-exhaustive: anything new is a failure.
            other => {
                let e = anyhow::anyhow!("{other}");
                self.outcome.bad.get_or_insert(e);
            }
        }
    }
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> sequoia_openpgp::Result<Vec<Cert>> {
        Ok(self.keyring.certs().to_vec())
    }

    fn check(&mut self, structure: MessageStructure) -> sequoia_openpgp::Result<()> {
        self.outcome.checked = true;
        for layer in structure {
            if let MessageLayer::SignatureGroup { results } = layer {
                for result in results {
                    match result {
                        Ok(good) => self.good(&good),
                        Err(error) => self.bad(error),
                    }
                }
            }
        }
        // Refusing here too keeps sequoia from releasing the text on its own.
        if self.outcome.accepted.is_empty() {
            anyhow::bail!("no acceptable signature by a trusted key");
        }
        Ok(())
    }
}

/// Hash algorithms whose signatures are refused whatever the policy of the day says.
fn is_weak(hash: HashAlgorithm) -> bool {
    matches!(
        hash,
        HashAlgorithm::SHA1 | HashAlgorithm::MD5 | HashAlgorithm::RipeMD
    )
}
