//! .deb downloads into a content-addressed cache: `CACHE/debs/SHA256.deb`. A file at its final
//! path has always been verified; a cached file is used only when its hash still matches. The
//! descriptor that was verified is the one kept in [`CachedDeb`] and read from when unpacking
//! (positionally, never reopened by name), and what is read is hashed again, so a file swapped
//! or rewritten after the check is caught.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};

use super::cache::CacheDir;
use super::client::{Expected, FetchError, Fetcher};
use super::hash::Sha256Reader;
use super::index::Package;
use crate::progress::{Counter, Reporter};

/// Parallel downloads at once; enough to fill a link, few enough to be polite to a mirror.
const CONCURRENCY: usize = 8;

/// The largest .deb we download (Debian's largest are a few GiB).
pub const MAX_DEB: u64 = 8 << 30;

/// A .deb in the cache whose size and SHA256 matched its verified index entry. Only this
/// module makes one; it holds the descriptor that was verified, and its bytes can only be read
/// through [`CachedDeb::open`], which hashes them again.
#[derive(Debug, Clone)]
pub struct CachedDeb {
    package: Package,
    file: Arc<File>,
    path: PathBuf,
}

impl CachedDeb {
    /// For tests only: checks a .deb already on disk (outside the cache, never through a final
    /// symlink) against `package`'s size and SHA256. The build never calls it; only
    /// [`download`] makes the `CachedDeb`s it unpacks.
    #[doc(hidden)]
    pub fn verify_local(package: Package, path: &Path) -> Result<CachedDeb, FetchError> {
        let cache_err = |source| FetchError::Cache {
            path: path.to_path_buf(),
            source,
        };
        let dir_path = path.parent().filter(|p| !p.as_os_str().is_empty());
        let dir = rustix::fs::open(
            dir_path.unwrap_or(Path::new(".")),
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| cache_err(e.into()))?;
        let name = path
            .file_name()
            .ok_or_else(|| cache_err(io::Error::from(io::ErrorKind::InvalidInput)))?
            .to_string_lossy()
            .into_owned();
        let dir = CacheDir::from_parts(Arc::new(dir), parent_of(path), false);
        let file = dir
            .open_file(&name)?
            .ok_or_else(|| cache_err(io::Error::from(io::ErrorKind::NotFound)))?;
        let deb = CachedDeb::new(package, file);
        let mut reader = deb.open();
        io::copy(&mut reader, &mut io::sink()).map_err(cache_err)?;
        reader.finish()?;
        Ok(deb)
    }

    fn new(package: Package, file: fs_err::File) -> CachedDeb {
        let (file, path) = file.into_parts();
        CachedDeb {
            package,
            file: Arc::new(file),
            path,
        }
    }

    /// The index entry the file was verified against.
    pub fn package(&self) -> &Package {
        &self.package
    }

    /// Where the file is, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the verified descriptor from its first byte (positionally, so clones do not share
    /// an offset); every byte read is hashed, reading past the verified size fails, and
    /// [`DebReader::finish`] says whether what was read is what was verified.
    pub fn open(&self) -> DebReader {
        DebReader {
            inner: Sha256Reader::new(AtOffset {
                file: self.file.clone(),
                offset: 0,
            }),
            expected: Expected {
                size: self.package.size,
                sha256: self.package.sha256,
            },
            path: self.path.clone(),
        }
    }
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Reads a shared file from its own offset with pread(2).
struct AtOffset {
    file: Arc<File>,
    offset: u64,
}

impl Read for AtOffset {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// A cached .deb being read, hashed as it goes.
pub struct DebReader {
    inner: Sha256Reader<AtOffset>,
    expected: Expected,
    path: PathBuf,
}

impl DebReader {
    /// Reads what is left of the file and checks that every byte read, from the first, is the
    /// verified file: its size and SHA256.
    pub fn finish(mut self) -> Result<(), FetchError> {
        if let Err(source) = io::copy(&mut self, &mut io::sink()) {
            if self.inner.count() > self.expected.size {
                return Err(self.changed());
            }
            return Err(FetchError::Cache {
                path: self.path.clone(),
                source,
            });
        }
        if self.inner.count() != self.expected.size || self.inner.digest() != self.expected.sha256 {
            return Err(self.changed());
        }
        Ok(())
    }

    fn changed(&self) -> FetchError {
        FetchError::Changed {
            path: self.path.clone(),
            expected: self.expected.sha256,
        }
    }
}

impl Read for DebReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte more than verified is enough to know the file is not the one we checked.
        let left = self
            .expected
            .size
            .saturating_add(1)
            .saturating_sub(self.inner.count());
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if self.inner.count() > self.expected.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                self.changed().to_string(),
            ));
        }
        Ok(n)
    }
}

/// What to download, from where, into which cache.
#[derive(Clone, Copy)]
pub struct DownloadRequest<'a> {
    pub mirror: &'a str,
    pub packages: &'a [Package],
    pub cache_dir: &'a Path,
    pub reporter: &'a dyn Reporter,
    /// Called with the index in `packages` of each package as soon as it is verified in the
    /// cache, so unpacking can start before the last download ends.
    pub on_ready: &'a (dyn Fn(usize, &CachedDeb) + Sync),
}

/// The file name of a package's .deb in the cache's `debs/`: its SHA256.
fn cache_name(package: &Package) -> String {
    format!("{}.deb", package.sha256)
}

/// Fetches every package not already verified in the cache, largest first, several at a time;
/// the result is sorted by package name.
pub async fn download(
    fetcher: &Fetcher,
    request: DownloadRequest<'_>,
) -> Result<Vec<CachedDeb>, FetchError> {
    let dir = CacheDir::open(request.cache_dir, "debs")?;
    raise_open_file_limit();
    let reporter = request.reporter;
    let total = request
        .packages
        .iter()
        .fold(0u64, |sum, p| sum.saturating_add(p.size));
    reporter.start(Counter::DownloadBytes, total);

    let mut order: Vec<(usize, &Package)> = request.packages.iter().enumerate().collect();
    order.sort_by(|(_, a), (_, b)| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    let dir = &dir;
    let mut debs: Vec<CachedDeb> = stream::iter(order)
        .map(|(index, package)| async move {
            let url = format!("{}/{}", request.mirror, package.filename);
            if package.size > MAX_DEB {
                return Err(FetchError::SignedSizeTooLarge {
                    url,
                    size: package.size,
                    limit: MAX_DEB,
                });
            }
            let name = cache_name(package);
            let expected = Expected {
                size: package.size,
                sha256: package.sha256,
            };
            let cached = {
                let (dir, name) = (dir.clone(), name.clone());
                tokio::task::spawn_blocking(move || dir.open_verified(&name, expected))
                    .await
                    .expect("the cache check does not panic")?
            };
            // The descriptor that was verified (in the cache or while downloading) is kept.
            let file = match cached {
                Some(file) => {
                    reporter.advance(Counter::DownloadBytes, package.size);
                    file
                }
                None => {
                    let progress = |n| reporter.advance(Counter::DownloadBytes, n);
                    fetcher
                        .download(&url, dir, Some(&name), expected, &progress)
                        .await?
                }
            };
            let deb = CachedDeb::new(package.clone(), file);
            (request.on_ready)(index, &deb);
            Ok::<_, FetchError>(deb)
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    reporter.finish(Counter::DownloadBytes);
    debs.sort_by(|a, b| {
        a.package
            .name
            .cmp(&b.package.name)
            .then(a.package.architecture.cmp(&b.package.architecture))
    });
    Ok(debs)
}

/// Every [`CachedDeb`] holds its descriptor until it is unpacked, so a large package set needs
/// more open files than the usual soft limit of 1024: raise it to the hard limit, as far as the
/// system allows (failing that, a later open names the file it could not open).
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(err) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!("cannot raise the open file limit: {err}");
        }
    }
}

#[cfg(test)]
// Tests state their expectations with unwrap(); a panic there is the failure report.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fetch::hash::Sha256Digest;

    fn package(data: &[u8]) -> Package {
        Package {
            name: "p".into(),
            version: "1".into(),
            architecture: "amd64".into(),
            multi_arch: None,
            priority: None,
            essential: false,
            depends: None,
            pre_depends: None,
            provides: None,
            conflicts: None,
            breaks: None,
            replaces: None,
            filename: "pool/p.deb".into(),
            size: data.len() as u64,
            sha256: Sha256Digest::of(data),
            stanza: Default::default(),
        }
    }

    #[test]
    fn a_file_changed_after_the_check_is_caught_while_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.deb");
        fs_err::write(&path, b"verified bytes").unwrap();
        let deb = CachedDeb::verify_local(package(b"verified bytes"), &path).unwrap();

        let mut reader = deb.open();
        let mut all = Vec::new();
        reader.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"verified bytes");
        reader.finish().unwrap();

        fs_err::write(&path, b"swapped bytes!").unwrap();
        let reader = deb.open();
        let err = reader.finish().unwrap_err();
        assert!(matches!(err, FetchError::Changed { .. }), "{err}");

        fs_err::write(&path, b"verified bytes and more").unwrap();
        let mut reader = deb.open();
        let err = io::copy(&mut reader, &mut io::sink()).unwrap_err();
        assert!(
            err.to_string().contains("changed after it was verified"),
            "{err}"
        );
        let err = reader.finish().unwrap_err();
        assert!(matches!(err, FetchError::Changed { .. }), "{err}");
    }

    #[test]
    fn a_file_renamed_over_the_verified_one_is_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.deb");
        fs_err::write(&path, b"verified bytes").unwrap();
        let deb = CachedDeb::verify_local(package(b"verified bytes"), &path).unwrap();

        // Whoever can write the directory swaps the name for a file of their own.
        let other = dir.path().join("other.deb");
        fs_err::write(&other, b"swapped bytes!").unwrap();
        fs_err::rename(&other, &path).unwrap();

        let mut reader = deb.open();
        let mut all = Vec::new();
        reader.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"verified bytes");
        reader.finish().unwrap();
        // A clone reads from the start too: readers do not share an offset.
        let mut again = Vec::new();
        deb.clone().open().read_to_end(&mut again).unwrap();
        assert_eq!(again, b"verified bytes");
    }

    #[test]
    fn a_local_file_with_the_wrong_hash_is_not_verified() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.deb");
        fs_err::write(&path, b"other bytes!!!").unwrap();
        let err = CachedDeb::verify_local(package(b"verified bytes"), &path).unwrap_err();
        assert!(matches!(err, FetchError::Changed { .. }), "{err}");
    }

    #[test]
    fn a_symlink_is_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.deb");
        fs_err::write(&real, b"verified bytes").unwrap();
        let path = dir.path().join("p.deb");
        std::os::unix::fs::symlink(&real, &path).unwrap();
        let err = CachedDeb::verify_local(package(b"verified bytes"), &path).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }
}
