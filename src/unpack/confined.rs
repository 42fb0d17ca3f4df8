//! The target root as a directory descriptor: paths in, descriptors and new files out, every
//! path resolved by the kernel inside the root as if it were `/` (openat2 RESOLVE_IN_ROOT).
//!
//! Only directories are ever opened through a path; the last component of anything created is
//! made relative to its parent's descriptor with calls that never follow a final symlink, so a
//! symlink planted by a package (absolute or relative) cannot carry a write outside the root.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{Mode, OFlags, RenameFlags, ResolveFlags};
use rustix::io::Errno;

use super::path::RelPath;
use crate::HeldRoot;

/// How every path below the root is resolved: `/` and `..` stop at the root, and /proc magic
/// links (which point anywhere) are refused.
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// openat2 fails with EAGAIN when a rename elsewhere races a `..` lookup; it is safe to retry.
const EAGAIN_RETRIES: usize = 64;

/// An open target root.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    /// Makes temporary names unguessable, so no archive entry can race one of ours.
    temp_token: u64,
    temp_counter: AtomicU64,
}

impl Root {
    /// Creates the root directory if needed; says whether it had to be created.
    pub fn create(path: &Path) -> io::Result<bool> {
        match fs_err::create_dir(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs_err::create_dir_all(path)?;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// The held root, through a duplicate of its descriptor: the path is never looked up again.
    pub fn held(root: &HeldRoot) -> io::Result<Root> {
        let fd = root.fd().try_clone_to_owned()?;
        let temp_token = getrandom::u64().map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Root {
            fd,
            path: root.path().to_owned(),
            temp_token,
            temp_counter: AtomicU64::new(0),
        })
    }

    /// The root's host path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root's descriptor.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Opens `path` (following symlinks inside the root) with `flags`.
    pub fn open(&self, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
        openat2(&self.fd, path, flags | OFlags::CLOEXEC, Mode::empty())
    }

    /// Opens `path` with `flags | O_CREAT`, a new file getting `mode` (less the umask).
    pub fn open_create(&self, path: &[u8], flags: OFlags, mode: u32) -> io::Result<OwnedFd> {
        openat2(
            &self.fd,
            path,
            flags | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
    }

    /// What `path` resolves to inside the root (every symlink followed, as the chroot's
    /// realpath would), as its parent directory and its name there; `None` for the root itself.
    /// The name is checked to still give the same file, so the pair names exactly it.
    pub fn resolve_parent(&self, path: &[u8]) -> io::Result<(OwnedFd, Option<Vec<u8>>)> {
        use std::os::unix::ffi::OsStrExt;
        let target = self.open(path, OFlags::PATH)?;
        let same = |a: &rustix::fs::Stat, b: &rustix::fs::Stat| {
            (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
        };
        let found = rustix::fs::fstat(&target)?;
        if same(&found, &rustix::fs::fstat(&self.fd)?) {
            return Ok((self.open_dir(b".")?, None));
        }
        // The kernel's name for both, in this thread's mount namespace: the resolved path
        // below the root is the difference, and has no symlink left in it.
        let name_of = |fd: &OwnedFd| {
            let link = format!(
                "/proc/thread-self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(fd)
            );
            fs_err::read_link(link)
        };
        let (full, base) = (name_of(&target)?, name_of(&self.fd)?);
        let rel = full
            .strip_prefix(&base)
            .map_err(|_| io::Error::other("the resolved path is not below the root"))?;
        let name = rel
            .file_name()
            .ok_or_else(|| io::Error::other("the resolved path has no name"))?;
        let parent = match rel.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.as_os_str().as_bytes(),
            _ => b".",
        };
        let dir = self.open_dir(parent)?;
        let there = rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
        if !same(&found, &there) {
            return Err(io::Error::other("it changed while it was resolved"));
        }
        Ok((dir, Some(name.as_bytes().to_vec())))
    }

    /// Opens a directory (O_PATH) inside the root, following symlinks as the chroot would.
    pub fn open_dir(&self, path: &[u8]) -> io::Result<OwnedFd> {
        self.open(path, OFlags::PATH | OFlags::DIRECTORY)
    }

    /// Opens `path` without following its last component if that is a symlink.
    pub fn open_nofollow(&self, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
        self.open(path, flags | OFlags::NOFOLLOW)
    }

    /// Opens a directory, creating missing components (mode 0755) the way `mkdir -p` would,
    /// each one relative to its already resolved parent.
    pub fn open_dir_all(&self, path: &[u8]) -> io::Result<OwnedFd> {
        match self.open_dir(path) {
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {}
            other => return other,
        }
        let mut parent = self.open_dir(b".")?;
        let mut prefix = Vec::with_capacity(path.len());
        for component in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(component);
            parent = match self.open_dir(&prefix) {
                Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                    match rustix::fs::mkdirat(&parent, component, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    self.open_dir(&prefix)?
                }
                other => other?,
            };
        }
        Ok(parent)
    }

    /// A fresh name, unique in this run and unguessable, for building an object before it is
    /// renamed into place.
    pub fn temp_name(&self) -> Vec<u8> {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        format!(".debstrap-{:016x}-{n}", self.temp_token).into_bytes()
    }

    /// Writes a whole file at `path` (temp name, then rename), creating parent directories.
    pub fn write_file(&self, path: &RelPath, contents: &[u8], mode: u32) -> io::Result<()> {
        self.write_file_dated(path, contents, mode, None)
    }

    /// [`Root::write_file`], with the file's mtime (and atime) set to `mtime` when given.
    pub fn write_file_dated(
        &self,
        path: &RelPath,
        contents: &[u8],
        mode: u32,
        mtime: Option<i64>,
    ) -> io::Result<()> {
        use std::io::Write;
        let dir = self.open_dir_all(path.parent())?;
        let temp = self.temp_name();
        let fd = rustix::fs::openat(
            &dir,
            temp.as_slice(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut file = std::fs::File::from(fd);
        let written = file
            .write_all(contents)
            .and_then(|()| rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(Into::into))
            .and_then(|()| match mtime {
                Some(secs) => {
                    let t = rustix::fs::Timespec {
                        tv_sec: secs,
                        tv_nsec: 0,
                    };
                    let times = rustix::fs::Timestamps {
                        last_access: t,
                        last_modification: t,
                    };
                    rustix::fs::futimens(&file, &times).map_err(Into::into)
                }
                None => Ok(()),
            })
            .and_then(|()| {
                rustix::fs::renameat(&dir, temp.as_slice(), &dir, path.file_name())
                    .map_err(Into::into)
            });
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&dir, temp.as_slice(), rustix::fs::AtFlags::empty());
        }
        written
    }

    /// Creates an empty file at `path` unless something is already there.
    pub fn create_if_absent(&self, path: &RelPath, mode: u32) -> io::Result<()> {
        let dir = self.open_dir_all(path.parent())?;
        match rustix::fs::openat(
            &dir,
            path.file_name(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        ) {
            Ok(fd) => rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(Into::into),
            Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Makes `name` in `dir` a hard link to the file open as `file`, by descriptor: no path to the
/// file is looked up again. linkat's AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH in the host's user
/// namespace on most kernels (it answers ENOENT without it), so a rootless build links through
/// the file's /proc/self/fd entry instead, which AT_SYMLINK_FOLLOW resolves to the same inode.
pub fn hard_link(file: impl AsFd, dir: impl AsFd, name: &[u8]) -> rustix::io::Result<()> {
    use rustix::fs::AtFlags;
    match rustix::fs::linkat(&file, c"", &dir, name, AtFlags::EMPTY_PATH) {
        Err(rustix::io::Errno::NOENT) => hard_link_via_proc(file, dir, name),
        other => other,
    }
}

/// [`hard_link`] through /proc/self/fd, which needs no capability.
fn hard_link_via_proc(file: impl AsFd, dir: impl AsFd, name: &[u8]) -> rustix::io::Result<()> {
    use std::os::fd::AsRawFd;
    let proc_path = format!("/proc/self/fd/{}", file.as_fd().as_raw_fd());
    rustix::fs::linkat(
        rustix::fs::CWD,
        proc_path.as_str(),
        &dir,
        name,
        rustix::fs::AtFlags::SYMLINK_FOLLOW,
    )
}

/// Renames `from` to `to` in `dir` unless `to` exists (then `Ok(false)`).
pub fn rename_noreplace(dir: impl AsFd, from: &[u8], to: &[u8]) -> io::Result<bool> {
    let dir = dir.as_fd();
    match rustix::fs::renameat_with(dir, from, dir, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn openat2(dir: &OwnedFd, path: &[u8], flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, path, flags, mode, RESOLVE) {
            Err(Errno::AGAIN | Errno::INTR) if tries < EAGAIN_RETRIES => tries += 1,
            other => return other.map_err(Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_hard_link_through_proc_names_the_open_file_even_after_its_path_moved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = dir.path().join("first");
        fs_err::write(&first, b"contents").expect("write");
        let file = fs_err::File::open(&first).expect("open");
        // The path the file was opened by now names another file: only the descriptor leads to
        // the first one.
        fs_err::rename(&first, dir.path().join("moved")).expect("rename");
        fs_err::write(&first, b"impostor").expect("write impostor");
        let dir_fd = fs_err::File::open(dir.path()).expect("open dir");
        hard_link_via_proc(&file, &dir_fd, b"link").expect("link");
        let link = fs_err::metadata(dir.path().join("link")).expect("stat link");
        let moved = fs_err::metadata(dir.path().join("moved")).expect("stat moved");
        assert_eq!(link.ino(), moved.ino());
        assert_eq!(
            fs_err::read(dir.path().join("link")).expect("read"),
            b"contents"
        );
        hard_link(&file, &dir_fd, b"link2").expect("link either way");
        let link2 = fs_err::metadata(dir.path().join("link2")).expect("stat link2");
        assert_eq!(link2.ino(), moved.ino());
    }
}
