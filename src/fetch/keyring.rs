//! Trusted archive keys: Debian's, built into the binary from `keyrings/`, or exactly the files
//! given with --keyring. Takes keyring bytes (binary or ASCII-armored); gives the set of
//! certificates that [`super::VerifiedRelease`] accepts signatures from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sequoia_openpgp::cert::CertParser;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::{Cert, Fingerprint};

/// Debian's per-release archive keyrings by file name (see keyrings/README.md): every `*.gpg`
/// file of `keyrings/`, listed by build.rs at compile time.
const BUILTIN: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/builtin_keyrings.rs"));

/// Why a keyring could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("cannot read keyring {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("keyring {path} is not a valid OpenPGP keyring (binary or ASCII-armored)")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("keyring {path} is not a regular file; pass the keyring file itself")]
    NotFile { path: PathBuf },
    #[error("keyring {path} is larger than the {limit}-byte limit for a keyring")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("keyring {path} holds no OpenPGP certificate")]
    NoCerts { path: PathBuf },
    #[error("built-in keyring keyrings/{name} is broken; this build of debstrap-onion is faulty")]
    Builtin {
        name: &'static str,
        #[source]
        source: Box<KeyringError>,
    },
}

/// A set of trusted OpenPGP certificates.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    certs: Vec<sequoia_openpgp::Cert>,
}

impl Keyring {
    /// Debian's archive keys shipped in `keyrings/`.
    pub fn builtin() -> Result<Keyring, KeyringError> {
        let mut certs = BTreeMap::new();
        for &(name, bytes) in BUILTIN {
            let path = Path::new("keyrings").join(name);
            parse_into(&mut certs, &path, bytes).map_err(|source| KeyringError::Builtin {
                name,
                source: Box::new(source),
            })?;
        }
        Ok(Keyring::from_map(certs))
    }

    /// Exactly the keys in `paths` (binary or ASCII-armored keyrings, any number of certificates
    /// each); a file without any certificate is an error naming it. No paths give an empty
    /// keyring, which trusts nothing.
    pub fn from_files(paths: &[PathBuf]) -> Result<Keyring, KeyringError> {
        let mut certs = BTreeMap::new();
        for path in paths {
            let bytes = read_keyring_file(path)?;
            parse_into(&mut certs, path, &bytes)?;
        }
        Ok(Keyring::from_map(certs))
    }

    /// The certificates.
    pub fn certs(&self) -> &[sequoia_openpgp::Cert] {
        &self.certs
    }

    /// The primary-key fingerprints of the certificates, upper-case hexadecimal.
    pub fn fingerprints(&self) -> Vec<String> {
        self.certs
            .iter()
            .map(|c| c.fingerprint().to_hex())
            .collect()
    }

    fn from_map(certs: BTreeMap<Fingerprint, Cert>) -> Keyring {
        Keyring {
            certs: certs.into_values().collect(),
        }
    }
}

/// The largest keyring file read (Debian's whole archive keyring is under 100 KiB).
pub const MAX_KEYRING: u64 = 16 << 20;

/// Reads one keyring file through a single descriptor: it must be a regular file (a FIFO or
/// device is refused without blocking on it) of at most [`MAX_KEYRING`] bytes, and what is
/// checked is what is read.
fn read_keyring_file(path: &Path) -> Result<Vec<u8>, KeyringError> {
    use rustix::fs::{FileType, Mode, OFlags};
    use std::io::Read;
    let read_err = |source: std::io::Error| KeyringError::Read {
        path: path.to_path_buf(),
        source,
    };
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| read_err(e.into()))?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| read_err(e.into()))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(KeyringError::NotFile {
            path: path.to_path_buf(),
        });
    }
    let too_large = || KeyringError::TooLarge {
        path: path.to_path_buf(),
        limit: MAX_KEYRING,
    };
    if u64::try_from(stat.st_size).unwrap_or(u64::MAX) > MAX_KEYRING {
        return Err(too_large());
    }
    let file = fs_err::File::from_parts(std::fs::File::from(fd), path);
    let mut bytes = Vec::new();
    file.take(MAX_KEYRING + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_KEYRING {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Adds every certificate of one keyring file to `certs`, merging repeats of one key.
fn parse_into(
    certs: &mut BTreeMap<Fingerprint, Cert>,
    path: &Path,
    bytes: &[u8],
) -> Result<(), KeyringError> {
    let parse_error = |source: anyhow::Error| KeyringError::Parse {
        path: path.to_path_buf(),
        source: source.into(),
    };
    let mut found = 0usize;
    for block in armor_blocks(bytes) {
        for cert in CertParser::from_bytes(block).map_err(parse_error)? {
            // Only public keys are ever needed; secret material passed by mistake is dropped.
            let cert = cert.map_err(parse_error)?.strip_secret_key_material();
            found += 1;
            let merged = match certs.remove(&cert.fingerprint()) {
                Some(known) => known.merge_public(cert).map_err(parse_error)?,
                None => cert,
            };
            certs.insert(merged.fingerprint(), merged);
        }
    }
    if found == 0 {
        return Err(KeyringError::NoCerts {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Splits an ASCII-armored file into its armor blocks (several `.asc` files are often
/// concatenated into one); binary data is returned whole.
fn armor_blocks(bytes: &[u8]) -> Vec<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN PGP ";
    let starts: Vec<usize> = bytes
        .windows(BEGIN.len())
        .enumerate()
        .filter(|&(i, w)| w == BEGIN && (i == 0 || bytes[i - 1] == b'\n'))
        .map(|(i, _)| i)
        .collect();
    if starts.len() < 2 {
        return vec![bytes];
    }
    let mut blocks = Vec::with_capacity(starts.len());
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(bytes.len());
        blocks.push(&bytes[start..end]);
    }
    blocks
}

#[cfg(test)]
// Tests state their expectations with unwrap(); a panic there is the failure report.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
    }

    const TEST_ARCHIVE: &str = "5E8FA97ED2390723574BA0A24F9592BF6748C0BD";
    const UNTRUSTED: &str = "5C9FDF8606D13A31E62589E400E76F7A505AAB4A";

    #[test]
    fn builtin_holds_bullseye_bookworm_and_trixie_keys() {
        let keyring = Keyring::builtin().unwrap();
        let fprs = keyring.fingerprints();
        for expected in [
            // bullseye automatic, security, stable
            "1F89983E0081FDE018F3CC9673A4F27B8DD47936",
            "AC530D520F2F3269F5E98313A48449044AAD5C5D",
            "A4285295FC7B1A81600062A9605C66F00D6C9793",
            // bookworm
            "B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8",
            "05AB90340C0C5E797F44A8C8254CF3B5AEC0A8F0",
            "4D64FEC119C2029067D6E791F8D2585B8783D481",
            // trixie
            "04B54C3CDCA79751B16BC6B5225629DF75B188BD",
            "5E04A1E3223A19A20706E20F9904613D4CCE68C6",
            "41587F7DB8C774BCCF131416762F67A0B2C39DE4",
        ] {
            assert!(fprs.iter().any(|f| f == expected), "{expected} missing");
        }
        assert_eq!(fprs.len(), 9, "{fprs:?}");
        assert!(keyring.certs().iter().all(|c| !c.is_tsk()));
    }

    #[test]
    fn reads_armored_and_binary_files_and_merges_repeats() {
        let keyring = Keyring::from_files(&[
            fixture("fixtures/keys/test-archive.pub.asc"),
            fixture("fixtures/keys/test-archive.pub.gpg"),
            fixture("fixtures/keys/untrusted.pub.asc"),
        ])
        .unwrap();
        assert_eq!(keyring.fingerprints(), vec![UNTRUSTED, TEST_ARCHIVE]);
    }

    #[test]
    fn one_file_may_hold_several_certs_armored_or_binary() {
        let dir = tempfile::tempdir().unwrap();
        let armored = dir.path().join("two.asc");
        let mut both = fs_err::read(fixture("fixtures/keys/test-archive.pub.asc")).unwrap();
        both.extend(fs_err::read(fixture("fixtures/keys/untrusted.pub.asc")).unwrap());
        fs_err::write(&armored, &both).unwrap();
        let binary = dir.path().join("many.gpg");
        let mut all = Vec::new();
        for (name, bytes) in BUILTIN {
            if name.contains("trixie") {
                all.extend_from_slice(bytes);
            }
        }
        fs_err::write(&binary, &all).unwrap();

        let keyring = Keyring::from_files(&[armored]).unwrap();
        assert_eq!(keyring.certs().len(), 2);
        let keyring = Keyring::from_files(&[binary]).unwrap();
        assert_eq!(keyring.certs().len(), 3);
    }

    #[test]
    fn secret_keys_given_as_keyring_keep_only_the_public_part() {
        let keyring =
            Keyring::from_files(&[fixture("fixtures/keys/test-archive.sec.asc")]).unwrap();
        assert_eq!(keyring.fingerprints(), vec![TEST_ARCHIVE]);
        assert!(!keyring.certs()[0].is_tsk());
    }

    #[test]
    fn a_file_without_certs_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.gpg");
        fs_err::write(&empty, b"").unwrap();
        let err = Keyring::from_files(std::slice::from_ref(&empty)).unwrap_err();
        assert!(
            matches!(&err, KeyringError::NoCerts { path } | KeyringError::Parse { path, .. } if *path == empty),
            "{err:?}"
        );
        assert!(err.to_string().contains("empty.gpg"), "{err}");

        let text = dir.path().join("notes.txt");
        fs_err::write(&text, b"this is not a keyring\n").unwrap();
        let err = Keyring::from_files(&[text]).unwrap_err();
        assert!(err.to_string().contains("notes.txt"), "{err}");
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let missing = fixture("fixtures/keys/no-such-file.gpg");
        let err = Keyring::from_files(&[missing]).unwrap_err();
        assert!(matches!(err, KeyringError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("no-such-file.gpg"), "{err}");
    }

    #[test]
    fn a_fifo_or_device_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("keyring.gpg");
        crate::sys::mkfifo(&fifo);
        let err = Keyring::from_files(&[fifo]).unwrap_err();
        assert!(matches!(err, KeyringError::NotFile { .. }), "{err:?}");
        let err = Keyring::from_files(&[PathBuf::from("/dev/zero")]).unwrap_err();
        assert!(matches!(err, KeyringError::NotFile { .. }), "{err:?}");
    }

    #[test]
    fn a_keyring_past_the_limit_is_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.gpg");
        let file = fs_err::File::create(&big).unwrap();
        file.set_len(MAX_KEYRING + 1).unwrap();
        let err = Keyring::from_files(&[big]).unwrap_err();
        assert!(matches!(err, KeyringError::TooLarge { .. }), "{err:?}");
        assert!(err.to_string().contains("big.gpg"), "{err}");
    }

    #[test]
    fn armor_blocks_start_only_at_the_beginning_of_a_line() {
        let one = b"-----BEGIN PGP PUBLIC KEY BLOCK-----\nA -----BEGIN PGP x\n-----END\n";
        let two = b"-----BEGIN PGP PUBLIC KEY BLOCK-----\nB\n-----END\n";
        let both = [&one[..], &two[..]].concat();
        assert_eq!(armor_blocks(&both), vec![&one[..], &two[..]]);
        // One block, or none at a line's start: the bytes whole.
        assert_eq!(armor_blocks(one), vec![&one[..]]);
        let inline = b"x -----BEGIN PGP y\nz -----BEGIN PGP w\n";
        assert_eq!(armor_blocks(inline), vec![&inline[..]]);
    }

    #[test]
    fn a_keyring_of_exactly_the_limit_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let edge = dir.path().join("edge.gpg");
        let file = fs_err::File::create(&edge).unwrap();
        file.set_len(MAX_KEYRING).unwrap();
        let bytes = read_keyring_file(&edge).unwrap();
        assert_eq!(bytes.len() as u64, MAX_KEYRING);
    }

    #[test]
    fn no_files_trust_nothing() {
        assert!(Keyring::from_files(&[]).unwrap().certs().is_empty());
    }
}
