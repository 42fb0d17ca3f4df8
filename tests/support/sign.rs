//! Test signing with the keys in fixtures/keys: takes an armored secret key and bytes, gives
//! an InRelease-style clearsigned text or a Release.gpg-style armored detached signature.
//! Shared by the integration tests and by the unit tests in src/fetch/release.rs.

// Each test binary that includes this file uses only some of it.
#![allow(dead_code)]

use std::io::Write;
use std::time::SystemTime;

use sequoia_openpgp::armor;
use sequoia_openpgp::crypto::KeyPair;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::policy::StandardPolicy;
use sequoia_openpgp::serialize::stream::{Armorer, Message, Signer};
use sequoia_openpgp::types::HashAlgorithm;
use sequoia_openpgp::Cert;

/// How to sign: the hash algorithm and the signature's creation time.
#[derive(Debug, Clone, Copy)]
pub struct SignOptions {
    pub hash: HashAlgorithm,
    pub time: SystemTime,
}

impl Default for SignOptions {
    /// SHA-512, signed now (what Debian's archive does).
    fn default() -> SignOptions {
        SignOptions {
            hash: HashAlgorithm::SHA512,
            time: SystemTime::now(),
        }
    }
}

/// `text` inline-signed like an InRelease (cleartext signature, SHA-512, made now).
pub fn clearsign(secret_armored: &[u8], text: &[u8]) -> Vec<u8> {
    clearsign_with(secret_armored, text, SignOptions::default())
}

/// An armored detached signature of `data`, like Release.gpg (SHA-512, made now).
pub fn detached_sign(secret_armored: &[u8], data: &[u8]) -> Vec<u8> {
    detached_sign_with(secret_armored, data, SignOptions::default())
}

/// `text` inline-signed with the given hash algorithm and creation time.
pub fn clearsign_with(secret_armored: &[u8], text: &[u8], options: SignOptions) -> Vec<u8> {
    let mut out = Vec::new();
    let message = Message::new(&mut out);
    let mut signer = Signer::new(message, signing_keypair(secret_armored, options.time))
        .expect("a signer over an in-memory message")
        .cleartext()
        .hash_algo(options.hash)
        .expect("sequoia can sign with this hash")
        .creation_time(options.time)
        .build()
        .expect("a cleartext signer");
    signer.write_all(text).expect("writing to memory");
    signer.finalize().expect("finishing the signature");
    out
}

/// An armored detached signature of `data` with the given hash algorithm and creation time.
pub fn detached_sign_with(secret_armored: &[u8], data: &[u8], options: SignOptions) -> Vec<u8> {
    let mut out = Vec::new();
    let message = Message::new(&mut out);
    let message = Armorer::new(message)
        .kind(armor::Kind::Signature)
        .build()
        .expect("an armorer over an in-memory message");
    let mut signer = Signer::new(message, signing_keypair(secret_armored, options.time))
        .expect("a signer over an in-memory message")
        .detached()
        .hash_algo(options.hash)
        .expect("sequoia can sign with this hash")
        .creation_time(options.time)
        .build()
        .expect("a detached signer");
    signer.write_all(data).expect("writing to memory");
    signer.finalize().expect("finishing the signature");
    out
}

/// The signing-capable secret key of a fixture as of `time`; expiry and revocation are not
/// checked, so that tests can make signatures that verification must refuse.
fn signing_keypair(secret_armored: &[u8], time: SystemTime) -> KeyPair {
    let cert = Cert::from_bytes(secret_armored).expect("an armored secret key fixture");
    let policy = StandardPolicy::new();
    cert.keys()
        .with_policy(&policy, time)
        .secret()
        .for_signing()
        .next()
        .expect("the fixture has a signing key bound at this time")
        .key()
        .clone()
        .into_keypair()
        .expect("the fixture's secret key is not encrypted")
}

/// `time` as a Release's Date field writes it, e.g. `Sat, 21 Nov 2026 09:15:44 UTC`.
pub fn release_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a time after 1970")
        .as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's civil_from_days).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // 1970-01-01 was a Thursday.
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} UTC",
        WEEKDAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}
