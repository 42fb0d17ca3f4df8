//! Guards around TARGET: takes the TARGET path and the build directory beside it; gives a lock
//! that lets one build at a time work on a TARGET, a refusal of a parent directory that another
//! user could write to, and a check that the build directory is still the one created.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, Mode, OFlags};

/// Why TARGET cannot be worked on.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "another build of {target} is running (it holds the lock {lock}); wait for it to end or \
         choose another TARGET"
    )]
    Busy { target: PathBuf, lock: PathBuf },
    #[error("cannot take the lock {lock} of TARGET")]
    Lock {
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refusing TARGET {target}: {dir} is {why}, so another user could swap the build \
         directory and run code as root; build under a directory only root can write to"
    )]
    UnsafeParent {
        target: PathBuf,
        dir: PathBuf,
        why: String,
    },
    #[error("cannot inspect {path}")]
    Inspect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the build directory {path} was replaced during the build (it is no longer the directory \
         this build created); stopping without touching it"
    )]
    Replaced { path: PathBuf },
}

/// An exclusive lock on TARGET, held until dropped: `.NAME.lock` beside TARGET, locked with
/// flock(2) so the kernel releases it when the build ends, however it ends. The file is removed
/// when the lock is dropped (a SIGKILLed build leaves it, unlocked and harmless).
#[derive(Debug)]
pub(crate) struct TargetLock {
    path: PathBuf,
    file: OwnedFd,
}

impl TargetLock {
    /// Takes the lock of `target` (whose parent exists), or fails at once when another build
    /// holds it.
    pub(crate) fn acquire(target: &Path, parent: &Path, name: &str) -> Result<Self, TargetError> {
        let lock = parent.join(format!(".{name}.lock"));
        let lock_error = |source| TargetError::Lock {
            lock: lock.clone(),
            source,
        };
        let busy = || TargetError::Busy {
            target: target.to_path_buf(),
            lock: lock.clone(),
        };
        let file = rustix::fs::open(
            &lock,
            // NONBLOCK: a FIFO planted at the name must not hang the build.
            OFlags::RDONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| lock_error(e.into()))?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(busy()),
            Err(e) => return Err(lock_error(e.into())),
        }
        // The holder before us removes the file as it lets go: a lock on a file no longer at
        // the path locks nothing, so it counts as held.
        let held = rustix::fs::fstat(&file).map_err(|e| lock_error(e.into()))?;
        match fs_err::symlink_metadata(&lock) {
            Ok(now) if now.dev() == held.st_dev && now.ino() == held.st_ino => {
                Ok(TargetLock { path: lock, file })
            }
            _ => Err(busy()),
        }
    }
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        // Removed while still locked, so no other build can hold a lock on the removed file.
        let _ = fs_err::remove_file(&self.path);
        let _ = rustix::fs::flock(&self.file, FlockOperation::Unlock);
    }
}

/// Refuses `dir` and each of its ancestors when a user other than root (and us) owns it or can
/// write to it without the sticky bit, by its mode or by an ACL entry: such a user could rename
/// the build directory away and put one of their own in its place between two stages.
///
/// Ancestors that do not exist yet are passed over (so this can run before they are made). A
/// symlink on the way is judged by its owner (nobody can change a symlink, only replace it
/// through its directory, which is checked too), and the directories it leads through are
/// checked as well.
pub(crate) fn check_parents(target: &Path, dir: &Path) -> Result<(), TargetError> {
    let absolute = std::path::absolute(dir).map_err(|source| TargetError::Inspect {
        path: dir.to_path_buf(),
        source,
    })?;
    check_ancestors(target, &absolute)?;
    let Some(existing) = absolute.ancestors().find(|a| a.symlink_metadata().is_ok()) else {
        return Ok(());
    };
    let resolved = fs_err::canonicalize(existing).map_err(|source| TargetError::Inspect {
        path: existing.to_path_buf(),
        source,
    })?;
    if resolved != existing {
        check_ancestors(target, &resolved)?;
    }
    Ok(())
}

/// The check of [`check_parents`] on the ancestors of `dir` as written (no symlink followed).
fn check_ancestors(target: &Path, dir: &Path) -> Result<(), TargetError> {
    let me = rustix::process::geteuid().as_raw();
    // In a rootless build's user namespace the host's root shows as the overflow id (nobody
    // else does: every other id is either ours, mapped, or equally foreign to us).
    let host_root = if crate::userns::inside() {
        crate::userns::overflow_uid()
    } else {
        0
    };
    let trusted = |uid: u32| uid == 0 || uid == me || uid == host_root;
    for ancestor in dir.ancestors() {
        let meta = match fs_err::symlink_metadata(ancestor) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(TargetError::Inspect {
                    path: ancestor.to_path_buf(),
                    source,
                })
            }
        };
        let mode = meta.mode();
        let sticky = mode & 0o1000 != 0;
        let why = if !trusted(meta.uid()) {
            Some(format!("owned by uid {}", meta.uid()))
        } else if meta.file_type().is_symlink() {
            None
        } else if mode & 0o002 != 0 && !sticky {
            Some("writable by every user".to_owned())
        } else if mode & 0o020 != 0 && meta.gid() != 0 && meta.gid() != host_root && !sticky {
            Some(format!("writable by group {}", meta.gid()))
        } else if sticky {
            None
        } else {
            acl_write_grant(ancestor, me)
        };
        if let Some(why) = why {
            return Err(TargetError::UnsafeParent {
                target: target.to_path_buf(),
                dir: ancestor.to_path_buf(),
                why,
            });
        }
    }
    Ok(())
}

/// A named user (other than root and `me`) or a named non-root group that the directory's POSIX
/// access ACL lets write, within the ACL's mask; `None` when there is no such entry (or no ACL).
fn acl_write_grant(dir: &Path, me: u32) -> Option<String> {
    // Linux's xattr form of an ACL: a 4-byte version (2), then entries of tag (u16),
    // permissions (u16) and id (u32), little-endian.
    const USER: u16 = 0x02;
    const GROUP: u16 = 0x08;
    const MASK: u16 = 0x10;
    const WRITE: u16 = 0x02;
    let mut buf = [0u8; 4096];
    let len = rustix::fs::lgetxattr(dir, "system.posix_acl_access", &mut buf).ok()?;
    let entries: Vec<(u16, u16, u32)> = buf[..len]
        .get(4..)?
        .chunks_exact(8)
        .map(|e| {
            (
                u16::from_le_bytes([e[0], e[1]]),
                u16::from_le_bytes([e[2], e[3]]),
                u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            )
        })
        .collect();
    let mask_allows_write = entries
        .iter()
        .find(|(tag, _, _)| *tag == MASK)
        .is_none_or(|(_, perm, _)| perm & WRITE != 0);
    if !mask_allows_write {
        return None;
    }
    entries.iter().find_map(|&(tag, perm, id)| match tag {
        USER if perm & WRITE != 0 && id != 0 && id != me => {
            Some(format!("writable by uid {id} through an ACL"))
        }
        GROUP if perm & WRITE != 0 && id != 0 => {
            Some(format!("writable by group {id} through an ACL"))
        }
        _ => None,
    })
}

/// A root directory held by an `O_PATH` descriptor opened once: every stage reaches the root
/// through this descriptor (or a duplicate of it), never by looking its path up again, so
/// swapping the directory at that path between stages changes nothing they touch. The path is
/// kept for messages and for the check, before each stage, that it still names this directory.
#[derive(Debug)]
pub struct HeldRoot {
    path: PathBuf,
    fd: OwnedFd,
}

impl HeldRoot {
    /// Holds the directory at `path` (never through a symlink at its last component).
    pub fn open(path: &Path) -> Result<Self, TargetError> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| TargetError::Inspect {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        Ok(HeldRoot {
            path: path.to_path_buf(),
            fd,
        })
    }

    /// The path the root was opened at, for messages only.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor every stage reaches the root through.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Fails unless the path still names the directory created (same device and inode, never
    /// through a symlink).
    pub(crate) fn verify(&self) -> Result<(), TargetError> {
        let held = rustix::fs::fstat(self.fd.as_fd()).map_err(|e| TargetError::Inspect {
            path: self.path.clone(),
            source: e.into(),
        })?;
        match fs_err::symlink_metadata(&self.path) {
            Ok(now) if now.is_dir() && now.dev() == held.st_dev && now.ino() == held.st_ino => {
                Ok(())
            }
            _ => Err(TargetError::Replaced {
                path: self.path.clone(),
            }),
        }
    }
}
