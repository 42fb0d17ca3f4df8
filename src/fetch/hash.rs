//! SHA-256 digests as they appear in Release and Packages files.

use std::fmt;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// Parses 64 hexadecimal digits.
    pub fn from_hex(text: &str) -> Option<Sha256Digest> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).ok()?;
        Some(Sha256Digest(bytes))
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Sha256Digest {
        use sha2::Digest;
        Sha256Digest(sha2::Sha256::digest(data).into())
    }

    /// Lower-case hexadecimal.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

/// A reader that hashes every byte read through it.
pub(crate) struct Sha256Reader<R> {
    inner: R,
    hasher: sha2::Sha256,
    read: u64,
}

impl<R> Sha256Reader<R> {
    pub(crate) fn new(inner: R) -> Self {
        use sha2::Digest;
        Sha256Reader {
            inner,
            hasher: sha2::Sha256::new(),
            read: 0,
        }
    }

    /// The digest of what was read so far.
    pub(crate) fn digest(&self) -> Sha256Digest {
        use sha2::Digest;
        Sha256Digest(self.hasher.clone().finalize().into())
    }

    /// How many bytes were read so far.
    pub(crate) fn count(&self) -> u64 {
        self.read
    }
}

impl<R: std::io::Read> std::io::Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}
