//! v3 onion service keys: takes a seed, tor's key files or nothing (a fresh random key) and
//! gives the ed25519 key pair, its `.onion` address and the bytes of tor's three key files.

use data_encoding::BASE32_NOPAD;
use ed25519_dalek::hazmat::ExpandedSecretKey;
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha512};
use sha3::Sha3_256;

/// tor's secret key file name inside a HiddenServiceDir.
pub const SECRET_KEY_FILE: &str = "hs_ed25519_secret_key";
/// tor's public key file name inside a HiddenServiceDir.
pub const PUBLIC_KEY_FILE: &str = "hs_ed25519_public_key";
/// tor's file holding the address and a newline.
pub const HOSTNAME_FILE: &str = "hostname";

/// The 32-byte header of the secret key file: its tag padded with NULs.
const SECRET_HEADER: &[u8; 32] = b"== ed25519v1-secret: type0 ==\0\0\0";
/// The 32-byte header of the public key file.
const PUBLIC_HEADER: &[u8; 32] = b"== ed25519v1-public: type0 ==\0\0\0";
/// Size of the secret key file: header + 64-byte expanded key.
pub const SECRET_FILE_LEN: usize = 96;
/// Size of the public key file: header + 32-byte key.
pub const PUBLIC_FILE_LEN: usize = 64;
/// The onion address version byte (v3).
const VERSION: u8 = 0x03;
/// Length of an address without `.onion`.
pub const ADDRESS_LEN: usize = 56;

/// Why bytes are not a v3 key file or address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("{len} bytes where tor writes {expected}")]
    Length { len: usize, expected: usize },
    #[error("its header is not {expected:?}")]
    Header { expected: &'static str },
    #[error("the secret scalar is not clamped, so tor did not write it")]
    NotClamped,
    #[error("{0:?} is not a 56-character base32 name ending in .onion")]
    AddressSyntax(String),
    #[error("{0:?} has version byte {1:#04x}, not 0x03")]
    AddressVersion(String, u8),
    #[error("{0:?} has a wrong checksum")]
    AddressChecksum(String),
}

/// An ed25519 onion service key as tor stores it: the expanded secret and the public key.
#[derive(Clone, PartialEq, Eq)]
pub struct OnionKey {
    /// SHA-512 of the seed with its first half clamped (tor keeps no seed).
    expanded: [u8; 64],
    public: [u8; 32],
}

impl std::fmt::Debug for OnionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret half.
        f.debug_struct("OnionKey")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

impl OnionKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<OnionKey, getrandom::Error> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)?;
        let key = OnionKey::from_seed(&seed);
        seed.fill(0);
        Ok(key)
    }

    /// The key ed25519 derives from a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> OnionKey {
        let mut expanded: [u8; 64] = Sha512::digest(seed).into();
        clamp(&mut expanded);
        let public = SigningKey::from_bytes(seed).verifying_key().to_bytes();
        OnionKey { expanded, public }
    }

    /// The key of an expanded secret (scalar | hash prefix); the public key is scalar × base point.
    pub fn from_expanded(expanded: &[u8; 64]) -> Result<OnionKey, KeyFormatError> {
        if !is_clamped(expanded) {
            return Err(KeyFormatError::NotClamped);
        }
        let secret = ExpandedSecretKey::from_bytes(expanded);
        let public = VerifyingKey::from(&secret).to_bytes();
        Ok(OnionKey {
            expanded: *expanded,
            public,
        })
    }

    /// Parses the contents of `hs_ed25519_secret_key`.
    pub fn from_secret_file(bytes: &[u8]) -> Result<OnionKey, KeyFormatError> {
        let body = strip_header(bytes, SECRET_HEADER, SECRET_FILE_LEN)?;
        let expanded: &[u8; 64] = body
            .try_into()
            .expect("strip_header returned exactly 64 bytes after the header");
        OnionKey::from_expanded(expanded)
    }

    /// The 32-byte ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// The 56-character address with `.onion`.
    pub fn address(&self) -> String {
        onion_address(&self.public)
    }

    /// The contents of `hs_ed25519_secret_key`.
    pub fn secret_file(&self) -> Vec<u8> {
        [SECRET_HEADER.as_slice(), &self.expanded].concat()
    }

    /// The contents of `hs_ed25519_public_key`.
    pub fn public_file(&self) -> Vec<u8> {
        public_file(&self.public)
    }

    /// The contents of `hostname`: the address and a newline.
    pub fn hostname_file(&self) -> String {
        format!("{}\n", self.address())
    }
}

/// The contents of `hs_ed25519_public_key` for a public key.
pub fn public_file(public: &[u8; 32]) -> Vec<u8> {
    [PUBLIC_HEADER.as_slice(), public].concat()
}

/// Parses the contents of `hs_ed25519_public_key`.
pub fn parse_public_file(bytes: &[u8]) -> Result<[u8; 32], KeyFormatError> {
    let body = strip_header(bytes, PUBLIC_HEADER, PUBLIC_FILE_LEN)?;
    Ok(body
        .try_into()
        .expect("strip_header returned exactly 32 bytes after the header"))
}

/// The v3 address of a public key: base32(PUBKEY | CHECKSUM | 0x03), lower-case, `.onion`.
pub fn onion_address(public: &[u8; 32]) -> String {
    let mut raw = [0u8; 35];
    raw[..32].copy_from_slice(public);
    raw[32..34].copy_from_slice(&checksum(public));
    raw[34] = VERSION;
    format!("{}.onion", BASE32_NOPAD.encode(&raw).to_ascii_lowercase())
}

/// The public key named by a v3 address, after checking its version byte and checksum.
pub fn parse_address(address: &str) -> Result<[u8; 32], KeyFormatError> {
    let syntax = || KeyFormatError::AddressSyntax(address.to_string());
    let label = address.strip_suffix(".onion").ok_or_else(syntax)?;
    if label.len() != ADDRESS_LEN || label.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(syntax());
    }
    let raw = BASE32_NOPAD
        .decode(label.to_ascii_uppercase().as_bytes())
        .map_err(|_| syntax())?;
    let raw: [u8; 35] = raw.try_into().map_err(|_| syntax())?;
    if raw[34] != VERSION {
        return Err(KeyFormatError::AddressVersion(address.to_string(), raw[34]));
    }
    let public: [u8; 32] = raw[..32].try_into().expect("35 bytes hold a 32-byte key");
    if raw[32..34] != checksum(&public) {
        return Err(KeyFormatError::AddressChecksum(address.to_string()));
    }
    Ok(public)
}

/// CHECKSUM = SHA3-256(".onion checksum" | PUBKEY | VERSION)[..2].
fn checksum(public: &[u8; 32]) -> [u8; 2] {
    let digest = Sha3_256::new()
        .chain_update(b".onion checksum")
        .chain_update(public)
        .chain_update([VERSION])
        .finalize();
    [digest[0], digest[1]]
}

/// Clamps the scalar half as ed25519 key generation does.
fn clamp(expanded: &mut [u8; 64]) {
    expanded[0] &= 248;
    expanded[31] &= 127;
    expanded[31] |= 64;
}

fn is_clamped(expanded: &[u8; 64]) -> bool {
    expanded[0] & 7 == 0 && expanded[31] & 128 == 0 && expanded[31] & 64 != 0
}

fn strip_header<'a>(
    bytes: &'a [u8],
    header: &'static [u8; 32],
    expected: usize,
) -> Result<&'a [u8], KeyFormatError> {
    if bytes.len() != expected {
        return Err(KeyFormatError::Length {
            len: bytes.len(),
            expected,
        });
    }
    let (head, body) = bytes.split_at(header.len());
    if head != header {
        let tag = std::str::from_utf8(&header[..29]).unwrap_or("== ed25519v1 ==");
        return Err(KeyFormatError::Header { expected: tag });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOR_SECRET: &[u8] =
        include_bytes!("../../fixtures/onion/tor-generated/hs_ed25519_secret_key");
    const TOR_PUBLIC: &[u8] =
        include_bytes!("../../fixtures/onion/tor-generated/hs_ed25519_public_key");
    const TOR_HOSTNAME: &str = include_str!("../../fixtures/onion/tor-generated/hostname");

    #[test]
    fn address_from_tor_secret_key_equals_tors_hostname() {
        let key = OnionKey::from_secret_file(TOR_SECRET).expect("tor's secret key parses");
        assert_eq!(key.hostname_file(), TOR_HOSTNAME);
        assert_eq!(key.public_file(), TOR_PUBLIC);
    }

    #[test]
    fn our_files_reproduce_tors_bytes() {
        let key = OnionKey::from_secret_file(TOR_SECRET).expect("tor's secret key parses");
        assert_eq!(key.secret_file(), TOR_SECRET);
        assert_eq!(parse_public_file(TOR_PUBLIC), Ok(*key.public_key()));
    }

    #[test]
    fn tor_file_headers_and_sizes() {
        assert_eq!(TOR_SECRET.len(), SECRET_FILE_LEN);
        assert_eq!(TOR_PUBLIC.len(), PUBLIC_FILE_LEN);
        assert_eq!(&TOR_SECRET[..32], SECRET_HEADER);
        assert_eq!(&TOR_PUBLIC[..32], PUBLIC_HEADER);
        assert_eq!(TOR_HOSTNAME.len(), ADDRESS_LEN + ".onion\n".len());
        let key = OnionKey::generate().expect("random source");
        assert_eq!(&key.secret_file()[..32], &TOR_SECRET[..32]);
        assert_eq!(key.secret_file().len(), TOR_SECRET.len());
        assert_eq!(&key.public_file()[..32], &TOR_PUBLIC[..32]);
        assert_eq!(key.public_file().len(), TOR_PUBLIC.len());
    }

    #[test]
    fn tor_hostname_checksum_verifies_and_names_tors_public_key() {
        let public = parse_address(TOR_HOSTNAME.trim_end()).expect("tor's address is valid");
        assert_eq!(public_file(&public), TOR_PUBLIC);
    }

    #[test]
    fn checksum_catches_a_changed_character() {
        let address = TOR_HOSTNAME.trim_end();
        let mut changed = address.as_bytes().to_vec();
        changed[10] = if changed[10] == b'a' { b'b' } else { b'a' };
        let changed = String::from_utf8(changed).expect("ascii");
        assert!(matches!(
            parse_address(&changed),
            Err(KeyFormatError::AddressChecksum(_))
        ));
    }

    #[test]
    fn address_checksum_matches_the_spec_formula() {
        // An all-zero key: SHA3-256(".onion checksum" | 0^32 | 03)[..2], computed independently.
        let public = [0u8; 32];
        let mut hasher = Sha3_256::new();
        hasher.update(b".onion checksum");
        hasher.update([0u8; 32]);
        hasher.update([3u8]);
        let digest = hasher.finalize();
        let address = onion_address(&public);
        let raw = BASE32_NOPAD
            .decode(address.trim_end_matches(".onion").to_uppercase().as_bytes())
            .expect("base32");
        assert_eq!(&raw[32..34], &digest[..2]);
        assert_eq!(raw[34], 3);
        assert_eq!(address.len(), ADDRESS_LEN + ".onion".len());
        assert_eq!(address, address.to_lowercase());
    }

    #[test]
    fn public_key_from_seed_equals_public_key_from_expanded_secret() {
        let key = OnionKey::from_seed(&[7u8; 32]);
        let reread = OnionKey::from_secret_file(&key.secret_file()).expect("our file parses");
        assert_eq!(reread, key);
    }

    #[test]
    fn generated_keys_differ() {
        let a = OnionKey::generate().expect("random source");
        let b = OnionKey::generate().expect("random source");
        assert_ne!(a.address(), b.address());
    }

    #[test]
    fn malformed_secret_files_are_refused() {
        assert!(matches!(
            OnionKey::from_secret_file(&TOR_SECRET[..95]),
            Err(KeyFormatError::Length { len: 95, .. })
        ));
        let mut wrong_header = TOR_SECRET.to_vec();
        wrong_header[17] = b'p';
        assert!(matches!(
            OnionKey::from_secret_file(&wrong_header),
            Err(KeyFormatError::Header { .. })
        ));
        let mut unclamped = TOR_SECRET.to_vec();
        unclamped[32] |= 1;
        assert_eq!(
            OnionKey::from_secret_file(&unclamped),
            Err(KeyFormatError::NotClamped)
        );
        assert!(parse_public_file(TOR_SECRET).is_err());
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let key = OnionKey::from_secret_file(TOR_SECRET).expect("parses");
        let shown = format!("{key:?}");
        assert!(shown.contains(TOR_HOSTNAME.trim_end()));
        assert!(!shown.contains("expanded"));
    }
}
