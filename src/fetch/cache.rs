//! The cache directory, held by descriptor: `--cache-dir` is opened once, its `debs/` and
//! `indices/` subdirectories are opened through that descriptor, and every file in them is opened
//! relative to its directory without following a symlink. When we run as root, a directory or
//! file that another user owns, or that group or others may write, is refused: whoever can write
//! there could swap a verified file for one of their own.

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use super::client::FetchError;

/// Why a cache directory or file is not safe to trust as root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeCache {
    #[error("it is owned by uid {0}, not root, so that user could swap files we verified; chown it to root or choose another --cache-dir")]
    Owner(u32),
    #[error("group or others may write it (mode {0:04o}), so they could swap files we verified; chmod go-w it or choose another --cache-dir")]
    Writable(u32),
    #[error("it is a symbolic link; remove it or choose another --cache-dir")]
    Symlink,
    #[error("it is not a regular file; remove it or choose another --cache-dir")]
    NotFile,
    #[error("it is not a directory; remove it or choose another --cache-dir")]
    NotDirectory,
}

/// One directory of the cache (`debs/` or `indices/`), open by descriptor.
#[derive(Debug, Clone)]
pub(crate) struct CacheDir {
    fd: Arc<OwnedFd>,
    path: PathBuf,
    /// Whether ownership and modes are checked: only when running as root.
    strict: bool,
}

/// A file being written in a cache directory under a private name; removed on drop unless
/// [`TempFile::persist`] moved it into place.
pub(crate) struct TempFile<'d> {
    pub file: fs_err::File,
    guard: Unlink<'d>,
}

/// Removes a temporary file on drop unless disarmed.
struct Unlink<'d> {
    dir: &'d CacheDir,
    name: Option<String>,
}

impl CacheDir {
    /// Opens (creating if needed) `base/sub`, checking both as the module says.
    pub(crate) fn open(base: &Path, sub: &str) -> Result<CacheDir, FetchError> {
        let strict = rustix::process::geteuid().is_root();
        let cache_err = |path: &Path, source: io::Error| FetchError::Cache {
            path: path.to_path_buf(),
            source,
        };
        if !base.is_dir() {
            // Parents the user named are made with the usual modes; the cache itself is 0755
            // whatever the umask, so a permissive umask cannot make it refuse itself next time.
            if let Some(parent) = base.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs_err::create_dir_all(parent).map_err(|e| cache_err(parent, e))?;
            }
            match rustix::fs::mkdir(base, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(cache_err(base, e.into())),
            }
        }
        // The path the user gave may pass through symlinks; what it leads to is checked.
        let base_fd = rustix::fs::open(
            base,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| cache_err(base, e.into()))?;
        check_dir(&base_fd, base, strict)?;
        let path = base.join(sub);
        match rustix::fs::mkdirat(&base_fd, sub, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(cache_err(&path, e.into())),
        }
        let fd = rustix::fs::openat(
            &base_fd,
            sub,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::LOOP | Errno::NOTDIR => unsafe_cache(&path, UnsafeCache::NotDirectory),
            e => cache_err(&path, e.into()),
        })?;
        check_dir(&fd, &path, strict)?;
        Ok(CacheDir {
            fd: Arc::new(fd),
            path,
            strict,
        })
    }

    /// A directory opened earlier (by [`CacheDir::open`] or for a local file).
    pub(crate) fn from_parts(fd: Arc<OwnedFd>, path: PathBuf, strict: bool) -> CacheDir {
        CacheDir { fd, path, strict }
    }

    /// The directory's path, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The host path of `name` in this directory, for messages.
    pub(crate) fn path_of(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens `name` for reading without following a symlink; `None` when there is no such
    /// file. A FIFO or device is refused without blocking on it.
    pub(crate) fn open_file(&self, name: &str) -> Result<Option<fs_err::File>, FetchError> {
        let path = self.path_of(name);
        let fd = match rustix::fs::openat(
            &*self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => return Err(unsafe_cache(&path, UnsafeCache::Symlink)),
            Err(e) => {
                return Err(FetchError::Cache {
                    path,
                    source: e.into(),
                })
            }
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| FetchError::Cache {
            path: path.clone(),
            source: e.into(),
        })?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(unsafe_cache(&path, UnsafeCache::NotFile));
        }
        if self.strict {
            check_owner(stat.st_uid, stat.st_mode).map_err(|why| unsafe_cache(&path, why))?;
        }
        rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(|e| FetchError::Cache {
            path: path.clone(),
            source: e.into(),
        })?;
        Ok(Some(fs_err::File::from_parts(
            std::fs::File::from(fd),
            path,
        )))
    }

    /// A new file with a private name in this directory.
    pub(crate) fn create_temp(&self) -> Result<TempFile<'_>, FetchError> {
        for _ in 0..16 {
            let token = getrandom::u64().map_err(|e| FetchError::Cache {
                path: self.path.clone(),
                source: io::Error::other(e.to_string()),
            })?;
            let name = format!(".partial-{token:016x}");
            match rustix::fs::openat(
                &*self.fd,
                name.as_str(),
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(fd) => {
                    let file =
                        fs_err::File::from_parts(std::fs::File::from(fd), self.path_of(&name));
                    return Ok(TempFile {
                        file,
                        guard: Unlink {
                            dir: self,
                            name: Some(name),
                        },
                    });
                }
                Err(Errno::EXIST) => continue,
                Err(e) => {
                    return Err(FetchError::Cache {
                        path: self.path_of(&name),
                        source: e.into(),
                    })
                }
            }
        }
        Err(FetchError::Cache {
            path: self.path.clone(),
            source: io::Error::from(io::ErrorKind::AlreadyExists),
        })
    }

    /// Removes `name`; a file that is already gone is not an error.
    pub(crate) fn remove(&self, name: &str) -> Result<(), FetchError> {
        match rustix::fs::unlinkat(&*self.fd, name, rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(FetchError::Cache {
                path: self.path_of(name),
                source: e.into(),
            }),
        }
    }

    /// Opens `name` and hashes it through the descriptor; returns that descriptor, rewound,
    /// only when size and SHA256 match `expected`. A mismatching file is left for a verified
    /// copy to replace by rename.
    pub(crate) fn open_verified(
        &self,
        name: &str,
        expected: super::Expected,
    ) -> Result<Option<fs_err::File>, FetchError> {
        use std::io::Seek;
        let path = self.path_of(name);
        let Some(mut file) = self.open_file(name)? else {
            return Ok(None);
        };
        let io_err = |source| FetchError::Cache {
            path: path.clone(),
            source,
        };
        let size = file.metadata().map_err(io_err)?.len();
        if size == expected.size {
            let mut hasher =
                super::hash::Sha256Reader::new((&mut file).take(expected.size.saturating_add(1)));
            let read = io::copy(&mut hasher, &mut io::sink()).map_err(io_err)?;
            if read == expected.size && hasher.digest() == expected.sha256 {
                file.rewind().map_err(io_err)?;
                return Ok(Some(file));
            }
        }
        // Left in place, not removed: another build may have just renamed a good copy to this
        // name, and removing by name would take that one. The verified download replaces it.
        tracing::warn!(
            "{}: cached file does not match its hash; fetching it again",
            path.display()
        );
        Ok(None)
    }
}

impl TempFile<'_> {
    /// Moves the file to `name` in its directory (replacing what was there) and gives back its
    /// descriptor.
    pub(crate) fn persist(self, name: &str) -> Result<fs_err::File, FetchError> {
        let TempFile { file, mut guard } = self;
        let dir = guard.dir;
        if let Some(temp) = guard.name.as_deref() {
            rustix::fs::renameat(&*dir.fd, temp, &*dir.fd, name).map_err(|e| {
                FetchError::Cache {
                    path: dir.path_of(name),
                    source: e.into(),
                }
            })?;
        }
        guard.name = None;
        Ok(file)
    }
}

impl TempFile<'_> {
    /// Removes the file's name and gives back its descriptor: the file goes when it is closed.
    pub(crate) fn into_anonymous(self) -> Result<fs_err::File, FetchError> {
        let TempFile { file, mut guard } = self;
        if let Some(temp) = guard.name.take() {
            guard.dir.remove(&temp)?;
        }
        Ok(file)
    }
}

impl Drop for Unlink<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = self.dir.remove(&name);
        }
    }
}

fn unsafe_cache(path: &Path, why: UnsafeCache) -> FetchError {
    FetchError::UnsafeCache {
        path: path.to_path_buf(),
        why,
    }
}

fn check_dir(fd: &OwnedFd, path: &Path, strict: bool) -> Result<(), FetchError> {
    let stat = rustix::fs::fstat(fd).map_err(|e| FetchError::Cache {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return Err(unsafe_cache(path, UnsafeCache::NotDirectory));
    }
    if strict {
        check_owner(stat.st_uid, stat.st_mode).map_err(|why| unsafe_cache(path, why))?;
    }
    Ok(())
}

/// Root-owned and writable by nobody else.
fn check_owner(uid: u32, mode: u32) -> Result<(), UnsafeCache> {
    if uid != 0 {
        return Err(UnsafeCache::Owner(uid));
    }
    if mode & 0o022 != 0 {
        return Err(UnsafeCache::Writable(mode & 0o7777));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::hash::Sha256Digest;

    #[test]
    fn a_cached_file_that_does_not_match_is_replaced_by_rename_never_removed() {
        let base = tempfile::tempdir().unwrap();
        let dir = CacheDir::open(base.path(), "debs").unwrap();
        let good = b"good bytes";
        let expected = super::super::Expected {
            size: good.len() as u64,
            sha256: super::super::hash::Sha256Digest::of(good),
        };
        // Another build's copy at this name: removing the name would take it from under that
        // build, so a mismatch leaves the name alone.
        let path = dir.path_of("p.deb");
        fs_err::write(&path, b"bad bytes!").unwrap();
        assert!(dir.open_verified("p.deb", expected).unwrap().is_none());
        assert_eq!(fs_err::read(&path).unwrap(), b"bad bytes!");

        let mut temp = dir.create_temp().unwrap();
        std::io::Write::write_all(&mut temp.file, good).unwrap();
        temp.persist("p.deb").unwrap();
        assert!(dir.open_verified("p.deb", expected).unwrap().is_some());
    }

    #[test]
    fn a_cached_file_longer_than_its_signed_size_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let dir = CacheDir::open(base.path(), "indices").unwrap();
        let good = b"Package: a\n";
        let expected = super::super::Expected {
            size: good.len() as u64,
            sha256: Sha256Digest::of(good),
        };
        fs_err::write(dir.path_of("i"), good).unwrap();
        let mut file = dir.open_verified("i", expected).unwrap().expect("verified");
        let mut read = Vec::new();
        file.read_to_end(&mut read).unwrap();
        assert_eq!(read, good, "given back rewound, whole");
        // The verified bytes followed by more: refused, not cut to size.
        fs_err::write(dir.path_of("i"), b"Package: a\nPackage: evil\n").unwrap();
        assert!(dir.open_verified("i", expected).unwrap().is_none());
    }

    #[test]
    fn only_root_owned_and_not_shared_writable_is_trusted() {
        assert_eq!(check_owner(0, 0o40755), Ok(()));
        assert_eq!(check_owner(1000, 0o40755), Err(UnsafeCache::Owner(1000)));
        assert_eq!(check_owner(0, 0o40775), Err(UnsafeCache::Writable(0o775)));
        assert_eq!(check_owner(0, 0o100646), Err(UnsafeCache::Writable(0o646)));
    }

    /// Whether `fd` is closed when a command is executed (maintainer scripts, hooks), so no
    /// descriptor into the host's cache reaches a process inside the chroot.
    fn close_on_exec(fd: impl std::os::fd::AsFd) -> bool {
        rustix::io::fcntl_getfd(fd)
            .unwrap()
            .contains(rustix::io::FdFlags::CLOEXEC)
    }

    /// Runs `open` on another thread and gives its result, or `None` if it has not returned
    /// within a bound no working open comes near (an open that blocks on a FIFO never does).
    fn within_bound<T: Send + 'static>(open: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(open());
        });
        rx.recv_timeout(std::time::Duration::from_secs(20)).ok()
    }

    #[test]
    fn missing_parents_of_the_cache_are_created() {
        let base = tempfile::tempdir().unwrap();
        let cache = base.path().join("a/b/cache");
        let dir = CacheDir::open(&cache, "debs").unwrap();
        assert!(cache.join("debs").is_dir());
        assert_eq!(dir.path(), cache.join("debs"));
    }

    #[test]
    fn cache_descriptors_are_not_inherited_by_commands() {
        let base = tempfile::tempdir().unwrap();
        let dir = CacheDir::open(base.path(), "debs").unwrap();
        assert!(close_on_exec(&*dir.fd), "the cache directory");
        let mut temp = dir.create_temp().unwrap();
        std::io::Write::write_all(&mut temp.file, b"x").unwrap();
        assert!(close_on_exec(&temp.file), "a file being written");
        temp.persist("x").unwrap();
        let file = dir.open_file("x").unwrap().expect("the file just written");
        assert!(close_on_exec(&file), "a cached file");
    }

    #[test]
    fn a_cache_or_subdirectory_that_is_a_fifo_is_refused_without_blocking() {
        let base = tempfile::tempdir().unwrap();
        let fifo = base.path().join("cache");
        crate::sys::mkfifo(&fifo);
        let result = within_bound(move || CacheDir::open(&fifo, "debs").map(|_| ()));
        assert!(result.expect("returned").is_err());

        let cache = tempfile::tempdir().unwrap();
        let sub = cache.path().join("debs");
        crate::sys::mkfifo(&sub);
        let at = cache.path().to_path_buf();
        let result = within_bound(move || CacheDir::open(&at, "debs").map(|_| ()));
        let err = result.expect("returned").unwrap_err();
        assert!(err.to_string().contains("debs"), "{err}");
    }

    #[test]
    fn a_subdirectory_that_is_a_symlink_is_refused_not_followed() {
        let cache = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), cache.path().join("debs")).unwrap();
        let err = CacheDir::open(cache.path(), "debs").unwrap_err();
        assert!(
            matches!(
                &err,
                FetchError::UnsafeCache {
                    why: UnsafeCache::NotDirectory,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
