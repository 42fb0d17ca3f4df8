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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// A directory of its own under a fresh temp dir (mode 0755, root's): the temp dir's own
    /// ancestors (`/tmp`, sticky, and `/`) pass the check.
    fn dir_with(mode: u32, owner: Option<(u32, u32)>) -> (tempfile::TempDir, PathBuf) {
        let base = tempfile::tempdir().expect("temp dir");
        fs_err::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let dir = base.path().join("d");
        fs_err::create_dir(&dir).expect("mkdir");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown");
        }
        fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
        (base, dir)
    }

    /// Why `check_ancestors` refuses `dir`, or `None` when it accepts it.
    fn refusal(dir: &Path) -> Option<String> {
        match check_ancestors(Path::new("/srv/t"), dir) {
            Ok(()) => None,
            Err(TargetError::UnsafeParent { dir: at, why, .. }) => {
                Some(format!("{}: {why}", at.display()))
            }
            Err(e) => panic!("not a refusal: {e}"),
        }
    }

    #[test]
    fn a_parent_is_judged_by_its_owner_mode_group_and_sticky_bit() {
        if !crate::test_skip::require_root() {
            return;
        }
        // Mode, owner (uid, gid) if not root's, and the refusal expected.
        type Case = (u32, Option<(u32, u32)>, Option<&'static str>);
        let cases: [Case; 9] = [
            (0o755, None, None),
            (0o755, Some((65534, 0)), Some("owned by uid 65534")),
            (0o777, None, Some("writable by every user")),
            (0o1777, None, None),
            (0o775, Some((0, 7)), Some("writable by group 7")),
            (0o1775, Some((0, 7)), None),
            (0o775, None, None),
            (0o755, Some((0, 7)), None),
            (0o757, Some((0, 7)), Some("writable by every user")),
        ];
        for (mode, owner, expected) in cases {
            let (_base, dir) = dir_with(mode, owner);
            let got = refusal(&dir.join("target"));
            let expected = expected.map(|why| format!("{}: {why}", dir.display()));
            assert_eq!(got, expected, "mode {mode:o}, owner {owner:?}");
        }
    }

    #[test]
    fn missing_ancestors_are_passed_over_and_other_failures_are_errors() {
        if !crate::test_skip::require_root() {
            return;
        }
        let (_base, dir) = dir_with(0o755, None);
        assert_eq!(refusal(&dir.join("not/yet/made")), None);
        // Under a regular file the lookup fails with ENOTDIR: not a missing ancestor.
        fs_err::write(dir.join("file"), "x").expect("write");
        let err = check_ancestors(Path::new("/srv/t"), &dir.join("file/below")).unwrap_err();
        assert!(
            matches!(&err, TargetError::Inspect { path, .. } if path == &dir.join("file/below")),
            "{err}"
        );
    }

    #[test]
    fn a_symlink_is_judged_by_its_owner_and_where_it_leads() {
        if !crate::test_skip::require_root() {
            return;
        }
        let (_base, dir) = dir_with(0o755, None);
        let theirs = dir.join("theirs");
        fs_err::create_dir(&theirs).expect("mkdir");
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
        let ours = dir.join("ours");
        fs_err::create_dir(&ours).expect("mkdir");
        // A symlink's mode is 0777; root's own is fine, another user's is not.
        std::os::unix::fs::symlink(&ours, dir.join("link")).expect("symlink");
        assert_eq!(refusal(&dir.join("link/target")), None);
        check_parents(Path::new("/srv/t"), &dir.join("link/target")).expect("root's link");
        std::os::unix::fs::symlink(&ours, dir.join("their-link")).expect("symlink");
        std::os::unix::fs::lchown(dir.join("their-link"), Some(65534), Some(65534))
            .expect("lchown");
        assert_eq!(
            refusal(&dir.join("their-link/target")),
            Some(format!(
                "{}: owned by uid 65534",
                dir.join("their-link").display()
            ))
        );
        // As written the path passes; where it leads does not.
        std::os::unix::fs::symlink(&theirs, dir.join("to-theirs")).expect("symlink");
        assert_eq!(refusal(&dir.join("to-theirs/target")), None);
        let err = check_parents(Path::new("/srv/t"), &dir.join("to-theirs/target")).unwrap_err();
        assert!(
            matches!(&err, TargetError::UnsafeParent { dir: at, .. } if at == &theirs),
            "{err}"
        );
    }

    /// Runs `f` on a thread of its own whose effective uid is `uid` (the raw syscall changes
    /// that thread only, unlike libc's setresuid); the thread's credentials end with it.
    fn as_uid<T: Send>(uid: u32, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setresuid takes three integers and touches no memory of ours.
                let rc =
                    unsafe { libc::syscall(libc::SYS_setresuid, -1i64, i64::from(uid), -1i64) };
                assert_eq!(rc, 0, "setresuid: {}", std::io::Error::last_os_error());
                assert_eq!(rustix::process::geteuid().as_raw(), uid);
                f()
            })
            .join()
            .expect("the thread")
        })
    }

    #[test]
    fn a_parent_of_our_own_uid_is_trusted_as_roots_is() {
        if !crate::test_skip::require_root() {
            return;
        }
        let (_base, dir) = dir_with(0o755, Some((1000, 1000)));
        let below = dir.join("target");
        assert_eq!(
            refusal(&below),
            Some(format!("{}: owned by uid 1000", dir.display()))
        );
        assert_eq!(as_uid(1000, || refusal(&below)), None, "uid 1000's own");
        assert_eq!(
            as_uid(1001, || refusal(&below)),
            Some(format!("{}: owned by uid 1000", dir.display()))
        );
    }

    /// Gives `dir` a POSIX access ACL of the named `entries` (tag, permissions, id) besides
    /// the owner's, group's and other's, with `mask` if given, as setfacl would.
    fn set_acl(dir: &Path, entries: &[(u16, u16, u32)], mask: Option<u16>) {
        const ANY: u32 = u32::MAX;
        let mut all = vec![(0x01, 7, ANY)];
        all.extend(entries.iter().filter(|e| e.0 == 0x02));
        all.push((0x04, 5, ANY));
        all.extend(entries.iter().filter(|e| e.0 == 0x08));
        if let Some(mask) = mask {
            all.push((0x10, mask, ANY));
        }
        all.push((0x20, 5, ANY));
        let mut xattr = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in all {
            xattr.extend_from_slice(&tag.to_le_bytes());
            xattr.extend_from_slice(&perm.to_le_bytes());
            xattr.extend_from_slice(&id.to_le_bytes());
        }
        rustix::fs::setxattr(
            dir,
            "system.posix_acl_access",
            &xattr,
            rustix::fs::XattrFlags::empty(),
        )
        .expect("set the ACL");
    }

    #[test]
    fn an_acl_entry_is_a_grant_when_it_lets_another_user_or_group_write() {
        if !crate::test_skip::require_root() {
            return;
        }
        const USER: u16 = 0x02;
        const GROUP: u16 = 0x08;
        let by_uid = |id: u32| Some(format!("writable by uid {id} through an ACL"));
        let by_gid = |id: u32| Some(format!("writable by group {id} through an ACL"));
        // Named entries (tag, permissions, id), mask, our uid, and the grant expected.
        type Case = (&'static [(u16, u16, u32)], Option<u16>, u32, Option<String>);
        let cases: [Case; 12] = [
            (&[], None, 0, None),
            (&[(USER, 7, 65534)], Some(7), 0, by_uid(65534)),
            (&[(USER, 2, 65534)], Some(7), 0, by_uid(65534)),
            (&[(USER, 5, 65534)], Some(7), 0, None),
            (&[(USER, 7, 65534)], Some(5), 0, None),
            (&[(USER, 7, 0)], Some(7), 0, None),
            (&[(USER, 7, 1000)], Some(7), 1000, None),
            (&[(USER, 7, 1000)], Some(7), 0, by_uid(1000)),
            (&[(GROUP, 7, 7)], Some(7), 0, by_gid(7)),
            (&[(GROUP, 5, 7)], Some(7), 0, None),
            (&[(GROUP, 7, 0)], Some(7), 0, None),
            (&[(USER, 5, 65534), (GROUP, 7, 7)], Some(7), 0, by_gid(7)),
        ];
        for (entries, mask, me, expected) in cases {
            let (_base, dir) = dir_with(0o755, None);
            if !entries.is_empty() {
                set_acl(&dir, entries, mask);
            }
            assert_eq!(
                acl_write_grant(&dir, me),
                expected,
                "{entries:?} mask {mask:?} as uid {me}"
            );
        }
        // Through the whole check: a group-0 directory whose ACL lets uid 65534 write.
        let (_base, dir) = dir_with(0o755, None);
        set_acl(&dir, &[(USER, 7, 65534)], Some(7));
        assert_eq!(
            refusal(&dir.join("target")),
            Some(format!(
                "{}: writable by uid 65534 through an ACL",
                dir.display()
            ))
        );
    }

    #[test]
    fn the_lock_is_exclusive_and_its_file_goes_with_it() {
        let (_base, dir) = dir_with(0o755, None);
        let target = dir.join("t");
        let lock_path = dir.join(".t.lock");
        let lock = TargetLock::acquire(&target, &dir, "t").expect("the first lock");
        assert!(lock_path.is_file());
        let err = TargetLock::acquire(&target, &dir, "t").unwrap_err();
        assert!(matches!(err, TargetError::Busy { .. }), "{err}");
        drop(lock);
        assert!(
            !lock_path.exists(),
            "the lock file is removed with the lock"
        );
        drop(TargetLock::acquire(&target, &dir, "t").expect("free again"));
    }

    #[test]
    fn a_symlink_at_the_lock_name_is_not_followed() {
        let (_base, dir) = dir_with(0o755, None);
        std::os::unix::fs::symlink(dir.join("elsewhere"), dir.join(".t.lock")).expect("symlink");
        let err = TargetLock::acquire(&dir.join("t"), &dir, "t").unwrap_err();
        assert!(matches!(err, TargetError::Lock { .. }), "{err}");
        assert!(
            !dir.join("elsewhere").exists(),
            "created through the symlink"
        );
    }

    #[test]
    fn a_lock_on_a_file_no_longer_at_the_lock_path_counts_as_held() {
        let (_base, dir) = dir_with(0o755, None);
        let target = dir.join("t");
        let lock_path = dir.join(".t.lock");
        // Another build letting go (and the next taking over) swaps the file at the lock path
        // again and again; a lock taken on a file that is gone by the time it is checked must be
        // reported as held by someone else, never as ours.
        /// Stops the swapper however the loop below ends (a panic in it included).
        struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (mut ours, mut busy) = (0, 0);
        std::thread::scope(|s| {
            let _stop = Stop(&stop);
            s.spawn(|| {
                let fresh = dir.join("fresh");
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    fs_err::write(&fresh, "").expect("write");
                    fs_err::rename(&fresh, &lock_path).expect("rename");
                }
            });
            while busy == 0 && ours < 100_000 {
                match TargetLock::acquire(&target, &dir, "t") {
                    Ok(lock) => {
                        ours += 1;
                        // Dropping removes the path; the swapper puts a new file back.
                        drop(lock);
                    }
                    Err(TargetError::Busy { .. }) => busy += 1,
                    Err(e) => panic!("{e}"),
                }
            }
        });
        assert_eq!(busy, 1, "no swap seen as busy in {ours} locks taken");
    }

    #[test]
    fn a_held_root_is_the_directory_opened_until_it_is_replaced() {
        let (_base, dir) = dir_with(0o755, None);
        let root = dir.join("root");
        fs_err::create_dir(&root).expect("mkdir");
        let held = HeldRoot::open(&root).expect("open");
        assert_eq!(held.path(), root);
        held.verify().expect("still the same directory");
        let opened = rustix::fs::fstat(held.fd()).expect("fstat");
        let meta = fs_err::metadata(&root).expect("stat");
        assert_eq!((opened.st_dev, opened.st_ino), (meta.dev(), meta.ino()));
        let flags = rustix::io::fcntl_getfd(held.fd()).expect("fcntl");
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));

        fs_err::rename(&root, dir.join("moved")).expect("move away");
        fs_err::create_dir(&root).expect("put another in its place");
        let err = held.verify().unwrap_err();
        assert!(matches!(err, TargetError::Replaced { .. }), "{err}");
        fs_err::remove_dir(&root).expect("rmdir");
        std::os::unix::fs::symlink(dir.join("moved"), &root).expect("symlink");
        let err = held.verify().unwrap_err();
        assert!(matches!(err, TargetError::Replaced { .. }), "{err}");
    }

    #[test]
    fn only_a_directory_itself_is_held_never_a_file_or_a_symlink() {
        let (_base, dir) = dir_with(0o755, None);
        fs_err::create_dir(dir.join("real")).expect("mkdir");
        fs_err::write(dir.join("file"), "x").expect("write");
        std::os::unix::fs::symlink(dir.join("real"), dir.join("link")).expect("symlink");
        for name in ["file", "link"] {
            let err = HeldRoot::open(&dir.join(name)).unwrap_err();
            assert!(matches!(err, TargetError::Inspect { .. }), "{name}: {err}");
        }
    }

    #[test]
    fn a_fifo_at_the_lock_name_does_not_hang_the_build() {
        let (base, dir) = dir_with(0o755, None);
        crate::sys::mkfifo(&dir.join(".t.lock"));
        let (tx, rx) = std::sync::mpsc::channel();
        let at = dir.clone();
        std::thread::spawn(move || {
            let _ = tx.send(TargetLock::acquire(&at.join("t"), &at, "t").map(drop));
        });
        // A bound no working open comes near; an open that blocks on the FIFO never returns.
        let returned = rx.recv_timeout(std::time::Duration::from_secs(20));
        assert!(returned.is_ok(), "acquire blocked on a FIFO");
        drop(base);
    }

    #[test]
    fn the_lock_is_not_inherited_by_commands() {
        let (_base, dir) = dir_with(0o755, None);
        let lock = TargetLock::acquire(&dir.join("t"), &dir, "t").expect("lock");
        // A daemon a maintainer script leaves running would otherwise hold TARGET's lock.
        let flags = rustix::io::fcntl_getfd(&lock.file).expect("fcntl");
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
    }
}
