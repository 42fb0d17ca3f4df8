//! InRelease / Release verification: the only way to get a [`VerifiedRelease`] is through a good
//! OpenPGP signature by a trusted, currently valid key, with Date and Valid-Until checked.
//!
//! Takes the signed bytes as fetched, a [`Keyring`] and a [`ReleasePolicy`]; gives a
//! [`VerifiedRelease`] parsed only from the text that the signature covers.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, SystemTime};

use sequoia_openpgp::parse::stream::{DetachedVerifierBuilder, VerifierBuilder};
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::policy::StandardPolicy;

use super::hash::Sha256Digest;
use super::keyring::Keyring;
use crate::deb822::Comments;

mod dates;
mod signature;

use dates::{later, parse_date};
use signature::{Helper, Outcome};

/// How far a Release's Date may be ahead of `now` before it is refused.
const MAX_FUTURE_DATE: Duration = Duration::from_secs(24 * 60 * 60);

/// How far a signature's creation time may be ahead of `now`: the archive signs just after it
/// publishes, and a host clock a little behind must not turn that into a refusal.
const SIGNATURE_CLOCK_SKEW: Duration = Duration::from_secs(30 * 60);

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

/// A boxed cause from the OpenPGP library, kept whole for the error chain.
type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a Release was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{url}: not an OpenPGP-signed file")]
    NotSigned {
        url: String,
        #[source]
        source: Option<Cause>,
    },
    #[error("{url}: bad OpenPGP signature; the file was altered or damaged on the way")]
    BadSignature {
        url: String,
        #[source]
        source: Cause,
    },
    #[error(
        "{url}: signed only by keys not in the keyring ({}); pass the archive's key with --keyring FILE",
        .keyids.join(", ")
    )]
    UntrustedSigner { url: String, keyids: Vec<String> },
    #[error("{url}: the signing key {fingerprint} has expired; pass a current keyring with --keyring FILE")]
    KeyExpired { url: String, fingerprint: String },
    #[error("{url}: the signing key {fingerprint} is revoked")]
    KeyRevoked { url: String, fingerprint: String },
    #[error("{url}: the signing key {fingerprint} is not valid now under the OpenPGP policy")]
    KeyInvalid {
        url: String,
        fingerprint: String,
        #[source]
        source: Cause,
    },
    #[error("{url}: signed with the weak hash {algorithm}, which is refused")]
    WeakHash { url: String, algorithm: String },
    #[error(
        "{url}: expired at {valid_until} (Valid-Until); the mirror is stale or replaying an old \
         Release; for a snapshot archive pass --ignore-valid-until"
    )]
    Expired { url: String, valid_until: String },
    #[error("{url}: dated {date}, more than a day in the future; check this host's clock")]
    FutureDate { url: String, date: String },
    #[error("{url}: signed at {signed_at}, later than this host's time; check this host's clock")]
    SignedInFuture { url: String, signed_at: String },
    #[error(
        "{url}: asked for suite {asked:?} but this Release is Suite {suite:?}, Codename {codename:?}"
    )]
    SuiteMismatch {
        url: String,
        asked: String,
        suite: String,
        codename: String,
    },
    #[error("{url}: malformed Release: {what}")]
    Malformed { url: String, what: String },
}

/// A Release whose signature, dates and suite were checked; fields are private so that only
/// the verifying constructors can make one.
#[derive(Debug, Clone)]
pub struct VerifiedRelease {
    suite: String,
    codename: String,
    date: SystemTime,
    valid_until: Option<SystemTime>,
    acquire_by_hash: bool,
    architectures: Vec<String>,
    components: Vec<String>,
    files: BTreeMap<String, ReleaseFile>,
    signer: String,
    /// SHA256 of the file as fetched: the InRelease, or the Release of a detached signature.
    sha256: Sha256Digest,
}

impl VerifiedRelease {
    /// Verifies an inline-signed InRelease fetched from `url` and parses only the signed text.
    ///
    /// Accepted when at least one signature verifies that was made with a strong hash by a key
    /// of `keyring` that is alive and unrevoked at `policy.now`; then Suite/Codename, Date and
    /// Valid-Until are checked against `policy`.
    pub fn from_inrelease(
        url: &str,
        signed: &[u8],
        keyring: &Keyring,
        policy: &ReleasePolicy,
    ) -> Result<VerifiedRelease, ReleaseError> {
        let openpgp_policy = StandardPolicy::new();
        let mut outcome = Outcome::default();
        let verified = (|| -> sequoia_openpgp::Result<Vec<u8>> {
            let helper = Helper::new(keyring, &openpgp_policy, policy.now, &mut outcome);
            let mut verifier = VerifierBuilder::from_bytes(signed)?.with_policy(
                &openpgp_policy,
                later(policy.now, SIGNATURE_CLOCK_SKEW),
                helper,
            )?;
            let mut text = Vec::new();
            verifier.read_to_end(&mut text)?;
            if !verifier.message_processed() {
                anyhow::bail!("the signed message did not end");
            }
            Ok(text)
        })();
        let (text, signer) = outcome.decide(url, verified)?;
        let mut release = VerifiedRelease::from_verified_text(url, &text, signer, policy)?;
        release.sha256 = Sha256Digest::of(signed);
        Ok(release)
    }

    /// Verifies a Release against its detached Release.gpg signature, accepting and checking
    /// as [`VerifiedRelease::from_inrelease`] does; `url` names the Release.
    pub fn from_detached(
        url: &str,
        release: &[u8],
        signature: &[u8],
        keyring: &Keyring,
        policy: &ReleasePolicy,
    ) -> Result<VerifiedRelease, ReleaseError> {
        let openpgp_policy = StandardPolicy::new();
        let mut outcome = Outcome::default();
        let verified = (|| -> sequoia_openpgp::Result<()> {
            let helper = Helper::new(keyring, &openpgp_policy, policy.now, &mut outcome);
            let mut verifier = DetachedVerifierBuilder::from_bytes(signature)?.with_policy(
                &openpgp_policy,
                later(policy.now, SIGNATURE_CLOCK_SKEW),
                helper,
            )?;
            verifier.verify_bytes(release)
        })();
        let ((), signer) = outcome.decide(url, verified)?;
        let mut verified = VerifiedRelease::from_verified_text(url, release, signer, policy)?;
        verified.sha256 = Sha256Digest::of(release);
        Ok(verified)
    }

    /// Parses the signed text and applies the suite and date checks of `policy`.
    fn from_verified_text(
        url: &str,
        text: &[u8],
        signer: String,
        policy: &ReleasePolicy,
    ) -> Result<VerifiedRelease, ReleaseError> {
        let malformed = |what: String| ReleaseError::Malformed {
            url: url.to_string(),
            what,
        };
        let text =
            std::str::from_utf8(text).map_err(|e| malformed(format!("not UTF-8 text ({e})")))?;
        let fields = crate::deb822::first_paragraph(text, Comments::Refused)
            .map_err(|e| malformed(e.to_string()))?
            .ok_or_else(|| malformed("no fields".into()))?;
        let get = |name: &str| fields.get(name).map(str::to_owned);

        let suite = get("Suite").unwrap_or_default();
        let codename = get("Codename").unwrap_or_default();
        if suite.is_empty() && codename.is_empty() {
            return Err(malformed("no Suite or Codename field".into()));
        }
        if suite != policy.suite && codename != policy.suite {
            return Err(ReleaseError::SuiteMismatch {
                url: url.to_string(),
                asked: policy.suite.to_string(),
                suite,
                codename,
            });
        }

        let date_text = get("Date").ok_or_else(|| malformed("no Date field".into()))?;
        let date = parse_date(&date_text)
            .ok_or_else(|| malformed(format!("Date {date_text:?} is not a valid date")))?;
        if date > later(policy.now, MAX_FUTURE_DATE) {
            return Err(ReleaseError::FutureDate {
                url: url.to_string(),
                date: date_text,
            });
        }
        let valid_until_text = get("Valid-Until");
        let valid_until =
            match &valid_until_text {
                None => None,
                Some(text) => Some(parse_date(text).ok_or_else(|| {
                    malformed(format!("Valid-Until {text:?} is not a valid date"))
                })?),
            };
        if let (Some(until), Some(text)) = (valid_until, valid_until_text) {
            if until < policy.now && !policy.ignore_valid_until {
                return Err(ReleaseError::Expired {
                    url: url.to_string(),
                    valid_until: text,
                });
            }
        }

        let words = |name: &str| -> Vec<String> {
            fields
                .field(name)
                .map(|f| f.folded().split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let files = match fields.field("SHA256") {
            Some(section) => parse_sha256_section(section.lines()).map_err(malformed)?,
            None => return Err(malformed("no SHA256 section".into())),
        };
        Ok(VerifiedRelease {
            acquire_by_hash: fields
                .get("Acquire-By-Hash")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            architectures: words("Architectures"),
            components: words("Components"),
            suite,
            codename,
            date,
            valid_until,
            files,
            signer,
            sha256: Sha256Digest::of(text.as_bytes()),
        })
    }

    /// SHA256 of the InRelease as fetched (or of the Release, when it came with a detached
    /// signature): the mirror-independent identity of the index the packages were chosen from.
    pub fn sha256(&self) -> Sha256Digest {
        self.sha256
    }

    /// The Suite field (e.g. `stable`), empty when the Release has none.
    pub fn suite(&self) -> &str {
        &self.suite
    }

    /// The Codename field (e.g. `trixie`), empty when the Release has none.
    pub fn codename(&self) -> &str {
        &self.codename
    }

    /// When the archive generated this Release (its Date field).
    pub fn date(&self) -> SystemTime {
        self.date
    }

    /// Until when this Release may be used (its Valid-Until field), if it says.
    pub fn valid_until(&self) -> Option<SystemTime> {
        self.valid_until
    }

    /// Whether indices may be fetched by their hash (`Acquire-By-Hash: yes`).
    pub fn acquire_by_hash(&self) -> bool {
        self.acquire_by_hash
    }

    /// The Architectures field, word by word.
    pub fn architectures(&self) -> &[String] {
        &self.architectures
    }

    /// The Components field, word by word.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// The size and SHA256 of an index file, by its path relative to `dists/SUITE/`.
    pub fn file(&self, path: &str) -> Option<&ReleaseFile> {
        self.files.get(path)
    }

    /// Every file of the SHA256 section, sorted by path.
    pub fn files(&self) -> impl Iterator<Item = (&str, &ReleaseFile)> {
        self.files.iter().map(|(path, file)| (path.as_str(), file))
    }

    /// The fingerprint of the key that made the accepted signature (the signing subkey where
    /// one was used), upper-case hexadecimal.
    pub fn signer(&self) -> &str {
        &self.signer
    }
}

/// The SHA256 section: one ` HASH SIZE PATH` line per file.
fn parse_sha256_section<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<BTreeMap<String, ReleaseFile>, String> {
    let mut files = BTreeMap::new();
    for line in lines {
        let bad = || format!("SHA256 line {line:?} is not HASH SIZE PATH");
        let mut words = line.split_whitespace();
        let (Some(hash), Some(size), Some(path), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(bad());
        };
        let sha256 = Sha256Digest::from_hex(hash).ok_or_else(bad)?;
        let size = size.parse::<u64>().map_err(|_| bad())?;
        if files
            .insert(path.to_string(), ReleaseFile { size, sha256 })
            .is_some()
        {
            return Err(format!("SHA256 lists {path:?} twice"));
        }
    }
    Ok(files)
}

#[cfg(test)]
#[path = "../../../tests/support/sign.rs"]
mod sign;

#[cfg(test)]
// Tests state their expectations with unwrap(); a panic there is the failure report.
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::UNIX_EPOCH;

    use sequoia_openpgp::types::HashAlgorithm;

    use super::dates::format_date;
    use super::sign::{self, SignOptions};
    use super::*;

    const TRIXIE: &[u8] = include_bytes!("../../../fixtures/release/trixie-InRelease");
    const FORKY: &[u8] = include_bytes!("../../../fixtures/release/forky-InRelease");
    const ARCHIVE_SEC: &[u8] = include_bytes!("../../../fixtures/keys/test-archive.sec.asc");
    const UNTRUSTED_SEC: &[u8] = include_bytes!("../../../fixtures/keys/untrusted.sec.asc");
    const EXPIRED_SEC: &[u8] = include_bytes!("../../../fixtures/keys/expired.sec.asc");
    const REVOKED_SEC: &[u8] = include_bytes!("../../../fixtures/keys/revoked.sec.asc");
    const URL: &str = "http://archive.test/debian/dists/trixie/InRelease";

    /// Fixture signing keys' signing subkeys.
    const ARCHIVE_SUBKEY: &str = "07343256F7DA2EA3E15944E30417BA04CF996341";
    const UNTRUSTED_SUBKEY: &str = "5E552E5C1E33D3BCC98519F29D4E4FAA952DE501";

    fn at(text: &str) -> SystemTime {
        parse_date(text).unwrap()
    }

    fn policy(suite: &str, now: SystemTime) -> ReleasePolicy<'_> {
        ReleasePolicy {
            suite,
            now,
            ignore_valid_until: false,
        }
    }

    fn keyring(names: &[&str]) -> Keyring {
        let paths: Vec<PathBuf> = names
            .iter()
            .map(|n| Path::new(env!("CARGO_MANIFEST_DIR")).join(n))
            .collect();
        Keyring::from_files(&paths).unwrap()
    }

    fn test_keyring() -> Keyring {
        keyring(&[
            "fixtures/keys/test-archive.pub.asc",
            "fixtures/keys/expired.pub.asc",
            "fixtures/keys/revoked.pub.asc",
        ])
    }

    /// When the real trixie InRelease was signed, plus an hour.
    fn trixie_now() -> SystemTime {
        at("Sat, 21 Nov 2026 10:15:44 UTC")
    }

    /// The time the synthetic Releases below are signed at, and checked an hour later.
    const SIGNED_AT: &str = "Thu, 01 Jan 2026 00:00:00 UTC";
    const CHECKED_AT: &str = "Thu, 01 Jan 2026 01:00:00 UTC";

    fn small_release(date: &str, valid_until: Option<&str>) -> String {
        let mut text = format!("Origin: Test\nSuite: stable\nCodename: trixie\nDate: {date}\n");
        if let Some(until) = valid_until {
            text.push_str(&format!("Valid-Until: {until}\n"));
        }
        text.push_str(&format!(
            "Acquire-By-Hash: no\nArchitectures: amd64\nComponents: main\nSHA256:\n \
             {} 5 main/binary-amd64/Packages\n",
            Sha256Digest::of(b"hello")
        ));
        text
    }

    fn signed_at(time: &str) -> SignOptions {
        SignOptions {
            time: at(time),
            ..SignOptions::default()
        }
    }

    /// Asserts that the error's one-line message names the URL.
    fn names_url(err: &ReleaseError) {
        assert!(err.to_string().starts_with(URL), "{err}");
    }

    #[test]
    fn real_trixie_inrelease_verifies_with_the_builtin_keyring() {
        let keyring = Keyring::builtin().unwrap();
        let release =
            VerifiedRelease::from_inrelease(URL, TRIXIE, &keyring, &policy("trixie", trixie_now()))
                .unwrap();
        assert_eq!(release.suite(), "stable");
        assert_eq!(release.codename(), "trixie");
        assert!(release.acquire_by_hash());
        assert!(release.architectures().iter().any(|a| a == "amd64"));
        assert_eq!(
            release.components(),
            ["main", "contrib", "non-free-firmware", "non-free"]
        );
        assert_eq!(release.date(), at("Sat, 21 Nov 2026 09:15:44 UTC"));
        assert_eq!(release.valid_until(), None);
        let packages = release.file("main/binary-amd64/Packages.xz").unwrap();
        assert!(packages.size > 0);
        assert!(release.files().count() > 100);
        // Signed by bookworm's and trixie's automatic subkeys and trixie's release key.
        assert!(
            [
                "4CB50190207B4758A3F73A796ED0E7B82643E131",
                "B8E5F13176D2A7A75220028078DBA3BC47EF2265",
                "41587F7DB8C774BCCF131416762F67A0B2C39DE4",
            ]
            .contains(&release.signer()),
            "{}",
            release.signer()
        );
    }

    #[test]
    fn the_suite_name_is_accepted_as_well_as_the_codename() {
        let keyring = Keyring::builtin().unwrap();
        let release =
            VerifiedRelease::from_inrelease(URL, TRIXIE, &keyring, &policy("stable", trixie_now()))
                .unwrap();
        assert_eq!(release.codename(), "trixie");
    }

    #[test]
    fn one_trusted_signature_among_several_is_enough() {
        let keyring = keyring(&["keyrings/debian-archive-trixie-stable.gpg"]);
        let release =
            VerifiedRelease::from_inrelease(URL, TRIXIE, &keyring, &policy("trixie", trixie_now()))
                .unwrap();
        assert_eq!(release.signer(), "41587F7DB8C774BCCF131416762F67A0B2C39DE4");
    }

    #[test]
    fn one_byte_changed_in_the_signed_text_is_refused() {
        let text = String::from_utf8(TRIXIE.to_vec()).unwrap();
        assert!(text.contains("Version: 13.8\n"));
        let altered = text.replacen("Version: 13.8\n", "Version: 13.9\n", 1);
        let keyring = Keyring::builtin().unwrap();
        let err = VerifiedRelease::from_inrelease(
            URL,
            altered.as_bytes(),
            &keyring,
            &policy("trixie", trixie_now()),
        )
        .unwrap_err();
        assert!(matches!(err, ReleaseError::BadSignature { .. }), "{err:?}");
        names_url(&err);
    }

    #[test]
    fn a_real_inrelease_with_a_keyring_that_lacks_its_keys_is_untrusted() {
        let err = VerifiedRelease::from_inrelease(
            URL,
            TRIXIE,
            &test_keyring(),
            &policy("trixie", trixie_now()),
        )
        .unwrap_err();
        let ReleaseError::UntrustedSigner { keyids, .. } = &err else {
            panic!("{err:?}");
        };
        assert!(
            keyids.iter().any(|k| k.contains("762F67A0B2C39DE4")),
            "{keyids:?}"
        );
        names_url(&err);
        assert!(err.to_string().contains("--keyring"), "{err}");
    }

    #[test]
    fn a_signature_by_an_untrusted_key_is_refused() {
        let text = small_release(SIGNED_AT, None);
        let signed = sign::clearsign_with(UNTRUSTED_SEC, text.as_bytes(), signed_at(SIGNED_AT));
        let err = VerifiedRelease::from_inrelease(
            URL,
            &signed,
            &test_keyring(),
            &policy("trixie", at(CHECKED_AT)),
        )
        .unwrap_err();
        let ReleaseError::UntrustedSigner { keyids, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(keyids, &[UNTRUSTED_SUBKEY]);
        names_url(&err);
    }

    #[test]
    fn a_release_signed_by_the_test_key_verifies() {
        let text = small_release(SIGNED_AT, Some("Thu, 08 Jan 2026 00:00:00 UTC"));
        let signed = sign::clearsign_with(ARCHIVE_SEC, text.as_bytes(), signed_at(SIGNED_AT));
        let release = VerifiedRelease::from_inrelease(
            URL,
            &signed,
            &test_keyring(),
            &policy("trixie", at(CHECKED_AT)),
        )
        .unwrap();
        assert_eq!(release.signer(), ARCHIVE_SUBKEY);
        assert!(!release.acquire_by_hash());
        assert_eq!(release.architectures(), ["amd64"]);
        assert_eq!(
            release.file("main/binary-amd64/Packages"),
            Some(&ReleaseFile {
                size: 5,
                sha256: Sha256Digest::of(b"hello")
            })
        );
        assert_eq!(release.file("main/binary-amd64/Packages.xz"), None);
    }

    #[test]
    fn the_signing_helpers_default_to_now() {
        let now = SystemTime::now();
        let text = small_release(&sign::release_date(now), None);
        let keyring = test_keyring();
        let policy = policy("trixie", now + Duration::from_secs(60));
        let inline = sign::clearsign(ARCHIVE_SEC, text.as_bytes());
        VerifiedRelease::from_inrelease(URL, &inline, &keyring, &policy).unwrap();
        let detached = sign::detached_sign(ARCHIVE_SEC, text.as_bytes());
        VerifiedRelease::from_detached(URL, text.as_bytes(), &detached, &keyring, &policy).unwrap();
    }

    #[test]
    fn text_outside_the_signature_is_not_read() {
        let text = small_release(SIGNED_AT, None);
        let signed = sign::clearsign_with(ARCHIVE_SEC, text.as_bytes(), signed_at(SIGNED_AT));
        let mut wrapped = b"Suite: bookworm\nCodename: bookworm\n\n".to_vec();
        wrapped.extend_from_slice(&signed);
        let release = VerifiedRelease::from_inrelease(
            URL,
            &wrapped,
            &test_keyring(),
            &policy("trixie", at(CHECKED_AT)),
        );
        // Sequoia skips text before the signed message; refusing would be fine too, reading
        // it never.
        match release {
            Ok(release) => assert_eq!(release.codename(), "trixie"),
            Err(err) => assert!(matches!(err, ReleaseError::NotSigned { .. }), "{err:?}"),
        }
    }

    #[test]
    fn a_past_valid_until_is_refused_unless_ignored() {
        let keyring = Keyring::builtin().unwrap();
        // forky's InRelease of 30 Oct 2026 is valid until 6 Nov 2026.
        let fresh = policy("forky", at("Fri, 30 Oct 2026 09:00:00 UTC"));
        let release = VerifiedRelease::from_inrelease(URL, FORKY, &keyring, &fresh).unwrap();
        assert_eq!(
            release.valid_until(),
            Some(at("Fri, 06 Nov 2026 08:08:01 UTC"))
        );

        let late = policy("forky", at("Sat, 07 Nov 2026 08:08:01 UTC"));
        let err = VerifiedRelease::from_inrelease(URL, FORKY, &keyring, &late).unwrap_err();
        let ReleaseError::Expired { valid_until, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(valid_until, "Fri, 06 Nov 2026 08:08:01 UTC");
        names_url(&err);
        assert!(err.to_string().contains("--ignore-valid-until"), "{err}");

        let snapshot = ReleasePolicy {
            ignore_valid_until: true,
            ..late
        };
        let release = VerifiedRelease::from_inrelease(URL, FORKY, &keyring, &snapshot).unwrap();
        assert_eq!(release.codename(), "forky");
    }

    #[test]
    fn a_date_more_than_a_day_ahead_is_refused() {
        let keyring = test_keyring();
        let ahead = small_release("Sat, 03 Jan 2026 00:00:00 UTC", None);
        let signed = sign::clearsign_with(ARCHIVE_SEC, ahead.as_bytes(), signed_at(SIGNED_AT));
        let err = VerifiedRelease::from_inrelease(
            URL,
            &signed,
            &keyring,
            &policy("trixie", at(CHECKED_AT)),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ReleaseError::FutureDate { date, .. } if date == "Sat, 03 Jan 2026 00:00:00 UTC"),
            "{err:?}"
        );
        names_url(&err);

        // Less than a day ahead (clock skew) is fine.
        let near = small_release("Thu, 01 Jan 2026 20:00:00 UTC", None);
        let signed = sign::clearsign_with(ARCHIVE_SEC, near.as_bytes(), signed_at(SIGNED_AT));
        VerifiedRelease::from_inrelease(URL, &signed, &keyring, &policy("trixie", at(CHECKED_AT)))
            .unwrap();
    }

    #[test]
    fn a_release_for_another_suite_is_refused() {
        let keyring = Keyring::builtin().unwrap();
        let err = VerifiedRelease::from_inrelease(
            URL,
            TRIXIE,
            &keyring,
            &policy("bookworm", trixie_now()),
        )
        .unwrap_err();
        let ReleaseError::SuiteMismatch {
            asked,
            suite,
            codename,
            ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(
            (asked.as_str(), suite.as_str(), codename.as_str()),
            ("bookworm", "stable", "trixie")
        );
        names_url(&err);
    }

    #[test]
    fn detached_signatures_verify_and_catch_changes() {
        let keyring = test_keyring();
        let text = small_release(SIGNED_AT, None);
        let signature =
            sign::detached_sign_with(ARCHIVE_SEC, text.as_bytes(), signed_at(SIGNED_AT));
        let now = policy("trixie", at(CHECKED_AT));
        let release =
            VerifiedRelease::from_detached(URL, text.as_bytes(), &signature, &keyring, &now)
                .unwrap();
        assert_eq!(release.signer(), ARCHIVE_SUBKEY);

        let altered = text.replacen("Components: main", "Components: mair", 1);
        let err =
            VerifiedRelease::from_detached(URL, altered.as_bytes(), &signature, &keyring, &now)
                .unwrap_err();
        assert!(matches!(err, ReleaseError::BadSignature { .. }), "{err:?}");
        names_url(&err);

        let untrusted =
            sign::detached_sign_with(UNTRUSTED_SEC, text.as_bytes(), signed_at(SIGNED_AT));
        let err = VerifiedRelease::from_detached(URL, text.as_bytes(), &untrusted, &keyring, &now)
            .unwrap_err();
        assert!(
            matches!(err, ReleaseError::UntrustedSigner { .. }),
            "{err:?}"
        );
        names_url(&err);
    }

    #[test]
    fn a_key_expired_now_is_refused_though_it_was_alive_when_it_signed() {
        // The expired key was valid from 2020-01-01 to 2021-01-01.
        let when = "Mon, 01 Jun 2020 00:00:00 UTC";
        let text = small_release(when, None);
        let signed = sign::clearsign_with(EXPIRED_SEC, text.as_bytes(), signed_at(when));
        let keyring = test_keyring();
        let then = policy("trixie", at("Mon, 01 Jun 2020 01:00:00 UTC"));
        VerifiedRelease::from_inrelease(URL, &signed, &keyring, &then).unwrap();

        let err = VerifiedRelease::from_inrelease(
            URL,
            &signed,
            &keyring,
            &policy("trixie", at(CHECKED_AT)),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ReleaseError::KeyExpired { fingerprint, .. }
                if fingerprint == "A7DA11CF65A6262E4D51A45B39457C6209ED4639"),
            "{err:?}"
        );
        names_url(&err);

        let detached = sign::detached_sign_with(EXPIRED_SEC, text.as_bytes(), signed_at(when));
        let err = VerifiedRelease::from_detached(
            URL,
            text.as_bytes(),
            &detached,
            &keyring,
            &policy("trixie", at(CHECKED_AT)),
        )
        .unwrap_err();
        assert!(matches!(err, ReleaseError::KeyExpired { .. }), "{err:?}");
    }

    #[test]
    fn a_revoked_key_is_refused() {
        let when = "Mon, 01 Jun 2020 00:00:00 UTC";
        let text = small_release(when, None);
        let signed = sign::clearsign_with(REVOKED_SEC, text.as_bytes(), signed_at(when));
        let err = VerifiedRelease::from_inrelease(
            URL,
            &signed,
            &test_keyring(),
            &policy("trixie", at(CHECKED_AT)),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ReleaseError::KeyRevoked { fingerprint, .. }
                if fingerprint == "97D61C55831F0EE9794525695B704C77AD2A67F3"),
            "{err:?}"
        );
        names_url(&err);
    }

    #[test]
    fn sha1_signatures_are_refused() {
        let text = small_release(SIGNED_AT, None);
        let sha1 = SignOptions {
            hash: HashAlgorithm::SHA1,
            ..signed_at(SIGNED_AT)
        };
        let keyring = test_keyring();
        let now = policy("trixie", at(CHECKED_AT));
        let signed = sign::clearsign_with(ARCHIVE_SEC, text.as_bytes(), sha1);
        let err = VerifiedRelease::from_inrelease(URL, &signed, &keyring, &now).unwrap_err();
        assert!(
            matches!(&err, ReleaseError::WeakHash { algorithm, .. } if algorithm == "SHA1"),
            "{err:?}"
        );
        names_url(&err);

        let detached = sign::detached_sign_with(ARCHIVE_SEC, text.as_bytes(), sha1);
        let err = VerifiedRelease::from_detached(URL, text.as_bytes(), &detached, &keyring, &now)
            .unwrap_err();
        assert!(matches!(err, ReleaseError::WeakHash { .. }), "{err:?}");
    }

    #[test]
    fn an_unsigned_release_is_refused() {
        let text = small_release(SIGNED_AT, None);
        let now = policy("trixie", at(CHECKED_AT));
        let err = VerifiedRelease::from_inrelease(URL, text.as_bytes(), &test_keyring(), &now)
            .unwrap_err();
        assert!(matches!(err, ReleaseError::NotSigned { .. }), "{err:?}");
        names_url(&err);

        let err = VerifiedRelease::from_detached(
            URL,
            text.as_bytes(),
            b"not a signature",
            &test_keyring(),
            &now,
        )
        .unwrap_err();
        assert!(matches!(err, ReleaseError::NotSigned { .. }), "{err:?}");
        names_url(&err);
    }

    #[test]
    fn an_empty_keyring_trusts_nothing() {
        let err = VerifiedRelease::from_inrelease(
            URL,
            TRIXIE,
            &Keyring::default(),
            &policy("trixie", trixie_now()),
        )
        .unwrap_err();
        assert!(
            matches!(err, ReleaseError::UntrustedSigner { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn malformed_signed_releases_are_refused_with_the_reason() {
        let keyring = test_keyring();
        let now = policy("trixie", at(CHECKED_AT));
        let good = small_release(SIGNED_AT, None);
        for (text, reason) in [
            (good.replace("SHA256:", "MD5Sum:"), "no SHA256"),
            (good.replace("Date: ", "Date: yesterday "), "Date"),
            (
                good.replace("Codename: trixie\n", "Codename: trixie\nSuite: x\n"),
                "twice",
            ),
            (good.replace(" 5 main", " five main"), "SHA256 line"),
            (
                good.replace("Suite: stable\nCodename: trixie\n", ""),
                "no Suite or Codename",
            ),
        ] {
            let signed = sign::clearsign_with(ARCHIVE_SEC, text.as_bytes(), signed_at(SIGNED_AT));
            let err = VerifiedRelease::from_inrelease(URL, &signed, &keyring, &now).unwrap_err();
            assert!(
                matches!(&err, ReleaseError::Malformed { what, .. } if what.contains(reason)),
                "{reason}: {err:?}"
            );
            names_url(&err);
        }
    }

    #[test]
    fn a_signature_made_a_little_after_now_is_accepted_but_not_hours_after() {
        let keyring = test_keyring();
        let text = small_release(SIGNED_AT, None);
        let now = policy("trixie", at("Wed, 31 Dec 2025 23:50:00 UTC"));
        let signed = sign::clearsign_with(ARCHIVE_SEC, text.as_bytes(), signed_at(SIGNED_AT));
        VerifiedRelease::from_inrelease(URL, &signed, &keyring, &now).unwrap();

        let hours_before = policy("trixie", at("Wed, 31 Dec 2025 21:00:00 UTC"));
        let err =
            VerifiedRelease::from_inrelease(URL, &signed, &keyring, &hours_before).unwrap_err();
        assert!(
            matches!(&err, ReleaseError::SignedInFuture { signed_at, .. } if signed_at == SIGNED_AT),
            "{err:?}"
        );
        names_url(&err);
    }

    #[test]
    fn release_dates_format_and_parse_back() {
        for secs in [0, 951_868_800, 1_795_252_544, 1_835_395_200] {
            let time = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(parse_date(&sign::release_date(time)), Some(time));
            assert_eq!(format_date(time), sign::release_date(time));
        }
        assert_eq!(
            sign::release_date(UNIX_EPOCH + Duration::from_secs(1_795_252_544)),
            "Sat, 21 Nov 2026 09:15:44 UTC"
        );
    }

    /// The checks made after the signature, on `text` taken as verified.
    fn checked(text: &str, policy: &ReleasePolicy) -> Result<VerifiedRelease, ReleaseError> {
        VerifiedRelease::from_verified_text(URL, text.as_bytes(), ARCHIVE_SUBKEY.into(), policy)
    }

    #[test]
    fn a_release_naming_only_its_suite_or_only_its_codename_is_matched_by_that_name() {
        let now = at(CHECKED_AT);
        let both = small_release(SIGNED_AT, None);
        let only_suite = both.replace("Codename: trixie\n", "");
        let release = checked(&only_suite, &policy("stable", now)).unwrap();
        assert_eq!((release.suite(), release.codename()), ("stable", ""));
        let only_codename = both.replace("Suite: stable\n", "");
        let release = checked(&only_codename, &policy("trixie", now)).unwrap();
        assert_eq!((release.suite(), release.codename()), ("", "trixie"));

        let neither = only_suite.replace("Suite: stable\n", "");
        let err = checked(&neither, &policy("trixie", now)).unwrap_err();
        assert!(matches!(err, ReleaseError::Malformed { .. }), "{err:?}");
    }

    #[test]
    fn a_date_a_day_ahead_is_the_last_one_accepted() {
        let now = policy("trixie", at("Thu, 01 Jan 2026 01:00:00 UTC"));
        checked(&small_release("Fri, 02 Jan 2026 01:00:00 UTC", None), &now).unwrap();
        let err = checked(&small_release("Fri, 02 Jan 2026 01:00:01 UTC", None), &now).unwrap_err();
        assert!(matches!(err, ReleaseError::FutureDate { .. }), "{err:?}");
    }

    #[test]
    fn a_release_is_valid_until_the_second_its_valid_until_names() {
        let release = small_release(SIGNED_AT, Some("Thu, 08 Jan 2026 00:00:00 UTC"));
        checked(
            &release,
            &policy("trixie", at("Thu, 08 Jan 2026 00:00:00 UTC")),
        )
        .unwrap();
        let late = policy("trixie", at("Thu, 08 Jan 2026 00:00:01 UTC"));
        let err = checked(&release, &late).unwrap_err();
        assert!(matches!(err, ReleaseError::Expired { .. }), "{err:?}");
    }

    #[test]
    fn a_changed_release_signed_at_the_edge_of_the_clock_skew_is_a_bad_signature() {
        // Signed exactly SIGNATURE_CLOCK_SKEW after `now`: not "in the future", so a changed
        // byte is reported as what it is.
        let text = small_release(SIGNED_AT, None);
        let signed = sign::clearsign_with(
            ARCHIVE_SEC,
            text.as_bytes(),
            signed_at("Thu, 01 Jan 2026 00:30:00 UTC"),
        );
        let altered =
            String::from_utf8(signed)
                .unwrap()
                .replacen("Origin: Test", "Origin: Tesu", 1);
        let err = VerifiedRelease::from_inrelease(
            URL,
            altered.as_bytes(),
            &test_keyring(),
            &policy("trixie", at(SIGNED_AT)),
        )
        .unwrap_err();
        assert!(matches!(err, ReleaseError::BadSignature { .. }), "{err:?}");
    }
}
