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

/// The SHA-256 and length of the bytes fed to it.
#[derive(Clone)]
pub(crate) struct Sha256Counter {
    hasher: sha2::Sha256,
    count: u64,
}

impl Sha256Counter {
    pub(crate) fn new() -> Self {
        use sha2::Digest;
        Sha256Counter {
            hasher: sha2::Sha256::new(),
            count: 0,
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        use sha2::Digest;
        self.hasher.update(data);
        self.count += data.len() as u64;
    }

    /// The digest of what was fed so far.
    pub(crate) fn digest(&self) -> Sha256Digest {
        use sha2::Digest;
        Sha256Digest(self.hasher.clone().finalize().into())
    }

    /// How many bytes were fed so far.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }
}

/// A reader that hashes every byte read through it.
pub(crate) struct Sha256Reader<R> {
    inner: R,
    sum: Sha256Counter,
}

impl<R> Sha256Reader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Sha256Reader {
            inner,
            sum: Sha256Counter::new(),
        }
    }

    /// The digest of what was read so far.
    pub(crate) fn digest(&self) -> Sha256Digest {
        self.sum.digest()
    }

    /// How many bytes were read so far.
    pub(crate) fn count(&self) -> u64 {
        self.sum.count()
    }
}

impl<R: std::io::Read> std::io::Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sum.update(&buf[..n]);
        Ok(n)
    }
}
