//! A deterministic walk of a root: every entry once, in GNU tar's `--sort=name` order (each
//! directory, then its entries sorted by the bytes of their names, depth first), without following
//! symlinks and refusing to step onto another mount.
//!
//! Everything below the root is reached through directory file descriptors opened with
//! `O_NOFOLLOW`, so a symlink swapped in for a directory cannot lead the walk outside the root.

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Statx, StatxFlags};

use super::OutputError;
use crate::root::read_names;
use crate::HeldRoot;

/// One entry of the walk.
pub(super) struct Entry<'a> {
    /// The directory holding the entry and the entry's name in it; `None` for the root itself.
    pub parent: Option<(BorrowedFd<'a>, &'a CStr)>,
    /// The open directory, when the entry is one.
    pub dir: Option<BorrowedFd<'a>>,
    /// Path below the root without a leading `/`; empty for the root.
    pub rel: &'a [u8],
    pub stat: &'a Statx,
}

impl Entry<'_> {
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.stat.stx_mode.into())
    }
}

/// Calls `visit` for the root and everything below it, each directory before its contents.
pub(super) fn walk(
    held: &HeldRoot,
    visit: &mut dyn FnMut(&Entry) -> Result<(), OutputError>,
) -> Result<(), OutputError> {
    let root = held.path();
    let read_err = |source: rustix::io::Errno| OutputError::Read {
        path: root.to_path_buf(),
        source: source.into(),
    };
    let root_fd = open_held(held).map_err(read_err)?;
    let stat = statx(root_fd.as_fd(), c"", AtFlags::EMPTY_PATH).map_err(read_err)?;
    let walker = Walker {
        root,
        mount: MountId::of(&stat),
    };
    let mut rel = Vec::new();
    visit(&Entry {
        parent: None,
        dir: Some(root_fd.as_fd()),
        rel: &rel,
        stat: &stat,
    })?;
    walker.walk_dir(&root_fd, &mut rel, visit)
}

/// What identifies the root's mount: the mount id where the kernel reports it (it tells bind
/// mounts of the same filesystem apart), else the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MountId {
    Mount(u64),
    Device(u32, u32),
}

impl MountId {
    /// The mount of `name` in `dir` (of `dir` itself with `c""` and `AT_EMPTY_PATH`).
    pub(super) fn at(dir: BorrowedFd, name: &CStr, flags: AtFlags) -> rustix::io::Result<MountId> {
        Ok(MountId::of(&statx(dir, name, flags)?))
    }

    fn of(stat: &Statx) -> MountId {
        if StatxFlags::from_bits_retain(stat.stx_mask).contains(StatxFlags::MNT_ID) {
            MountId::Mount(stat.stx_mnt_id)
        } else {
            MountId::Device(stat.stx_dev_major, stat.stx_dev_minor)
        }
    }
}

/// The held root opened for reading its entries, through its descriptor (never its path).
pub(super) fn open_held(root: &HeldRoot) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        root.fd(),
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

struct Walker<'r> {
    root: &'r Path,
    mount: MountId,
}

impl Walker<'_> {
    fn path(&self, rel: &[u8]) -> PathBuf {
        self.root.join(OsStr::from_bytes(rel))
    }

    fn walk_dir(
        &self,
        dir: &OwnedFd,
        rel: &mut Vec<u8>,
        visit: &mut dyn FnMut(&Entry) -> Result<(), OutputError>,
    ) -> Result<(), OutputError> {
        let names = read_names(dir.as_fd()).map_err(|source| OutputError::Read {
            path: self.path(rel),
            source: source.into(),
        })?;
        let base_len = rel.len();
        for name in names {
            rel.truncate(base_len);
            if base_len > 0 {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.to_bytes());
            let read_err = |source: rustix::io::Errno| OutputError::Read {
                path: self.path(rel),
                source: source.into(),
            };
            let stat = statx(dir.as_fd(), &name, AtFlags::SYMLINK_NOFOLLOW).map_err(read_err)?;
            if MountId::of(&stat) != self.mount {
                return Err(OutputError::MountPoint {
                    path: self.path(rel),
                });
            }
            if FileType::from_raw_mode(stat.stx_mode.into()) != FileType::Directory {
                visit(&Entry {
                    parent: Some((dir.as_fd(), &name)),
                    dir: None,
                    rel,
                    stat: &stat,
                })?;
                continue;
            }
            let sub = rustix::fs::openat(
                dir.as_fd(),
                &name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(read_err)?;
            let opened = statx(sub.as_fd(), c"", AtFlags::EMPTY_PATH).map_err(read_err)?;
            if opened.stx_ino != stat.stx_ino || MountId::of(&opened) != self.mount {
                // Replaced or mounted over between the stat and the open.
                return Err(OutputError::MountPoint {
                    path: self.path(rel),
                });
            }
            visit(&Entry {
                parent: Some((dir.as_fd(), &name)),
                dir: Some(sub.as_fd()),
                rel,
                stat: &stat,
            })?;
            self.walk_dir(&sub, rel, visit)?;
        }
        rel.truncate(base_len);
        Ok(())
    }
}

fn statx(dir: BorrowedFd, name: &CStr, flags: AtFlags) -> rustix::io::Result<Statx> {
    rustix::fs::statx(
        dir,
        name,
        flags | AtFlags::NO_AUTOMOUNT,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )
}
