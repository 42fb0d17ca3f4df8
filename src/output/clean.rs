//! Makes a finished root deterministic: removes what records the build itself (caches, logs,
//! apt lists, backups, leftovers in /tmp and /run), empties the machine id, then clamps every
//! mtime to SOURCE_DATE_EPOCH.
//!
//! Every path is reached from the root through `O_NOFOLLOW` directory descriptors: a symlink in
//! the root (Debian's var/run -> /run, or anything hostile) is never followed, so nothing outside
//! the root is removed, truncated or touched. A mount found inside the root is refused.

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags, Timespec, Timestamps};

use super::walk::{self, MountId};
use super::OutputError;
use crate::root::read_names;
use crate::HeldRoot;

/// Logs the installation writes; removed outright, as mmdebstrap does.
const BUILD_LOGS: &[&str] = &[
    crate::stage::LOG_PATH,
    "var/log/dpkg.log",
    "var/log/alternatives.log",
    "var/log/apt/history.log",
    "var/log/apt/term.log",
    "var/log/apt/eipp.log.xz",
];

/// Which names in a directory go.
type NameFilter = fn(&[u8]) -> bool;

/// Directories whose matching entries are removed (recursively when they are directories).
const VOLATILE: &[(&str, NameFilter)] = &[
    // apt-get clean: the binary caches, downloaded .debs and partial downloads.
    ("var/cache/apt", |n| n.ends_with(b".bin")),
    ("var/cache/apt/archives", |n| n.ends_with(b".deb")),
    ("var/cache/apt/archives/partial", |_| true),
    // The package lists of the build's mirror; apt's lock and partial/ stay, as apt made them.
    ("var/lib/apt/lists", |n| n != b"lock" && n != b"partial"),
    ("var/lib/apt/lists/partial", |_| true),
    // Backups written on every update of debconf's and dpkg's databases.
    ("var/cache/debconf", |n| n.ends_with(b"-old")),
    ("var/lib/dpkg", |n| n.ends_with(b"-old")),
    // ldconfig's cache of file times.
    ("var/cache/ldconfig", |n| n == b"aux-cache"),
    // Leftovers of the maintainer scripts; run/lock stays (var/lock points at it).
    ("tmp", |_| true),
    ("run", |n| n != b"lock"),
];

pub(super) fn remove_volatile_files(root: &HeldRoot) -> Result<(), OutputError> {
    let cleaner = Cleaner::open(root)?;
    for (dir, matches) in VOLATILE {
        cleaner.remove_matching(dir, *matches)?;
    }
    for log in BUILD_LOGS {
        cleaner.remove_file(log)?;
    }
    // Other logs (wtmp, btmp, lastlog, faillog...) are expected to exist with their modes and
    // owners: keep them, empty.
    cleaner.truncate_all("var/log")?;
    // dbus keeps its own id unless it is the usual symlink to /etc/machine-id.
    cleaner.remove_file("var/lib/dbus/machine-id")?;
    // machine-id(5): an image should carry an empty one, filled in at first boot.
    cleaner.truncate("etc/machine-id")
}

/// Sets every mtime newer than `source_date_epoch` to it, symlinks included (never followed).
pub(super) fn clamp_mtimes(root: &HeldRoot, source_date_epoch: i64) -> Result<(), OutputError> {
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: source_date_epoch,
            tv_nsec: 0,
        },
    };
    walk::walk(root, &mut |entry| {
        let mtime = &entry.stat.stx_mtime;
        if (mtime.tv_sec, mtime.tv_nsec) <= (source_date_epoch, 0) {
            return Ok(());
        }
        // Changing a time does not change the parent directory's mtime, so order is free.
        let result = match (entry.dir, entry.parent) {
            (None, Some((parent, name))) => {
                rustix::fs::utimensat(parent, name, &times, AtFlags::SYMLINK_NOFOLLOW)
            }
            (dir, _) => rustix::fs::futimens(
                dir.expect("the walk opens every directory and gives every other entry a parent"),
                &times,
            ),
        };
        result.map_err(|source| OutputError::Clamp {
            path: root.path().join(OsStr::from_bytes(entry.rel)),
            source: source.into(),
        })
    })
}

struct Cleaner<'r> {
    root: &'r Path,
    root_fd: OwnedFd,
    mount: MountId,
}

impl<'r> Cleaner<'r> {
    fn open(held: &'r HeldRoot) -> Result<Cleaner<'r>, OutputError> {
        let root = held.path();
        let read_err = |source: rustix::io::Errno| OutputError::Read {
            path: root.to_path_buf(),
            source: source.into(),
        };
        let root_fd = walk::open_held(held).map_err(read_err)?;
        let mount = MountId::at(root_fd.as_fd(), c"", AtFlags::EMPTY_PATH).map_err(read_err)?;
        Ok(Cleaner {
            root,
            root_fd,
            mount,
        })
    }

    fn path(&self, rel: &[u8]) -> PathBuf {
        self.root.join(OsStr::from_bytes(rel))
    }

    /// Opens the directory at `rel` without following any symlink on the way; `None` when a
    /// component is missing or is not a directory.
    fn open_dir(&self, rel: &str) -> Result<Option<OwnedFd>, OutputError> {
        let mut fd: Option<OwnedFd> = None;
        let mut walked = PathBuf::new();
        for component in rel.split('/') {
            walked.push(component);
            let parent = fd.as_ref().map_or(self.root_fd.as_fd(), |f| f.as_fd());
            let opened = rustix::fs::openat(
                parent,
                component,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            );
            let next = match opened {
                Ok(next) => next,
                Err(
                    rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP,
                ) => return Ok(None),
                Err(source) => {
                    return Err(OutputError::Read {
                        path: self.root.join(&walked),
                        source: source.into(),
                    })
                }
            };
            self.check_mount(
                next.as_fd(),
                c"",
                AtFlags::EMPTY_PATH,
                walked.as_os_str().as_bytes(),
            )?;
            fd = Some(next);
        }
        Ok(fd)
    }

    fn check_mount(
        &self,
        dir: BorrowedFd,
        name: &CStr,
        flags: AtFlags,
        rel: &[u8],
    ) -> Result<(), OutputError> {
        let id = MountId::at(dir, name, flags).map_err(|source| OutputError::Read {
            path: self.path(rel),
            source: source.into(),
        })?;
        if id != self.mount {
            return Err(OutputError::MountPoint {
                path: self.path(rel),
            });
        }
        Ok(())
    }

    /// Removes the entries of directory `rel` whose names `matches` accepts.
    fn remove_matching(&self, rel: &str, matches: NameFilter) -> Result<(), OutputError> {
        let Some(dir) = self.open_dir(rel)? else {
            return Ok(());
        };
        let names = read_names(dir.as_fd()).map_err(|source| OutputError::Read {
            path: self.root.join(rel),
            source: source.into(),
        })?;
        for name in names.iter().filter(|n| matches(n.to_bytes())) {
            let mut child = rel.as_bytes().to_vec();
            child.push(b'/');
            child.extend_from_slice(name.to_bytes());
            self.remove_entry(dir.as_fd(), name, &mut child)?;
        }
        Ok(())
    }

    /// Removes `name` in `dir`, a whole tree if it is a directory, staying on the root's mount.
    fn remove_entry(
        &self,
        dir: BorrowedFd,
        name: &CStr,
        rel: &mut Vec<u8>,
    ) -> Result<(), OutputError> {
        self.check_mount(dir, name, AtFlags::SYMLINK_NOFOLLOW, rel)?;
        let remove_err = |source: rustix::io::Errno, rel: &[u8]| OutputError::Remove {
            path: self.path(rel),
            source: source.into(),
        };
        let stat = rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::TYPE)
            .map_err(|e| remove_err(e, rel))?;
        if FileType::from_raw_mode(stat.stx_mode.into()) != FileType::Directory {
            return rustix::fs::unlinkat(dir, name, AtFlags::empty())
                .map_err(|e| remove_err(e, rel));
        }
        let sub = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| remove_err(e, rel))?;
        let names = read_names(sub.as_fd()).map_err(|e| remove_err(e, rel))?;
        let base = rel.len();
        for child in &names {
            rel.push(b'/');
            rel.extend_from_slice(child.to_bytes());
            self.remove_entry(sub.as_fd(), child, rel)?;
            rel.truncate(base);
        }
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(|e| remove_err(e, rel))
    }

    /// Removes the file at `rel` unless it is missing or a symlink.
    fn remove_file(&self, rel: &str) -> Result<(), OutputError> {
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let Some(dir) = self.open_dir(parent)? else {
            return Ok(());
        };
        let name = std::ffi::CString::new(name).expect("constant paths have no NUL");
        match file_type(dir.as_fd(), &name) {
            Some(FileType::Symlink | FileType::Directory) | None => Ok(()),
            Some(_) => self.remove_entry(dir.as_fd(), &name, &mut rel.as_bytes().to_vec()),
        }
    }

    /// Empties the regular file at `rel`, keeping its inode, mode and owner.
    fn truncate(&self, rel: &str) -> Result<(), OutputError> {
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let Some(dir) = self.open_dir(parent)? else {
            return Ok(());
        };
        let name = std::ffi::CString::new(name).expect("constant paths have no NUL");
        self.truncate_in(dir.as_fd(), &name, rel.as_bytes())
    }

    fn truncate_in(&self, dir: BorrowedFd, name: &CStr, rel: &[u8]) -> Result<(), OutputError> {
        let stat = rustix::fs::statx(
            dir,
            name,
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::TYPE | StatxFlags::SIZE,
        );
        let Ok(stat) = stat else {
            return Ok(());
        };
        if FileType::from_raw_mode(stat.stx_mode.into()) != FileType::RegularFile
            || stat.stx_size == 0
        {
            return Ok(());
        }
        self.check_mount(dir, name, AtFlags::SYMLINK_NOFOLLOW, rel)?;
        rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(drop)
        .map_err(|source| OutputError::Truncate {
            path: self.path(rel),
            source: source.into(),
        })
    }

    /// Empties every regular file below the directory `rel`.
    fn truncate_all(&self, rel: &str) -> Result<(), OutputError> {
        let Some(dir) = self.open_dir(rel)? else {
            return Ok(());
        };
        self.truncate_tree(dir.as_fd(), &mut rel.as_bytes().to_vec())
    }

    fn truncate_tree(&self, dir: BorrowedFd, rel: &mut Vec<u8>) -> Result<(), OutputError> {
        let names = read_names(dir).map_err(|source| OutputError::Read {
            path: self.path(rel),
            source: source.into(),
        })?;
        let base = rel.len();
        for name in &names {
            rel.push(b'/');
            rel.extend_from_slice(name.to_bytes());
            if file_type(dir, name) == Some(FileType::Directory) {
                self.check_mount(dir, name, AtFlags::SYMLINK_NOFOLLOW, rel)?;
                let sub = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|source| OutputError::Read {
                    path: self.path(rel),
                    source: source.into(),
                })?;
                self.truncate_tree(sub.as_fd(), rel)?;
            } else {
                self.truncate_in(dir, name, rel)?;
            }
            rel.truncate(base);
        }
        Ok(())
    }
}

fn file_type(dir: BorrowedFd, name: &CStr) -> Option<FileType> {
    rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::TYPE)
        .ok()
        .map(|s| FileType::from_raw_mode(s.stx_mode.into()))
}
