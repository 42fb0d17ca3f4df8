//! The confined root every stage works in: takes the target root as a directory descriptor and
//! paths below it; gives descriptors, new files, directories, links and nodes there and nowhere
//! else, each path resolved by the kernel inside the root as if it were `/` (openat2
//! `RESOLVE_IN_ROOT`), so Debian's absolute symlinks (`var/run -> /run`) lead back into the root.
//!
//! Only directories are ever opened through a path; the last component of anything created,
//! changed or removed is reached relative to its parent's descriptor with calls that never follow
//! a final symlink, and modes and owners are set on a descriptor (never by a path a symlink could
//! redirect). A symlink planted by a package, absolute or relative, cannot carry a write out.

use std::ffi::{CStr, CString};
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags, Stat, Timestamps};
use rustix::io::Errno;

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

/// Owner, mode and time of an entry, as an archive or a copied tree gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
}

impl Meta {
    /// What `stat` says of a file (its permission bits only).
    pub fn of(stat: &Stat) -> Meta {
        Meta {
            mode: stat.st_mode & 0o7777,
            uid: stat.st_uid,
            gid: stat.st_gid,
            mtime: stat.st_mtime,
        }
    }

    /// The mtime as access and modification time.
    pub fn timestamps(self) -> Timestamps {
        let t = rustix::fs::Timespec {
            tv_sec: self.mtime,
            tv_nsec: 0,
        };
        Timestamps {
            last_access: t,
            last_modification: t,
        }
    }

    /// Gives the file open as `fd` (any kind of descriptor, `O_PATH` included) this owner.
    pub fn chown(self, fd: impl AsFd) -> io::Result<()> {
        chown_fd(fd, self.uid, self.gid)
    }

    /// Owner, then mode (chown clears set-id bits), then times, on the file open as `fd`.
    pub fn apply(self, fd: impl AsFd) -> io::Result<()> {
        let fd = fd.as_fd();
        self.chown(fd)?;
        chmod_fd(fd, self.mode)?;
        match rustix::fs::futimens(fd, &self.timestamps()) {
            // An O_PATH descriptor (a device node's) is reached through its /proc name.
            Err(Errno::BADF) => Ok(rustix::fs::utimensat(
                rustix::fs::CWD,
                proc_fd_path(fd),
                &self.timestamps(),
                AtFlags::empty(),
            )?),
            other => Ok(other?),
        }
    }
}

/// How a new regular file is made: its mode, its owner (`None`: the running user) and its
/// mtime (`None`: now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NewFile {
    pub mode: u32,
    pub owner: Option<(u32, u32)>,
    pub mtime: Option<i64>,
}

impl NewFile {
    /// A file with `mode`, owned by the running user, dated now.
    pub fn mode(mode: u32) -> NewFile {
        NewFile {
            mode,
            owner: None,
            mtime: None,
        }
    }
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
        Root::from_fd(root.fd().try_clone_to_owned()?, root.path())
    }

    /// The directory open as `fd` as a root; `path` is its name, for messages only.
    pub fn from_fd(fd: OwnedFd, path: &Path) -> io::Result<Root> {
        let temp_token = getrandom::u64().map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Root {
            fd,
            path: path.to_owned(),
            temp_token,
            temp_counter: AtomicU64::new(0),
        })
    }

    /// The root's host path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host path of `rel` below the root, for messages only.
    pub fn host_path(&self, rel: impl AsRef<[u8]>) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        let rel = rel.as_ref();
        let rel = rel.strip_prefix(b"/").unwrap_or(rel);
        self.path.join(std::ffi::OsStr::from_bytes(rel))
    }

    /// The root's descriptor.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Opens `path` (following symlinks inside the root) with `flags`.
    pub fn open(&self, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
        open_in_root(self.fd.as_fd(), path, flags)
    }

    /// Opens `path` with `flags`, refusing (ELOOP) a path that goes through any symlink: for
    /// what must be exactly where it appears, such as a mount point.
    pub fn open_no_symlinks(&self, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
        openat2(
            &self.fd,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE | ResolveFlags::NO_SYMLINKS,
        )
    }

    /// Opens `path` with `flags | O_CREAT`, a new file getting `mode` (less the umask).
    pub fn open_create(&self, path: &[u8], flags: OFlags, mode: u32) -> io::Result<OwnedFd> {
        openat2(
            &self.fd,
            path,
            flags | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
            RESOLVE,
        )
    }

    /// What `path` resolves to inside the root (every symlink followed, as the chroot's
    /// realpath would), as its parent directory and its name there; `None` for the root itself.
    /// The name is checked to still give the same file, so the pair names exactly it.
    pub fn resolve_parent(&self, path: &[u8]) -> io::Result<(OwnedFd, Option<Vec<u8>>)> {
        use std::os::unix::ffi::OsStrExt;
        let target = self.open(path, OFlags::PATH)?;
        let same = |a: &Stat, b: &Stat| (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino);
        let found = rustix::fs::fstat(&target)?;
        if same(&found, &rustix::fs::fstat(&self.fd)?) {
            return Ok((self.open_dir(b".")?, None));
        }
        // The kernel's name for both, in this thread's mount namespace: the resolved path
        // below the root is the difference, and has no symlink left in it.
        let name_of = |fd: &OwnedFd| fs_err::read_link(proc_fd_path(fd));
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
        let there = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
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

    /// Opens a directory, creating missing components (mode 0755 less the umask) the way
    /// `mkdir -p` would, each one relative to its already resolved parent.
    pub fn open_dir_all(&self, path: &[u8]) -> io::Result<OwnedFd> {
        self.make_dirs(path, 0o755, false)
    }

    /// [`Root::open_dir_all`], giving each directory it creates exactly `mode` (set on the new
    /// directory's descriptor, not through the umask); existing ones keep theirs.
    pub fn create_dir_all(&self, path: &[u8], mode: u32) -> io::Result<OwnedFd> {
        self.make_dirs(path, mode, true)
    }

    fn make_dirs(&self, path: &[u8], mode: u32, exact: bool) -> io::Result<OwnedFd> {
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
                    let made = if exact {
                        make_dir_in(parent.as_fd(), component, mode).map(drop)
                    } else {
                        rustix::fs::mkdirat(&parent, component, Mode::from_raw_mode(mode))
                            .map_err(Into::into)
                    };
                    match made.map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO)) {
                        Ok(()) => {}
                        // A symlink to nowhere (mkdir -p says "File exists" too).
                        Err(Errno::EXIST) => {
                            return match self.open_dir(&prefix) {
                                Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                                    Err(Errno::EXIST.into())
                                }
                                Err(e) => Err(e),
                                // Made by someone else meanwhile: go on from there.
                                Ok(_) => self.make_dirs(path, mode, exact),
                            };
                        }
                        Err(e) => return Err(e.into()),
                    }
                    self.open_dir(&prefix)?
                }
                other => other?,
            };
        }
        Ok(parent)
    }

    /// The directory holding `path` (resolved inside the root, following symlinks) and the last
    /// component, which is left for the caller to reach without following it.
    pub fn parent<'p>(&self, path: &'p [u8]) -> io::Result<(OwnedFd, &'p [u8])> {
        let (parent, name) = split(path)?;
        Ok((self.open_dir(parent)?, name))
    }

    /// [`Root::parent`], creating the missing directories (0755) on the way.
    fn parent_all<'p>(&self, path: &'p [u8]) -> io::Result<(OwnedFd, &'p [u8])> {
        let (parent, name) = split(path)?;
        Ok((self.open_dir_all(parent)?, name))
    }

    /// A fresh name, unique in this run and unguessable, for building an object before it is
    /// renamed into place.
    pub fn temp_name(&self) -> Vec<u8> {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        format!(".debstrap-{:016x}-{n}", self.temp_token).into_bytes()
    }

    /// Writes a whole file at `path` (temp name, then rename), creating parent directories.
    pub fn write_file(&self, path: &[u8], contents: &[u8], mode: u32) -> io::Result<()> {
        self.write_file_with(path, contents, NewFile::mode(mode))
    }

    /// [`Root::write_file`], with the file's mtime (and atime) set to `mtime` when given.
    pub fn write_file_dated(
        &self,
        path: &[u8],
        contents: &[u8],
        mode: u32,
        mtime: Option<i64>,
    ) -> io::Result<()> {
        let file = NewFile {
            mtime,
            ..NewFile::mode(mode)
        };
        self.write_file_with(path, contents, file)
    }

    /// Replaces `path` (a symlink there is replaced, never followed) with a file holding
    /// `contents`, made as `file` says, in one rename; parent directories are created.
    pub fn write_file_with(&self, path: &[u8], contents: &[u8], file: NewFile) -> io::Result<()> {
        let (dir, name) = self.parent_all(path)?;
        self.write_in(dir.as_fd(), name, contents, file)
    }

    /// Writes `name` in the directory `dir` (one of this root's) as [`Root::write_file_with`]
    /// does: the directory is reached by its descriptor only.
    pub fn write_in(
        &self,
        dir: BorrowedFd,
        name: &[u8],
        contents: &[u8],
        file: NewFile,
    ) -> io::Result<()> {
        let temp = self.temp_name();
        let fd = rustix::fs::openat(
            dir,
            temp.as_slice(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut handle = std::fs::File::from(fd);
        let written = handle
            .write_all(contents)
            .and_then(|()| match file.owner {
                Some((uid, gid)) => chown_fd(&handle, uid, gid),
                None => Ok(()),
            })
            .and_then(|()| {
                rustix::fs::fchmod(&handle, Mode::from_raw_mode(file.mode)).map_err(Into::into)
            })
            .and_then(|()| match file.mtime {
                Some(mtime) => {
                    let times = Meta {
                        mode: file.mode,
                        uid: 0,
                        gid: 0,
                        mtime,
                    }
                    .timestamps();
                    rustix::fs::futimens(&handle, &times).map_err(Into::into)
                }
                None => Ok(()),
            })
            .and_then(|()| {
                rustix::fs::renameat(dir, temp.as_slice(), dir, name).map_err(Into::into)
            });
        if written.is_err() {
            let _ = rustix::fs::unlinkat(dir, temp.as_slice(), AtFlags::empty());
        }
        written
    }

    /// Creates an empty file at `path` unless something is already there.
    pub fn create_if_absent(&self, path: &[u8], mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent_all(path)?;
        match rustix::fs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        ) {
            Ok(fd) => rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(Into::into),
            Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the regular file at `path` (a final symlink is not followed: ELOOP) with its
    /// status, or `None` when nothing is there.
    pub fn read_file(&self, path: &[u8]) -> io::Result<Option<(Vec<u8>, Stat)>> {
        let (dir, name) = self.parent(path)?;
        read_in(dir.as_fd(), name, u64::MAX)
    }

    /// Opens `path` for appending, creating it with `mode` (a final symlink is refused).
    pub fn append(&self, path: &[u8], mode: u32) -> io::Result<std::fs::File> {
        let (dir, name) = self.parent(path)?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        Ok(std::fs::File::from(fd))
    }

    /// What is at `path` (a final symlink is not followed), or `None` when nothing is.
    pub fn file_type(&self, path: &[u8]) -> io::Result<Option<FileType>> {
        // O_PATH with O_NOFOLLOW opens a final symlink itself, so fstat tells what it is.
        match self.open_nofollow(path, OFlags::PATH) {
            Ok(fd) => Ok(Some(FileType::from_raw_mode(
                rustix::fs::fstat(&fd)?.st_mode,
            ))),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(n) if n == Errno::NOENT.raw_os_error() || n == Errno::NOTDIR.raw_os_error()
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Makes `path` a symlink to `target`, replacing a symlink already there; anything else
    /// there is refused (EEXIST).
    pub fn symlink(&self, target: &[u8], path: &[u8]) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink => {
                if rustix::fs::readlinkat(&dir, name, Vec::new())?.as_bytes() == target {
                    return Ok(());
                }
                rustix::fs::unlinkat(&dir, name, AtFlags::empty())?;
            }
            Ok(_) => return Err(Errno::EXIST.into()),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(rustix::fs::symlinkat(target, &dir, name)?)
    }

    /// Makes the device node (or FIFO) `path` of `kind` with exactly `mode`; an existing entry
    /// is an error (EEXIST).
    pub fn mknod(&self, path: &[u8], kind: FileType, mode: u32, dev: u64) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        rustix::fs::mknodat(&dir, name, kind, Mode::from_raw_mode(mode), dev)?;
        // mknod applies the umask; the mode is set again on the node itself.
        let node = rustix::fs::openat(
            &dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        chmod_fd(&node, mode)
    }

    /// Removes the non-directory `path`; says whether something was there.
    pub fn remove_file(&self, path: &[u8]) -> io::Result<bool> {
        let (dir, name) = self.parent(path)?;
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the empty directory `path`, if it is there.
    pub fn remove_dir(&self, path: &[u8]) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        match rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Copies the regular file `path` to `copy` (in the root), keeping its mode and owner;
    /// `false` (copying nothing) when `path` is missing, a symlink or not a regular file.
    pub fn copy_file(&self, path: &[u8], copy: &[u8]) -> io::Result<bool> {
        let found = match self.read_file(path) {
            Ok(found) => found,
            Err(e) if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => None,
            Err(e) => return Err(e),
        };
        let Some((contents, stat)) = found else {
            return Ok(false);
        };
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Ok(false);
        }
        let file = NewFile {
            owner: Some((stat.st_uid, stat.st_gid)),
            ..NewFile::mode(stat.st_mode & 0o7777)
        };
        self.write_file_with(copy, &contents, file)?;
        Ok(true)
    }
}

/// `path` (relative to the root, a leading `/` ignored) as its parent and last component;
/// a path without a last name (`.`, `..`, empty) is refused (EINVAL).
fn split(path: &[u8]) -> io::Result<(&[u8], &[u8])> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    let (parent, name) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (&b"."[..], trimmed),
    };
    if name.is_empty() || name == b"." || name == b".." {
        return Err(Errno::INVAL.into());
    }
    Ok((if parent.is_empty() { b"." } else { parent }, name))
}

/// Reads at most `cap` bytes of the regular file `name` in `dir` (a symlink is refused with
/// ELOOP; a device or FIFO is not read, its contents given as empty) with its status; `None`
/// when nothing is there.
pub(crate) fn read_in(
    dir: BorrowedFd,
    name: &[u8],
    cap: u64,
) -> io::Result<Option<(Vec<u8>, Stat)>> {
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let stat = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Ok(Some((Vec::new(), stat)));
    }
    let mut contents = Vec::new();
    std::fs::File::from(fd)
        .take(cap)
        .read_to_end(&mut contents)?;
    Ok(Some((contents, stat)))
}

/// Makes the directory `name` in `dir` with exactly `mode` (set on its descriptor, whatever the
/// umask), and gives it open (`O_PATH`); an entry already there is an error (EEXIST).
pub(crate) fn make_dir_in(dir: BorrowedFd, name: &[u8], mode: u32) -> io::Result<OwnedFd> {
    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?;
    let made = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    chmod_fd(&made, mode)?;
    Ok(made)
}

/// Removes `name` in `dir`, a whole tree if it is a directory, reaching every entry through its
/// directory's descriptor and following no symlink.
pub(crate) fn remove_tree(dir: BorrowedFd, name: &[u8]) -> io::Result<()> {
    // Opened before anything is decided, so what is emptied is what was opened: a symlink
    // (ELOOP) or anything but a directory (ENOTDIR, a FIFO included, unopened) is one unlink.
    let sub = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(sub) => sub,
        Err(Errno::LOOP | Errno::NOTDIR) => {
            return Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
        }
        Err(e) => return Err(e.into()),
    };
    for child in read_names(sub.as_fd())? {
        remove_tree(sub.as_fd(), child.to_bytes())?;
    }
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

/// The names in a directory, without `.` and `..`, sorted by their bytes.
pub(crate) fn read_names(dir: BorrowedFd) -> rustix::io::Result<Vec<CString>> {
    let mut names = Vec::new();
    let mut reader = rustix::fs::Dir::read_from(dir)?;
    while let Some(entry) = reader.read() {
        let entry = entry?;
        let name: &CStr = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    names.sort_unstable_by(|a, b| a.to_bytes().cmp(b.to_bytes()));
    Ok(names)
}

/// The /proc name of the file open as `fd`, through which a path-taking call reaches exactly
/// that inode (thread-self: a thread in a private mount namespace sees its own mounts).
pub(crate) fn proc_fd_path(fd: impl AsFd) -> PathBuf {
    PathBuf::from(format!("/proc/thread-self/fd/{}", fd.as_fd().as_raw_fd()))
}

/// Sets the mode of the file open as `fd`, which may be an `O_PATH` descriptor (of a device
/// node, say): through its /proc name, which names the inode itself and never a symlink.
pub(crate) fn chmod_fd(fd: impl AsFd, mode: u32) -> io::Result<()> {
    let fd = fd.as_fd();
    match rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)) {
        // An O_PATH descriptor cannot be fchmod'ed.
        Err(Errno::BADF) => Ok(rustix::fs::chmod(
            proc_fd_path(fd),
            Mode::from_raw_mode(mode),
        )?),
        other => Ok(other?),
    }
}

/// Sets the owner of the file open as `fd` (an `O_PATH` descriptor of a symlink changes the
/// symlink itself).
pub(crate) fn chown_fd(fd: impl AsFd, uid: u32, gid: u32) -> io::Result<()> {
    Ok(rustix::fs::chownat(
        fd,
        c"",
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        AtFlags::EMPTY_PATH,
    )?)
}

/// Opens `path` inside the root open as `root` (a held root's descriptor), following symlinks
/// inside it, with `flags`: for a one-off read where no [`Root`] is at hand.
pub(crate) fn open_in_root(root: BorrowedFd, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    retrying(|| rustix::fs::openat2(root, path, flags | OFlags::CLOEXEC, Mode::empty(), RESOLVE))
}

/// Opens `rel` beneath the directory `dir` (a directory a user named, not a root: `..` or an
/// absolute symlink leading out is refused with EXDEV); with `no_symlinks`, any symlink on the
/// way is refused (ELOOP).
pub(crate) fn open_beneath(
    dir: BorrowedFd,
    rel: &Path,
    flags: OFlags,
    no_symlinks: bool,
) -> io::Result<OwnedFd> {
    let mut resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    if no_symlinks {
        resolve |= ResolveFlags::NO_SYMLINKS;
    }
    use std::os::unix::ffi::OsStrExt;
    let rel = rel.as_os_str().as_bytes();
    let rel = if rel.is_empty() { b"." } else { rel };
    retrying(|| rustix::fs::openat2(dir, rel, flags | OFlags::CLOEXEC, Mode::empty(), resolve))
}

/// Makes `name` in `dir` a hard link to the file open as `file`, by descriptor: no path to the
/// file is looked up again. linkat's AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH in the host's user
/// namespace on most kernels (it answers ENOENT without it), so a rootless build links through
/// the file's /proc/self/fd entry instead, which AT_SYMLINK_FOLLOW resolves to the same inode.
pub fn hard_link(file: impl AsFd, dir: impl AsFd, name: &[u8]) -> rustix::io::Result<()> {
    match rustix::fs::linkat(&file, c"", &dir, name, AtFlags::EMPTY_PATH) {
        Err(rustix::io::Errno::NOENT) => hard_link_via_proc(file, dir, name),
        other => other,
    }
}

/// [`hard_link`] through /proc/self/fd, which needs no capability.
fn hard_link_via_proc(file: impl AsFd, dir: impl AsFd, name: &[u8]) -> rustix::io::Result<()> {
    let proc_path = format!("/proc/self/fd/{}", file.as_fd().as_raw_fd());
    rustix::fs::linkat(
        rustix::fs::CWD,
        proc_path.as_str(),
        &dir,
        name,
        AtFlags::SYMLINK_FOLLOW,
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

fn openat2(
    dir: &OwnedFd,
    path: &[u8],
    flags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> io::Result<OwnedFd> {
    retrying(|| rustix::fs::openat2(dir, path, flags, mode, resolve))
}

/// Calls `open` again while it fails with EAGAIN or EINTR, at most [`EAGAIN_RETRIES`] times more.
fn retrying(mut open: impl FnMut() -> rustix::io::Result<OwnedFd>) -> io::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match open() {
            Err(Errno::AGAIN | Errno::INTR) if tries < EAGAIN_RETRIES => tries += 1,
            other => return other.map_err(Into::into),
        }
    }
}

#[cfg(test)]
// Tests state their expectations with unwrap(); a panic there is the failure report.
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::{symlink, MetadataExt as _, PermissionsExt};

    use super::*;

    /// A scratch directory holding `root/` and, beside it, `outside/`: where an escape from the
    /// root would land.
    struct Scene {
        _dir: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    impl Scene {
        fn new() -> Scene {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("root");
            let outside = dir.path().join("outside");
            fs_err::create_dir(&root).unwrap();
            fs_err::create_dir(&outside).unwrap();
            Scene {
                _dir: dir,
                root,
                outside,
            }
        }

        fn open(&self) -> Root {
            Root::held(&HeldRoot::open(&self.root).unwrap()).unwrap()
        }

        /// What `outside/` holds: an escape writes here.
        fn outside_names(&self) -> Vec<String> {
            names_in(&self.outside)
        }
    }

    /// The names in `dir`, sorted.
    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs_err::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn close_on_exec(fd: impl AsFd) -> bool {
        rustix::io::fcntl_getfd(fd)
            .unwrap()
            .contains(rustix::io::FdFlags::CLOEXEC)
    }

    fn same_file(fd: impl AsFd, path: &Path) -> bool {
        let st = rustix::fs::fstat(fd).unwrap();
        let meta = fs_err::symlink_metadata(path).unwrap();
        (st.st_dev, st.st_ino) == (meta.dev(), meta.ino())
    }

    fn errno(e: &io::Error) -> Option<i32> {
        e.raw_os_error()
    }

    #[test]
    fn create_makes_missing_parents_and_says_whether_it_made_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/root");
        assert!(Root::create(&path).unwrap(), "made");
        assert!(path.is_dir());
        assert!(!Root::create(&path).unwrap(), "already there");
        // A root that cannot be made is an error, not a root that is "already there".
        fs_err::write(dir.path().join("file"), b"").unwrap();
        let err = Root::create(&dir.path().join("file/root")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotADirectory, "{err}");
        assert!(!dir.path().join("file/root").exists());
    }

    #[test]
    fn symlinks_resolve_inside_the_root_absolute_relative_or_dot_dot() {
        let scene = Scene::new();
        fs_err::create_dir(scene.root.join("etc")).unwrap();
        fs_err::write(scene.root.join("etc/f"), b"inside").unwrap();
        fs_err::write(scene.outside.join("f"), b"outside").unwrap();
        symlink("/etc", scene.root.join("abs")).unwrap();
        symlink("../../../etc", scene.root.join("rel")).unwrap();
        let root = scene.open();
        for path in [
            &b"abs/f"[..],
            b"rel/f",
            b"../etc/f",
            b"/etc/f",
            b"../../etc/f",
        ] {
            let fd = root.open(path, OFlags::RDONLY).unwrap();
            assert!(same_file(&fd, &scene.root.join("etc/f")), "{path:?}");
            assert!(close_on_exec(&fd), "{path:?}");
        }
        // /proc's magic links point anywhere: refused, not followed.
        symlink("/proc/self/cwd", scene.root.join("magic")).unwrap();
        assert!(root.open(b"magic", OFlags::PATH).is_err());
    }

    #[test]
    fn open_create_makes_the_file_inside_the_root_through_a_symlink() {
        let scene = Scene::new();
        fs_err::create_dir(scene.root.join("run")).unwrap();
        symlink("/run", scene.root.join("var_run")).unwrap();
        let root = scene.open();
        let fd = root
            .open_create(b"var_run/pid", OFlags::WRONLY, 0o600)
            .unwrap();
        assert!(close_on_exec(&fd));
        assert!(same_file(&fd, &scene.root.join("run/pid")));
        assert!(scene.outside_names().is_empty());
    }

    #[test]
    fn open_dir_refuses_what_is_not_a_directory() {
        let scene = Scene::new();
        fs_err::write(scene.root.join("file"), b"").unwrap();
        let root = scene.open();
        let err = root.open_dir(b"file").unwrap_err();
        assert_eq!(errno(&err), Some(Errno::NOTDIR.raw_os_error()), "{err}");
        let dir = root.open_dir(b".").unwrap();
        assert!(close_on_exec(&dir));
        assert!(same_file(&dir, &scene.root));
    }

    #[test]
    fn open_nofollow_gives_the_symlink_itself() {
        let scene = Scene::new();
        fs_err::write(scene.root.join("target"), b"").unwrap();
        symlink("target", scene.root.join("link")).unwrap();
        let root = scene.open();
        let link = root.open_nofollow(b"link", OFlags::PATH).unwrap();
        assert!(same_file(&link, &scene.root.join("link")));
        assert!(close_on_exec(&link));
        let err = root.open_nofollow(b"link", OFlags::RDONLY).unwrap_err();
        assert_eq!(errno(&err), Some(Errno::LOOP.raw_os_error()), "{err}");
    }

    #[test]
    fn resolve_parent_names_the_final_file_and_its_real_directory() {
        let scene = Scene::new();
        fs_err::create_dir_all(scene.root.join("usr/bin")).unwrap();
        fs_err::write(scene.root.join("usr/bin/sh"), b"").unwrap();
        fs_err::write(scene.root.join("top"), b"").unwrap();
        symlink("/usr/bin", scene.root.join("bin")).unwrap();
        let root = scene.open();

        let (dir, name) = root.resolve_parent(b"bin/sh").unwrap();
        assert_eq!(name.as_deref(), Some(&b"sh"[..]));
        assert!(same_file(&dir, &scene.root.join("usr/bin")));

        let (dir, name) = root.resolve_parent(b"top").unwrap();
        assert_eq!(name.as_deref(), Some(&b"top"[..]));
        assert!(same_file(&dir, &scene.root));

        let (dir, name) = root.resolve_parent(b"usr/..").unwrap();
        assert_eq!(name, None, "the root itself");
        assert!(same_file(&dir, &scene.root));
    }

    #[test]
    fn open_dir_all_makes_each_missing_directory_inside_the_root() {
        let scene = Scene::new();
        fs_err::create_dir(scene.root.join("real")).unwrap();
        symlink("/real", scene.root.join("abs")).unwrap();
        symlink("../outside", scene.root.join("up")).unwrap();
        let root = scene.open();

        let dir = root.open_dir_all(b"a//b/c/").unwrap();
        assert!(same_file(&dir, &scene.root.join("a/b/c")));
        let mode = fs_err::metadata(scene.root.join("a/b")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o755 & !current_umask());

        let dir = root.open_dir_all(b"abs/x/y").unwrap();
        assert!(same_file(&dir, &scene.root.join("real/x/y")));
        // `up` leads to the root's own (missing) /outside, never to the one beside the root.
        assert!(root.open_dir_all(b"up/z").is_err());
        assert!(
            scene.outside_names().is_empty(),
            "nothing made beside the root"
        );

        let dir = root.open_dir_all(b"real").unwrap();
        assert!(same_file(&dir, &scene.root.join("real")), "an existing one");
        fs_err::write(scene.root.join("file"), b"").unwrap();
        let err = root.open_dir_all(b"file/sub").unwrap_err();
        assert_eq!(errno(&err), Some(Errno::NOTDIR.raw_os_error()), "{err}");
    }

    fn current_umask() -> u32 {
        let mask = rustix::process::umask(Mode::from_raw_mode(0o022));
        rustix::process::umask(mask);
        mask.bits()
    }

    #[test]
    fn temporary_names_differ_within_a_run_and_between_roots() {
        let scene = Scene::new();
        let (a, b) = (scene.open(), scene.open());
        let names = [a.temp_name(), a.temp_name(), b.temp_name()];
        assert_ne!(names[0], names[1]);
        assert_ne!(names[0], names[2], "each root draws its own token");
        for name in &names {
            assert!(name.starts_with(b".debstrap-"), "{name:?}");
            assert!(!name.contains(&0) && !name.contains(&b'/'), "{name:?}");
        }
    }

    #[test]
    fn write_file_dated_writes_contents_mode_and_time_through_symlinks_inside() {
        let scene = Scene::new();
        fs_err::create_dir_all(scene.root.join("var/lib")).unwrap();
        symlink("/var/lib", scene.root.join("lib")).unwrap();
        let root = scene.open();
        let path = b"lib/dpkg/status";
        root.write_file_dated(path, b"Package: a\n", 0o640, Some(1_000_000))
            .unwrap();
        let file = scene.root.join("var/lib/dpkg/status");
        // (Looked at before the file is read, which would move its atime.)
        let meta = fs_err::metadata(&file).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!((meta.mtime(), meta.atime()), (1_000_000, 1_000_000));
        assert_eq!(fs_err::read(&file).unwrap(), b"Package: a\n");
        // Written again: replaced whole, and no temporary file left beside it.
        root.write_file(path, b"x", 0o644).unwrap();
        assert_eq!(fs_err::read(&file).unwrap(), b"x");
        assert_eq!(names_in(file.parent().unwrap()), ["status"]);
    }

    #[test]
    fn a_symlink_planted_at_the_next_temporary_name_is_not_written_through() {
        let scene = Scene::new();
        let root = scene.open();
        // The name the next write will use, as if an archive entry had guessed it.
        let next = format!(
            ".debstrap-{:016x}-{}",
            root.temp_token,
            root.temp_counter.load(Ordering::Relaxed)
        );
        symlink(scene.outside.join("x"), scene.root.join(&next)).unwrap();
        let _ = root.write_file(b"f", b"data", 0o644);
        assert!(scene.outside_names().is_empty(), "written outside the root");
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let scene = Scene::new();
        fs_err::create_dir(scene.root.join("d")).unwrap();
        fs_err::write(scene.root.join("d/keep"), b"").unwrap();
        let root = scene.open();
        // Renaming a file over a non-empty directory fails after the temporary file is written.
        let err = root.write_file(b"d", b"data", 0o644).unwrap_err();
        assert!(err.raw_os_error().is_some(), "{err}");
        assert_eq!(names_in(&scene.root), ["d"]);
    }

    #[test]
    fn create_if_absent_makes_an_empty_file_once_and_never_follows_a_symlink() {
        let scene = Scene::new();
        let root = scene.open();
        let path = b"var/lib/dpkg/available";
        root.create_if_absent(path, 0o600).unwrap();
        let file = scene.root.join("var/lib/dpkg/available");
        assert_eq!(fs_err::metadata(&file).unwrap().len(), 0);
        assert_eq!(fs_err::metadata(&file).unwrap().mode() & 0o7777, 0o600);
        fs_err::write(&file, b"kept").unwrap();
        root.create_if_absent(path, 0o600).unwrap();
        assert_eq!(fs_err::read(&file).unwrap(), b"kept", "left as it was");

        // A symlink at the name, pointing outside: left alone, nothing made where it points.
        symlink(scene.outside.join("made"), scene.root.join("planted")).unwrap();
        let _ = root.create_if_absent(b"planted", 0o644);
        assert!(scene.outside_names().is_empty(), "created outside the root");
    }

    /// An open that fails with `errno` `failures` times, then succeeds; counts its calls and
    /// gives up (succeeding) after 1000, so a retry without bound ends the test instead of hanging.
    fn flaky(errno: Errno, failures: usize, calls: &mut usize) -> rustix::io::Result<OwnedFd> {
        *calls += 1;
        if *calls <= failures && *calls < 1000 {
            Err(errno)
        } else {
            rustix::fs::open("/", OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        }
    }

    #[test]
    fn a_raced_lookup_is_retried_a_bounded_number_of_times() {
        for errno in [Errno::AGAIN, Errno::INTR] {
            let mut calls = 0;
            retrying(|| flaky(errno, EAGAIN_RETRIES, &mut calls)).unwrap();
            assert_eq!(
                calls,
                EAGAIN_RETRIES + 1,
                "{errno:?}: retried until it worked"
            );

            let mut calls = 0;
            let err = retrying(|| flaky(errno, usize::MAX, &mut calls)).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(errno.raw_os_error()));
            assert_eq!(calls, EAGAIN_RETRIES + 1, "{errno:?}: then given up");
        }
        // Any other error is final at once.
        let mut calls = 0;
        assert!(retrying(|| flaky(Errno::NOENT, 1, &mut calls)).is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn rename_noreplace_never_replaces() {
        let scene = Scene::new();
        fs_err::write(scene.root.join("a"), b"a").unwrap();
        fs_err::write(scene.root.join("b"), b"b").unwrap();
        let root = scene.open();
        let dir = root.open_dir(b".").unwrap();
        assert!(!rename_noreplace(&dir, b"a", b"b").unwrap());
        assert_eq!(fs_err::read(scene.root.join("b")).unwrap(), b"b");
        assert!(rename_noreplace(&dir, b"a", b"c").unwrap());
        assert_eq!(fs_err::read(scene.root.join("c")).unwrap(), b"a");
        assert!(!scene.root.join("a").exists());
    }

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

    #[test]
    fn split_names_the_parent_and_refuses_a_path_without_a_name() {
        assert_eq!(split(b"a/b/c").unwrap(), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"c").unwrap(), (&b"."[..], &b"c"[..]));
        assert_eq!(split(b"/c").unwrap(), (&b"."[..], &b"c"[..]));
        assert_eq!(split(b"a/c/").unwrap(), (&b"a"[..], &b"c"[..]));
        for bad in [&b""[..], b".", b"..", b"a/..", b"/"] {
            let err = split(bad).unwrap_err();
            assert_eq!(errno(&err), Some(Errno::INVAL.raw_os_error()), "{bad:?}");
        }
    }

    #[test]
    fn create_dir_all_gives_new_directories_exactly_their_mode_inside_the_root() {
        let scene = Scene::new();
        fs_err::create_dir(scene.root.join("real")).unwrap();
        fs_err::set_permissions(scene.root.join("real"), PermissionsExt::from_mode(0o751)).unwrap();
        symlink("/real", scene.root.join("abs")).unwrap();
        let root = scene.open();
        let mask = rustix::process::umask(Mode::from_raw_mode(0o077));
        let made = root.create_dir_all(b"abs/x/y", 0o775);
        rustix::process::umask(mask);
        let dir = made.unwrap();
        assert!(same_file(&dir, &scene.root.join("real/x/y")));
        for new in ["real/x", "real/x/y"] {
            let mode = fs_err::metadata(scene.root.join(new)).unwrap().mode();
            assert_eq!(mode & 0o7777, 0o775, "{new}: not the umask's");
        }
        let kept = fs_err::metadata(scene.root.join("real")).unwrap().mode();
        assert_eq!(kept & 0o7777, 0o751, "an existing directory keeps its mode");
        // A symlink whose target is missing in the root is not made a directory through.
        symlink(scene.outside.join("made"), scene.root.join("dangling")).unwrap();
        let err = root.create_dir_all(b"dangling/x", 0o755).unwrap_err();
        assert_eq!(errno(&err), Some(Errno::EXIST.raw_os_error()), "{err}");
        assert!(scene.outside_names().is_empty());
    }

    #[test]
    fn write_file_with_sets_owner_mode_and_replaces_a_symlink_at_the_name() {
        let scene = Scene::new();
        symlink(scene.outside.join("victim"), scene.root.join("f")).unwrap();
        let root = scene.open();
        let me = (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        );
        let owner = if me.0 == 0 { (1234, 2345) } else { me };
        let file = NewFile {
            owner: Some(owner),
            ..NewFile::mode(0o4750)
        };
        root.write_file_with(b"f", b"data", file).unwrap();
        let meta = fs_err::symlink_metadata(scene.root.join("f")).unwrap();
        assert!(meta.is_file(), "the symlink was replaced");
        assert_eq!((meta.uid(), meta.gid()), owner);
        assert_eq!(meta.mode() & 0o7777, 0o4750, "mode set after the owner");
        assert!(
            scene.outside_names().is_empty(),
            "written through the symlink"
        );
    }

    #[test]
    fn write_in_writes_by_the_directory_descriptor() {
        let scene = Scene::new();
        fs_err::create_dir(scene.root.join("d")).unwrap();
        let root = scene.open();
        let dir = root.open_dir(b"d").unwrap();
        // The path that led to the directory now names another one.
        fs_err::rename(scene.root.join("d"), scene.root.join("moved")).unwrap();
        fs_err::create_dir(scene.root.join("d")).unwrap();
        root.write_in(dir.as_fd(), b"f", b"x", NewFile::mode(0o600))
            .unwrap();
        assert_eq!(fs_err::read(scene.root.join("moved/f")).unwrap(), b"x");
        assert!(!scene.root.join("d/f").exists());
    }

    #[test]
    fn read_file_never_follows_a_final_symlink_nor_blocks_on_a_fifo() {
        let scene = Scene::new();
        fs_err::create_dir(scene.root.join("etc")).unwrap();
        fs_err::write(scene.root.join("etc/passwd"), b"root\n").unwrap();
        fs_err::write(scene.outside.join("secret"), b"host").unwrap();
        symlink(scene.outside.join("secret"), scene.root.join("etc/link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            scene.root.join("etc/fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        symlink("/etc", scene.root.join("abs")).unwrap();
        let root = scene.open();
        let (bytes, stat) = root.read_file(b"abs/passwd").unwrap().unwrap();
        assert_eq!(bytes, b"root\n");
        assert_eq!(stat.st_size, 5);
        let err = root.read_file(b"etc/link").unwrap_err();
        assert_eq!(errno(&err), Some(Errno::LOOP.raw_os_error()), "{err}");
        let (bytes, stat) = root.read_file(b"etc/fifo").unwrap().unwrap();
        assert!(bytes.is_empty());
        assert_eq!(FileType::from_raw_mode(stat.st_mode), FileType::Fifo);
        assert!(root.read_file(b"etc/missing").unwrap().is_none());
    }

    #[test]
    fn append_creates_once_then_appends_and_refuses_a_final_symlink() {
        let scene = Scene::new();
        symlink(scene.outside.join("log"), scene.root.join("link")).unwrap();
        let root = scene.open();
        for line in [&b"a\n"[..], b"b\n"] {
            root.append(b"log", 0o640).unwrap().write_all(line).unwrap();
        }
        assert_eq!(fs_err::read(scene.root.join("log")).unwrap(), b"a\nb\n");
        let err = root.append(b"link", 0o640).unwrap_err();
        assert_eq!(errno(&err), Some(Errno::LOOP.raw_os_error()), "{err}");
        assert!(scene.outside_names().is_empty());
    }

    #[test]
    fn file_type_tells_what_is_there_without_following_it() {
        let scene = Scene::new();
        fs_err::write(scene.root.join("file"), b"").unwrap();
        symlink("/nowhere", scene.root.join("link")).unwrap();
        let root = scene.open();
        let kind = |p: &[u8]| root.file_type(p).unwrap();
        assert_eq!(kind(b"file"), Some(FileType::RegularFile));
        assert_eq!(kind(b"link"), Some(FileType::Symlink));
        assert_eq!(kind(b"."), Some(FileType::Directory));
        assert_eq!(kind(b"missing"), None);
        assert_eq!(kind(b"file/below"), None, "a file is no directory");
    }

    #[test]
    fn symlink_makes_keeps_or_replaces_a_link_and_nothing_else() {
        let scene = Scene::new();
        fs_err::write(scene.root.join("file"), b"kept").unwrap();
        let root = scene.open();
        root.symlink(b"/a", b"link").unwrap();
        assert_eq!(
            fs_err::read_link(scene.root.join("link")).unwrap(),
            Path::new("/a")
        );
        let ino = |p: &str| fs_err::symlink_metadata(scene.root.join(p)).unwrap().ino();
        let before = ino("link");
        root.symlink(b"/a", b"link").unwrap();
        assert_eq!(ino("link"), before, "the same link is left alone");
        root.symlink(b"/b", b"link").unwrap();
        assert_eq!(
            fs_err::read_link(scene.root.join("link")).unwrap(),
            Path::new("/b")
        );
        let err = root.symlink(b"/c", b"file").unwrap_err();
        assert_eq!(errno(&err), Some(Errno::EXIST.raw_os_error()), "{err}");
        assert_eq!(fs_err::read(scene.root.join("file")).unwrap(), b"kept");
    }

    #[test]
    fn mknod_gives_the_node_exactly_its_mode() {
        let scene = Scene::new();
        let root = scene.open();
        let mask = rustix::process::umask(Mode::from_raw_mode(0o077));
        let made = root.mknod(b"fifo", FileType::Fifo, 0o666, 0);
        rustix::process::umask(mask);
        made.unwrap();
        let meta = fs_err::symlink_metadata(scene.root.join("fifo")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o666);
        let err = root.mknod(b"fifo", FileType::Fifo, 0o600, 0).unwrap_err();
        assert_eq!(errno(&err), Some(Errno::EXIST.raw_os_error()), "{err}");
    }

    #[test]
    fn chmod_and_meta_reach_a_node_open_only_by_path() {
        let scene = Scene::new();
        let fifo = scene.root.join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let root = scene.open();
        let fd = root.open_nofollow(b"fifo", OFlags::PATH).unwrap();
        chmod_fd(&fd, 0o644).unwrap();
        assert_eq!(fs_err::metadata(&fifo).unwrap().mode() & 0o7777, 0o644);
        let me = (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        );
        let meta = Meta {
            mode: 0o640,
            uid: me.0,
            gid: me.1,
            mtime: 1_000_000,
        };
        meta.apply(&fd).unwrap();
        let now = fs_err::symlink_metadata(&fifo).unwrap();
        assert_eq!(Meta::of(&rustix::fs::fstat(&fd).unwrap()), meta);
        assert_eq!(now.mtime(), 1_000_000);
    }

    #[test]
    fn remove_file_dir_and_tree_never_follow_a_symlink() {
        let scene = Scene::new();
        fs_err::write(scene.outside.join("keep"), b"").unwrap();
        fs_err::create_dir_all(scene.root.join("tree/a/b")).unwrap();
        fs_err::write(scene.root.join("tree/a/b/f"), b"").unwrap();
        symlink(&scene.outside, scene.root.join("tree/out")).unwrap();
        symlink(&scene.outside, scene.root.join("link")).unwrap();
        fs_err::create_dir(scene.root.join("empty")).unwrap();
        let root = scene.open();
        assert!(root.remove_file(b"link").unwrap());
        assert!(
            !root.remove_file(b"link").unwrap(),
            "nothing there any more"
        );
        root.remove_dir(b"empty").unwrap();
        root.remove_dir(b"empty").unwrap();
        let dir = root.open_dir(b".").unwrap();
        remove_tree(dir.as_fd(), b"tree").unwrap();
        assert_eq!(fs_err::read_dir(&scene.root).unwrap().count(), 0);
        assert_eq!(scene.outside_names(), ["keep"]);
    }

    #[test]
    fn copy_file_keeps_mode_and_copies_only_regular_files() {
        let scene = Scene::new();
        fs_err::write(scene.root.join("conf"), b"x=1").unwrap();
        fs_err::set_permissions(scene.root.join("conf"), PermissionsExt::from_mode(0o640)).unwrap();
        fs_err::write(scene.outside.join("secret"), b"host").unwrap();
        symlink(scene.outside.join("secret"), scene.root.join("link")).unwrap();
        let root = scene.open();
        assert!(root.copy_file(b"conf", b"conf.bak").unwrap());
        assert_eq!(fs_err::read(scene.root.join("conf.bak")).unwrap(), b"x=1");
        let mode = fs_err::metadata(scene.root.join("conf.bak"))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o7777, 0o640);
        assert!(!root.copy_file(b"link", b"link.bak").unwrap());
        assert!(!root.copy_file(b"missing", b"missing.bak").unwrap());
        assert!(!scene.root.join("link.bak").exists());
    }

    #[test]
    fn open_beneath_refuses_to_leave_the_directory() {
        let scene = Scene::new();
        fs_err::create_dir(scene.root.join("sub")).unwrap();
        fs_err::write(scene.root.join("sub/f"), b"").unwrap();
        fs_err::write(scene.outside.join("f"), b"").unwrap();
        symlink("../outside/f", scene.root.join("up")).unwrap();
        symlink("sub/f", scene.root.join("in")).unwrap();
        let dir = fs_err::File::open(&scene.root).unwrap();
        let open = |p: &str, no_symlinks| {
            open_beneath(dir.as_fd(), Path::new(p), OFlags::PATH, no_symlinks)
        };
        let inside = open("in", false).unwrap();
        assert!(close_on_exec(&inside));
        assert!(same_file(&inside, &scene.root.join("sub/f")));
        assert!(same_file(open("", false).unwrap(), &scene.root));
        let err = open("up", false).unwrap_err();
        assert_eq!(errno(&err), Some(Errno::XDEV.raw_os_error()), "{err}");
        let err = open("in", true).unwrap_err();
        assert_eq!(errno(&err), Some(Errno::LOOP.raw_os_error()), "{err}");
    }

    #[test]
    fn open_no_symlinks_refuses_any_symlink_on_the_way() {
        let scene = Scene::new();
        fs_err::create_dir_all(scene.root.join("real/dir")).unwrap();
        fs_err::write(scene.root.join("file"), b"").unwrap();
        symlink("real", scene.root.join("link")).unwrap();
        let root = scene.open();
        let dir = root
            .open_no_symlinks(b"real/dir", OFlags::PATH | OFlags::DIRECTORY)
            .unwrap();
        assert!(same_file(&dir, &scene.root.join("real/dir")));
        assert!(close_on_exec(&dir));
        let err = root
            .open_no_symlinks(b"link/dir", OFlags::PATH | OFlags::DIRECTORY)
            .unwrap_err();
        assert_eq!(errno(&err), Some(Errno::LOOP.raw_os_error()), "{err}");
        let err = root
            .open_no_symlinks(b"file", OFlags::PATH | OFlags::DIRECTORY)
            .unwrap_err();
        assert_eq!(
            errno(&err),
            Some(Errno::NOTDIR.raw_os_error()),
            "the flags are kept"
        );
    }

    #[test]
    fn file_type_reports_an_error_that_is_not_absence() {
        let scene = Scene::new();
        symlink("loop", scene.root.join("loop")).unwrap();
        let root = scene.open();
        let err = root.file_type(b"loop/x").unwrap_err();
        assert_eq!(errno(&err), Some(Errno::LOOP.raw_os_error()), "{err}");
    }

    #[test]
    fn copy_file_fails_when_the_directory_is_missing_and_keeps_the_owner() {
        let scene = Scene::new();
        let root = scene.open();
        let err = root.copy_file(b"no/such", b"no/such.bak").unwrap_err();
        assert_eq!(errno(&err), Some(Errno::NOENT.raw_os_error()), "{err}");
        // Giving a file away needs root.
        if !crate::test_skip::require_root() {
            return;
        }
        fs_err::write(scene.root.join("owned"), b"x").unwrap();
        rustix::fs::chown(
            scene.root.join("owned"),
            Some(rustix::fs::Uid::from_raw(1234)),
            Some(rustix::fs::Gid::from_raw(2345)),
        )
        .unwrap();
        assert!(root.copy_file(b"owned", b"owned.bak").unwrap());
        let meta = fs_err::metadata(scene.root.join("owned.bak")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1234, 2345));
    }

    #[test]
    fn make_dir_in_gives_an_exact_mode_and_a_close_on_exec_descriptor() {
        let scene = Scene::new();
        let dir = fs_err::File::open(&scene.root).unwrap();
        let made = make_dir_in(dir.as_fd(), b"d", 0o751).unwrap();
        assert!(close_on_exec(&made));
        assert!(same_file(&made, &scene.root.join("d")));
        let mode = fs_err::metadata(scene.root.join("d")).unwrap().mode();
        assert_eq!(mode & 0o7777, 0o751);
        let err = make_dir_in(dir.as_fd(), b"d", 0o751).unwrap_err();
        assert_eq!(errno(&err), Some(Errno::EXIST.raw_os_error()), "{err}");
    }
}
