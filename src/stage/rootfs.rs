//! Confined file operations inside the target root: takes the root directory and paths relative
//! to it; gives files, directories, symlinks and device nodes created there and nowhere else.
//!
//! Every path is resolved by openat2(2) with `RESOLVE_IN_ROOT`, so an absolute symlink a package
//! ships (`var/run -> /run`) leads back into the root instead of onto the host, and the last
//! component is never followed when it is created or replaced.

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::StageError;
use crate::HeldRoot;

/// The target root, opened once; paths given to its methods are relative to it.
#[derive(Debug)]
pub(crate) struct RootDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl RootDir {
    /// Opens the root directory (it must exist).
    pub(crate) fn open(path: &Path) -> Result<Self, StageError> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fs_error("open the root directory", path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            fd,
        })
    }

    /// The held root, through a duplicate of its descriptor (its path is never looked up);
    /// the host's own `/` is refused.
    pub(crate) fn held(root: &HeldRoot) -> Result<Self, StageError> {
        let fd = rustix::io::fcntl_dupfd_cloexec(root.fd(), 0)
            .map_err(|e| fs_error("hold the root directory", root.path(), e))?;
        let dir = Self {
            path: root.path().to_path_buf(),
            fd,
        };
        let host = rustix::fs::stat("/").map_err(|e| fs_error("inspect", Path::new("/"), e))?;
        let held = rustix::fs::fstat(&dir.fd).map_err(|e| fs_error("inspect", &dir.path, e))?;
        if (held.st_dev, held.st_ino) == (host.st_dev, host.st_ino) {
            return Err(StageError::UnsafePath {
                path: dir.path,
                reason: "the host's own root cannot be a chroot target",
            });
        }
        Ok(dir)
    }

    /// The root's host path, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The root's descriptor, for entering it (fchdir) and inspecting its file system.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The root opened again by `path` in the calling thread's mount namespace (a descriptor
    /// from the host's would not see mounts made in a private one), refused unless it is this
    /// same directory: every later step uses the new descriptor, never the path.
    pub(crate) fn in_this_namespace(&self, path: &Path) -> Result<RootDir, StageError> {
        let reopened = RootDir::open(path)?;
        if !reopened.is_same_dir(self)? {
            return Err(StageError::UnsafePath {
                path: path.to_path_buf(),
                reason: "it names another directory than the root being configured",
            });
        }
        Ok(reopened)
    }

    /// Whether `other` holds the same directory (device and inode): a root opened again by path
    /// (in a new mount namespace) must be the one opened before.
    pub(crate) fn is_same_dir(&self, other: &RootDir) -> Result<bool, StageError> {
        let stat = |dir: &RootDir| {
            rustix::fs::fstat(&dir.fd).map_err(|e| fs_error("inspect", &dir.path, e))
        };
        let (a, b) = (stat(self)?, stat(other)?);
        Ok(a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    }

    /// The host path of `rel`, for messages and for syscalls that take a path.
    pub(crate) fn host_path(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    /// Opens the directory `rel` as an `O_PATH` handle; with `no_symlinks`, refuses a path that
    /// goes through any symlink (mount points must be exactly where they appear).
    pub(crate) fn open_dir(&self, rel: &Path, no_symlinks: bool) -> Result<OwnedFd, StageError> {
        let mut resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        if no_symlinks {
            resolve |= ResolveFlags::NO_SYMLINKS;
        }
        rustix::fs::openat2(
            &self.fd,
            relative(rel)?,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        )
        .map_err(|e| match e {
            Errno::LOOP => StageError::UnsafePath {
                path: self.host_path(rel),
                reason: "it goes through a symlink",
            },
            e => fs_error("open the directory", &self.host_path(rel), e),
        })
    }

    /// Opens the character device `rel` as an `O_PATH` handle, refusing a path through any
    /// symlink and anything but a character device (a mount point for a device node).
    /// Whether `rel` is an empty regular file (a device node's placeholder in a rootless build).
    pub(crate) fn is_placeholder(&self, rel: &Path) -> Result<bool, StageError> {
        let fd = match self.open_node(rel) {
            Ok(fd) => fd,
            Err(StageError::Fs { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
        let stat =
            rustix::fs::fstat(&fd).map_err(|e| fs_error("inspect", &self.host_path(rel), e))?;
        Ok(FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile && stat.st_size == 0)
    }

    /// Opens `rel` as a place to bind a device over: a character device, or in a rootless build
    /// its placeholder (an empty regular file); never through a symlink.
    pub(crate) fn open_bind_target(&self, rel: &Path) -> Result<OwnedFd, StageError> {
        if crate::userns::inside() && self.is_placeholder(rel)? {
            return self.open_node(rel);
        }
        self.open_char_device(rel)
    }

    /// `rel` opened as an O_PATH descriptor, resolved in the root without any symlink.
    fn open_node(&self, rel: &Path) -> Result<OwnedFd, StageError> {
        let host = self.host_path(rel);
        rustix::fs::openat2(
            &self.fd,
            relative(rel)?,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_SYMLINKS,
        )
        .map_err(|e| match e {
            Errno::LOOP => StageError::UnsafePath {
                path: host.clone(),
                reason: "it goes through a symlink",
            },
            e => fs_error("open", &host, e),
        })
    }

    pub(crate) fn open_char_device(&self, rel: &Path) -> Result<OwnedFd, StageError> {
        let host = self.host_path(rel);
        let fd = self.open_node(rel)?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| fs_error("inspect", &host, e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::CharacterDevice {
            return Err(StageError::UnsafePath {
                path: host,
                reason: "it is not a character device",
            });
        }
        Ok(fd)
    }

    /// The directory holding `rel` (resolved inside the root) and `rel`'s last component.
    fn parent<'p>(&self, rel: &'p Path) -> Result<(OwnedFd, &'p OsStr), StageError> {
        let rel = relative(rel)?;
        let name = match rel.components().next_back() {
            Some(Component::Normal(name)) => name,
            _ => {
                return Err(StageError::UnsafePath {
                    path: self.host_path(rel),
                    reason: "it does not end in a file name",
                })
            }
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        Ok((self.open_dir(parent, false)?, name))
    }

    /// What is at `rel` (not following a final symlink), or `None` when nothing is.
    pub(crate) fn file_type(&self, rel: &Path) -> Result<Option<FileType>, StageError> {
        // O_PATH with O_NOFOLLOW opens a final symlink itself, so fstat tells what it is.
        let fd = match rustix::fs::openat2(
            &self.fd,
            relative(rel)?,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(fs_error("inspect", &self.host_path(rel), e)),
        };
        let stat =
            rustix::fs::fstat(&fd).map_err(|e| fs_error("inspect", &self.host_path(rel), e))?;
        Ok(Some(FileType::from_raw_mode(stat.st_mode)))
    }

    /// Creates `rel` and its missing parents as directories with `mode`.
    pub(crate) fn create_dir_all(&self, rel: &Path, mode: u32) -> Result<(), StageError> {
        let rel = relative(rel)?;
        let mut prefix = PathBuf::new();
        for component in rel.components() {
            prefix.push(component);
            let (dir, name) = self.parent(&prefix)?;
            match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode)) {
                Ok(()) => {
                    rustix::fs::chmodat(&dir, name, Mode::from_raw_mode(mode), AtFlags::empty())
                        .map_err(|e| fs_error("set the mode of", &self.host_path(&prefix), e))?;
                }
                Err(Errno::EXIST) => {}
                Err(e) => {
                    return Err(fs_error(
                        "create the directory",
                        &self.host_path(&prefix),
                        e,
                    ))
                }
            }
        }
        Ok(())
    }

    /// Replaces `rel` atomically with a regular file holding `contents`, owned by root.
    pub(crate) fn write_file(
        &self,
        rel: &Path,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), StageError> {
        self.write_file_owned(rel, contents, mode, (0, 0))
    }

    /// Replaces `rel` atomically with a regular file holding `contents`, owned by `owner`
    /// (uid, gid).
    pub(crate) fn write_file_owned(
        &self,
        rel: &Path,
        contents: &[u8],
        mode: u32,
        owner: (u32, u32),
    ) -> Result<(), StageError> {
        let (dir, name) = self.parent(rel)?;
        let host = self.host_path(rel);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".debstrap-onion-tmp");
        let _ = rustix::fs::unlinkat(&dir, &tmp_name, AtFlags::empty());
        let fd = rustix::fs::openat(
            &dir,
            &tmp_name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| fs_error("create", &host, e))?;
        let written = (|| {
            let mut file = std::fs::File::from(fd);
            file.write_all(contents)?;
            rustix::fs::fchown(
                file.as_fd(),
                Some(rustix::fs::Uid::from_raw(owner.0)),
                Some(rustix::fs::Gid::from_raw(owner.1)),
            )?;
            rustix::fs::fchmod(file.as_fd(), Mode::from_raw_mode(mode))?;
            rustix::fs::renameat(&dir, &tmp_name, &dir, name)?;
            Ok::<(), std::io::Error>(())
        })();
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(&dir, &tmp_name, AtFlags::empty());
            return Err(StageError::Fs {
                action: "write",
                path: host,
                source: e,
            });
        }
        Ok(())
    }

    /// Reads the regular file at `rel`, or `None` when it does not exist.
    pub(crate) fn read_file(&self, rel: &Path) -> Result<Option<Vec<u8>>, StageError> {
        Ok(self.read_file_and_mode(rel)?.map(|(contents, _)| contents))
    }

    /// Reads the regular file at `rel` with its permission bits, or `None` when it does not
    /// exist.
    pub(crate) fn read_file_and_mode(
        &self,
        rel: &Path,
    ) -> Result<Option<(Vec<u8>, u32)>, StageError> {
        let (dir, name) = self.parent(rel)?;
        let fd = match rustix::fs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(fs_error("open", &self.host_path(rel), e)),
        };
        let stat =
            rustix::fs::fstat(&fd).map_err(|e| fs_error("inspect", &self.host_path(rel), e))?;
        let mut contents = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut contents).map_err(|e| {
            StageError::Fs {
                action: "read",
                path: self.host_path(rel),
                source: e,
            }
        })?;
        Ok(Some((contents, stat.st_mode & 0o7777)))
    }

    /// Opens `rel` for appending, creating it with `mode` (a final symlink is refused).
    pub(crate) fn append(&self, rel: &Path, mode: u32) -> Result<std::fs::File, StageError> {
        let (dir, name) = self.parent(rel)?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(|e| fs_error("open for appending", &self.host_path(rel), e))?;
        Ok(std::fs::File::from(fd))
    }

    /// Creates the symlink `rel` pointing at `target`, replacing a symlink already there.
    pub(crate) fn symlink(&self, target: &str, rel: &Path) -> Result<(), StageError> {
        let (dir, name) = self.parent(rel)?;
        let host = self.host_path(rel);
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink => {
                rustix::fs::unlinkat(&dir, name, AtFlags::empty())
                    .map_err(|e| fs_error("replace", &host, e))?;
            }
            Ok(_) => {
                return Err(StageError::UnsafePath {
                    path: host,
                    reason: "something other than a symlink is already there",
                })
            }
            Err(Errno::NOENT) => {}
            Err(e) => return Err(fs_error("inspect", &host, e)),
        }
        rustix::fs::symlinkat(target, &dir, name)
            .map_err(|e| fs_error("create the symlink", &host, e))
    }

    /// Creates the character device `rel` with exactly `mode`, unless something is already there.
    pub(crate) fn mknod_char(
        &self,
        rel: &Path,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), Errno> {
        let (dir, name) = self.parent(rel).map_err(|_| Errno::INVAL)?;
        rustix::fs::mknodat(
            &dir,
            name,
            FileType::CharacterDevice,
            Mode::from_raw_mode(mode),
            rustix::fs::makedev(major, minor),
        )?;
        // mknod applies the umask; chmod gives the mode debootstrap's `mknod -m` gives.
        rustix::fs::chmodat(&dir, name, Mode::from_raw_mode(mode), AtFlags::empty())
    }

    /// Copies the regular file `rel` to the same name plus `suffix`, keeping its mode and owner;
    /// returns false (copying nothing) when `rel` is not a regular file.
    pub(crate) fn copy_beside(&self, rel: &Path, suffix: &str) -> Result<bool, StageError> {
        let (dir, name) = self.parent(rel)?;
        let host = self.host_path(rel);
        let fd = match rustix::fs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::LOOP) => return Ok(false),
            Err(e) => return Err(fs_error("open", &host, e)),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| fs_error("inspect", &host, e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Ok(false);
        }
        let mut contents = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut contents).map_err(|e| {
            StageError::Fs {
                action: "read",
                path: host.clone(),
                source: e,
            }
        })?;
        let mut copy = rel.as_os_str().to_os_string();
        copy.push(suffix);
        self.write_file_owned(
            Path::new(&copy),
            &contents,
            stat.st_mode & 0o7777,
            (stat.st_uid, stat.st_gid),
        )?;
        Ok(true)
    }

    /// Renames `rel` to `new_name` in the same directory; returns false (doing nothing) when
    /// nothing is at `rel`.
    pub(crate) fn rename_in_dir(&self, rel: &Path, new_name: &OsStr) -> Result<bool, StageError> {
        let (dir, name) = self.parent(rel)?;
        match rustix::fs::renameat(&dir, name, &dir, new_name) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(fs_error("rename", &self.host_path(rel), e)),
        }
    }

    /// Removes the empty directory `rel`, if it is there.
    pub(crate) fn remove_dir(&self, rel: &Path) -> Result<(), StageError> {
        let (dir, name) = self.parent(rel)?;
        match rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(fs_error("remove the directory", &self.host_path(rel), e)),
        }
    }

    /// Removes the non-directory `rel`; returns whether something was there.
    pub(crate) fn remove_file(&self, rel: &Path) -> Result<bool, StageError> {
        let (dir, name) = self.parent(rel)?;
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(fs_error("remove", &self.host_path(rel), e)),
        }
    }
}

/// Strips a leading `/` so `rel` is resolved from the root; refuses an empty path.
fn relative(rel: &Path) -> Result<&Path, StageError> {
    let stripped = rel.strip_prefix("/").unwrap_or(rel);
    if stripped.as_os_str().is_empty() {
        return Ok(Path::new("."));
    }
    Ok(stripped)
}

/// A [`StageError::Fs`] from a rustix error.
pub(crate) fn fs_error(action: &'static str, path: &Path, errno: Errno) -> StageError {
    StageError::Fs {
        action,
        path: path.to_path_buf(),
        source: errno.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        // Writing through RootDir sets owners, which needs root.
        if !crate::test_skip::require_root() {
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = RootDir::open(tmp.path()).expect("open root");
        root.create_dir_all(Path::new("run"), 0o755)
            .expect("mkdir run");
        root.create_dir_all(Path::new("var"), 0o755)
            .expect("mkdir var");
        root.symlink("/run", Path::new("var/run")).expect("symlink");
        root.write_file(Path::new("var/run/x"), b"inside", 0o644)
            .expect("write through symlink");
        let written = fs_err::read(tmp.path().join("run/x")).expect("read back");
        assert_eq!(written, b"inside");
    }

    #[test]
    fn dot_dot_cannot_leave_the_root() {
        // Writing through RootDir sets owners, which needs root.
        if !crate::test_skip::require_root() {
            return;
        }
        let outer = tempfile::tempdir().expect("tempdir");
        let inner = outer.path().join("root");
        fs_err::create_dir(&inner).expect("mkdir");
        let root = RootDir::open(&inner).expect("open root");
        root.write_file(Path::new("../../escape"), b"x", 0o644)
            .expect("write is clamped to the root");
        assert!(inner.join("escape").exists());
        assert!(!outer.path().join("escape").exists());
    }

    #[test]
    fn write_file_replaces_a_symlink_instead_of_following_it() {
        // Writing through RootDir sets owners, which needs root.
        if !crate::test_skip::require_root() {
            return;
        }
        let outer = tempfile::tempdir().expect("tempdir");
        let inner = outer.path().join("root");
        fs_err::create_dir(&inner).expect("mkdir");
        let victim = outer.path().join("victim");
        fs_err::write(&victim, b"host").expect("write victim");
        std::os::unix::fs::symlink(&victim, inner.join("link")).expect("symlink");
        let root = RootDir::open(&inner).expect("open root");
        root.write_file(Path::new("link"), b"root", 0o644)
            .expect("write");
        assert_eq!(fs_err::read(&victim).expect("read victim"), b"host");
        assert_eq!(fs_err::read(inner.join("link")).expect("read"), b"root");
    }
}
