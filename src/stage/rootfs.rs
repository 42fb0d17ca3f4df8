//! Confined file operations of the stage inside the target root: takes the root directory and
//! paths relative to it; gives files, directories, symlinks and device nodes created there and
//! nowhere else, with errors that name the path.
//!
//! A thin user of [`crate::root::Root`], which resolves every path inside the root (an absolute
//! symlink a package ships, `var/run -> /run`, leads back into the root) and never follows the
//! last component it creates or replaces. What is the stage's own: refusing the host's `/` as a
//! root, reopening the root in a private mount namespace, and mount points that no symlink may
//! lead to.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use super::StageError;
use crate::root::{NewFile, Root};
use crate::HeldRoot;

/// The target root, opened once; paths given to its methods are relative to it.
#[derive(Debug)]
pub(crate) struct RootDir {
    root: Root,
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
        let root =
            Root::from_fd(fd, path).map_err(|e| io_error("open the root directory", path, e))?;
        Ok(Self { root })
    }

    /// The held root, through a duplicate of its descriptor (its path is never looked up);
    /// the host's own `/` is refused.
    pub(crate) fn held(held: &HeldRoot) -> Result<Self, StageError> {
        let root =
            Root::held(held).map_err(|e| io_error("hold the root directory", held.path(), e))?;
        let dir = Self { root };
        let host = rustix::fs::stat("/").map_err(|e| fs_error("inspect", Path::new("/"), e))?;
        let stat = rustix::fs::fstat(dir.fd()).map_err(|e| fs_error("inspect", dir.path(), e))?;
        if (stat.st_dev, stat.st_ino) == (host.st_dev, host.st_ino) {
            return Err(StageError::UnsafePath {
                path: dir.path().to_path_buf(),
                reason: "the host's own root cannot be a chroot target",
            });
        }
        Ok(dir)
    }

    /// The root's host path, for messages.
    pub(crate) fn path(&self) -> &Path {
        self.root.path()
    }

    /// The root's descriptor, for entering it (fchdir) and inspecting its file system.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.root.fd().as_fd()
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
            rustix::fs::fstat(dir.fd()).map_err(|e| fs_error("inspect", dir.path(), e))
        };
        let (a, b) = (stat(self)?, stat(other)?);
        Ok(a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    }

    /// The host path of `rel`, for messages and for syscalls that take a path.
    pub(crate) fn host_path(&self, rel: &Path) -> PathBuf {
        self.path().join(rel)
    }

    /// Opens the directory `rel` as an `O_PATH` handle; with `no_symlinks`, refuses a path that
    /// goes through any symlink (mount points must be exactly where they appear).
    pub(crate) fn open_dir(&self, rel: &Path, no_symlinks: bool) -> Result<OwnedFd, StageError> {
        let opened = if no_symlinks {
            self.root
                .open_no_symlinks(bytes(rel), OFlags::PATH | OFlags::DIRECTORY)
        } else {
            self.root.open_dir(bytes(rel))
        };
        opened.map_err(|e| self.unsafe_or("open the directory", rel, e))
    }

    /// Whether `rel` is an empty regular file (a device node's placeholder in a rootless build).
    pub(crate) fn is_placeholder(&self, rel: &Path) -> Result<bool, StageError> {
        let fd = match self.open_node(rel) {
            Ok(fd) => fd,
            Err(StageError::Fs { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
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
        self.root
            .open_no_symlinks(bytes(rel), OFlags::PATH | OFlags::NOFOLLOW)
            .map_err(|e| self.unsafe_or("open", rel, e))
    }

    /// Opens the character device `rel` as an `O_PATH` handle, refusing a path through any
    /// symlink and anything but a character device (a mount point for a device node).
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

    /// What is at `rel` (not following a final symlink), or `None` when nothing is.
    pub(crate) fn file_type(&self, rel: &Path) -> Result<Option<FileType>, StageError> {
        self.root
            .file_type(bytes(rel))
            .map_err(|e| io_error("inspect", &self.host_path(rel), e))
    }

    /// Creates `rel` and its missing parents as directories with `mode`; a symlink to nowhere
    /// on the way is an unsafe path.
    pub(crate) fn create_dir_all(&self, rel: &Path, mode: u32) -> Result<(), StageError> {
        match self.root.create_dir_all(bytes(rel), mode) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(Errno::EXIST.raw_os_error()) => {
                Err(StageError::UnsafePath {
                    path: self.host_path(rel),
                    reason: "it goes through a symlink that leads nowhere in the root",
                })
            }
            Err(e) => Err(io_error("create the directory", &self.host_path(rel), e)),
        }
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
        let file = NewFile {
            owner: Some(owner),
            ..NewFile::mode(mode)
        };
        self.root
            .write_file_with(bytes(rel), contents, file)
            .map_err(|e| io_error("write", &self.host_path(rel), e))
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
        let found = self
            .root
            .read_file(bytes(rel))
            .map_err(|e| io_error("read", &self.host_path(rel), e))?;
        Ok(found.map(|(contents, stat)| (contents, stat.st_mode & 0o7777)))
    }

    /// Opens `rel` for appending, creating it with `mode` (a final symlink is refused).
    pub(crate) fn append(&self, rel: &Path, mode: u32) -> Result<std::fs::File, StageError> {
        self.root
            .append(bytes(rel), mode)
            .map_err(|e| io_error("open for appending", &self.host_path(rel), e))
    }

    /// Creates the symlink `rel` pointing at `target`, replacing a symlink already there.
    pub(crate) fn symlink(&self, target: &str, rel: &Path) -> Result<(), StageError> {
        match self.root.symlink(target.as_bytes(), bytes(rel)) {
            Err(e) if e.raw_os_error() == Some(Errno::EXIST.raw_os_error()) => {
                Err(StageError::UnsafePath {
                    path: self.host_path(rel),
                    reason: "something other than a symlink is already there",
                })
            }
            other => other.map_err(|e| io_error("create the symlink", &self.host_path(rel), e)),
        }
    }

    /// Creates the character device `rel` with exactly `mode`, unless something is already there.
    pub(crate) fn mknod_char(
        &self,
        rel: &Path,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), Errno> {
        let dev = rustix::fs::makedev(major, minor);
        self.root
            .mknod(bytes(rel), FileType::CharacterDevice, mode, dev)
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::INVAL))
    }

    /// Copies the regular file `rel` to the same name plus `suffix`, keeping its mode and owner;
    /// returns false (copying nothing) when `rel` is not a regular file.
    pub(crate) fn copy_beside(&self, rel: &Path, suffix: &str) -> Result<bool, StageError> {
        let mut copy = rel.as_os_str().to_os_string();
        copy.push(suffix);
        self.root
            .copy_file(bytes(rel), copy.as_bytes())
            .map_err(|e| io_error("copy", &self.host_path(rel), e))
    }

    /// Renames `rel` to `new_name` in the same directory; returns false (doing nothing) when
    /// nothing is at `rel`.
    pub(crate) fn rename_in_dir(&self, rel: &Path, new_name: &OsStr) -> Result<bool, StageError> {
        let error = |e| io_error("rename", &self.host_path(rel), e);
        let (dir, name) = self.root.parent(bytes(rel)).map_err(error)?;
        match rustix::fs::renameat(&dir, name, &dir, new_name) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(error(e.into())),
        }
    }

    /// Removes the empty directory `rel`, if it is there.
    pub(crate) fn remove_dir(&self, rel: &Path) -> Result<(), StageError> {
        self.root
            .remove_dir(bytes(rel))
            .map_err(|e| io_error("remove the directory", &self.host_path(rel), e))
    }

    /// Removes the non-directory `rel`; returns whether something was there.
    pub(crate) fn remove_file(&self, rel: &Path) -> Result<bool, StageError> {
        self.root
            .remove_file(bytes(rel))
            .map_err(|e| io_error("remove", &self.host_path(rel), e))
    }

    /// An error opening `rel`: a symlink on the way (ELOOP) is an unsafe path.
    fn unsafe_or(&self, action: &'static str, rel: &Path, e: io::Error) -> StageError {
        if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) {
            return StageError::UnsafePath {
                path: self.host_path(rel),
                reason: "it goes through a symlink",
            };
        }
        io_error(action, &self.host_path(rel), e)
    }
}

/// `rel` as the layer takes it; the root itself for an empty path.
fn bytes(rel: &Path) -> &[u8] {
    match rel.as_os_str().as_bytes() {
        b"" | b"/" => b".",
        rel => rel,
    }
}

/// A [`StageError::Fs`] from a rustix error.
pub(crate) fn fs_error(action: &'static str, path: &Path, errno: Errno) -> StageError {
    io_error(action, path, errno.into())
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> StageError {
    StageError::Fs {
        action,
        path: path.to_path_buf(),
        source,
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
