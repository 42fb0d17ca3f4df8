//! Private mount namespaces and mounts reached by identity: takes a closure (or a mount point);
//! gives the closure run on a thread whose mounts only it and its children see, and unmounting
//! through a descriptor of the mount itself, never through a path.
//!
//! A guard's `Drop` covers errors, panics and Ctrl-C, but not SIGKILL or OOM. Mounts made in a
//! private mount namespace vanish with the last process in it, whatever ends it, so the host
//! never keeps a /proc or /dev/pts under a build directory.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, OFlags, StatxFlags};

use super::StageError;

/// Runs `work` on a thread of its own that first enters a new mount namespace in which every
/// mount is private (nothing it mounts propagates to the host, nothing the host mounts later
/// appears). Commands that thread starts inherit the namespace; the kernel removes the
/// namespace and its mounts when the thread and those commands have ended.
pub fn in_private_mounts<T: Send>(
    work: impl FnOnce() -> Result<T, StageError> + Send,
) -> Result<T, StageError> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("private-mounts".to_owned())
            .spawn_scoped(scope, || {
                enter_private_namespace()?;
                work()
            })
            .map_err(|source| StageError::Namespace {
                step: "start a thread for",
                source,
            })?;
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// unshare(CLONE_NEWNS) for the calling thread, then `/` and everything below it private.
fn enter_private_namespace() -> Result<(), StageError> {
    // SAFETY: FILES is not among the flags, so no descriptor table is unshared.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }.map_err(
        |source| StageError::Namespace {
            step: "unshare",
            source: source.into(),
        },
    )?;
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC,
    )
    .map_err(|source| StageError::Namespace {
        step: "make / private in",
        source: source.into(),
    })
}

/// The kernel's id of the mount `fd` is on (statx `STATX_MNT_ID`, Linux 5.8).
pub(crate) fn mount_id(fd: BorrowedFd) -> std::io::Result<u64> {
    let stat = rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID)?;
    if StatxFlags::from_bits_retain(stat.stx_mask).contains(StatxFlags::MNT_ID) {
        Ok(stat.stx_mnt_id)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the kernel does not report mount ids (Linux 5.8 or later is needed)",
        ))
    }
}

/// The magic link of a descriptor in this thread's /proc (one definition, in the root layer).
pub(crate) use crate::root::proc_fd_path as fd_path;

/// Detaches the mount whose root `fd` holds. Lazy, because the descriptor itself keeps the mount
/// busy; once detached nothing can reach it by path, and it is freed when the last user closes.
pub(crate) fn detach(fd: &OwnedFd) -> rustix::io::Result<()> {
    rustix::mount::unmount(
        fd_path(fd.as_fd()).as_path(),
        rustix::mount::UnmountFlags::DETACH,
    )
}

/// Opens the root of the mount with id `id` at `rel` below `root` (an `O_PATH` handle), never
/// following a symlink on the way; `None` when what is there now is another mount. The mount
/// may be a file: on a `nodev` filesystem device nodes are bound over the root's own.
pub(crate) fn open_mount(
    root: BorrowedFd,
    rel: &Path,
    id: u64,
) -> std::io::Result<Option<OwnedFd>> {
    let fd = crate::root::open_beneath(root, rel, OFlags::PATH | OFlags::NOFOLLOW, true)?;
    Ok((mount_id(fd.as_fd())? == id).then_some(fd))
}

/// One line of mountinfo: the mount's id and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    pub id: u64,
    pub point: PathBuf,
}

/// The mounts this thread's namespace has strictly under `root` (canonical), in mount order.
pub(crate) fn mount_entries_under(root: &Path) -> Vec<MountEntry> {
    // thread-self: a thread in a private namespace must see its own mounts, not the process's.
    let Ok(info) = fs_err::read_to_string("/proc/thread-self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let id = fields.next()?.parse().ok()?;
            let point = super::chroot::unescape_mountinfo(fields.nth(3)?);
            Some(MountEntry { id, point })
        })
        .filter(|entry| entry.point != root && entry.point.starts_with(root))
        .collect()
}
