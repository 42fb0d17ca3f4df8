//! Copying a user's site directory into the web root by descriptor: takes the `--site` path;
//! gives its regular files and directories copied, each opened once and read through the
//! descriptor that was checked, so a file swapped for a symlink between a check and a read can
//! never make us (root) copy a file from outside the site.

use std::ffi::CString;
use std::io::Read as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use super::nginx::{in_chroot, SiteProblem};
use super::OnionError;
use crate::root::{self, NewFile, Root};

/// The site being copied: its path (for messages) and its directory, opened once.
pub(crate) struct Site<'a> {
    pub path: &'a Path,
    pub root: BorrowedFd<'a>,
}

impl Site<'_> {
    fn error(&self, problem: SiteProblem) -> OnionError {
        OnionError::Site {
            path: self.path.to_path_buf(),
            problem,
        }
    }

    fn unreadable(&self, rel: &Path, errno: Errno) -> OnionError {
        OnionError::Site {
            path: self.path.join(rel),
            problem: SiteProblem::Unreadable(errno.into()),
        }
    }
}

/// Where the copy goes: a directory of the chroot's root, by its descriptor, and its path below
/// the root (for messages).
pub(crate) struct Dest<'a> {
    pub root: &'a Root,
    pub dir: BorrowedFd<'a>,
    pub rel: Vec<u8>,
}

impl Dest<'_> {
    fn child(&self, name: &[u8]) -> Vec<u8> {
        [self.rel.as_slice(), b"/", name].concat()
    }
}

/// Opens the site directory given on the command line (following the path the user gave).
pub(crate) fn open_site(site: &Path) -> Result<OwnedFd, OnionError> {
    rustix::fs::open(
        site,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| OnionError::Site {
        path: site.to_path_buf(),
        problem: match e {
            Errno::NOTDIR => SiteProblem::NotADirectory,
            e => SiteProblem::Unreadable(e.into()),
        },
    })
}

/// Copies the directory `dir` (at `rel` in the site) into `dest`: directories 0755, files 0644,
/// owned by the running user; a symlink is followed only to a regular file, and only when it
/// resolves beneath the site's directory.
pub(crate) fn copy_dir(
    site: &Site,
    dir: BorrowedFd,
    rel: &Path,
    dest: &Dest,
) -> Result<(), OnionError> {
    // Sorted, so the copy happens in the same order on every run.
    let names = root::read_names(dir).map_err(|e| site.unreadable(rel, e))?;
    for name in names {
        let entry_rel = rel.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        let target = dest.child(name.to_bytes());
        // O_PATH: nothing is opened for reading (no device or FIFO side effect) until the
        // descriptor's type is known; O_NOFOLLOW: a symlink is opened as itself.
        let fd = rustix::fs::openat(
            dir,
            &name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| site.unreadable(&entry_rel, e))?;
        match file_type(&fd).map_err(|e| site.unreadable(&entry_rel, e))? {
            FileType::Directory => {
                let sub = reopen(&fd, OFlags::RDONLY | OFlags::DIRECTORY)
                    .map_err(|e| site.unreadable(&entry_rel, e))?;
                let made = root::make_dir_in(dest.dir, name.to_bytes(), 0o755)
                    .map_err(in_chroot(dest.root, &target))?;
                let into = Dest {
                    root: dest.root,
                    dir: made.as_fd(),
                    rel: target,
                };
                copy_dir(site, sub.as_fd(), &entry_rel, &into)?;
            }
            FileType::RegularFile => copy_file(site, &fd, &entry_rel, dest, name.to_bytes())?,
            FileType::Symlink => copy_symlinked(site, dir, &name, &entry_rel, dest)?,
            _ => {
                return Err(site.error(SiteProblem::SpecialFile {
                    path: site.path.join(&entry_rel),
                }))
            }
        }
    }
    Ok(())
}

/// A symlink in the site: resolved again from the site's own directory, never leaving it.
fn copy_symlinked(
    site: &Site,
    dir: BorrowedFd,
    name: &CString,
    rel: &Path,
    dest: &Dest,
) -> Result<(), OnionError> {
    let link = site.path.join(rel);
    let fd = match root::open_beneath(site.root, rel, OFlags::PATH, false) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(Errno::XDEV.raw_os_error()) => {
            let points_at = rustix::fs::readlinkat(dir, name.as_c_str(), Vec::new())
                .map(|t| PathBuf::from(std::ffi::OsStr::from_bytes(t.as_bytes())))
                .unwrap_or_default();
            return Err(site.error(SiteProblem::EscapingSymlink {
                link,
                target: points_at,
            }));
        }
        Err(e) => {
            return Err(OnionError::Site {
                path: link,
                problem: SiteProblem::Unreadable(e),
            })
        }
    };
    match file_type(&fd).map_err(|e| site.unreadable(rel, e))? {
        FileType::RegularFile => copy_file(site, &fd, rel, dest, name.to_bytes()),
        FileType::Directory => Err(site.error(SiteProblem::DirectorySymlink { link })),
        _ => Err(site.error(SiteProblem::SpecialFile { path: link })),
    }
}

/// Copies the regular file held by `fd` (an `O_PATH` handle) to `name` in `dest`, reading
/// through it.
fn copy_file(
    site: &Site,
    fd: &OwnedFd,
    rel: &Path,
    dest: &Dest,
    name: &[u8],
) -> Result<(), OnionError> {
    let file = reopen(fd, OFlags::RDONLY | OFlags::NOCTTY).map_err(|e| site.unreadable(rel, e))?;
    let mut bytes = Vec::new();
    std::fs::File::from(file)
        .read_to_end(&mut bytes)
        .map_err(|e| OnionError::Site {
            path: site.path.join(rel),
            problem: SiteProblem::Unreadable(e),
        })?;
    dest.root
        .write_in(dest.dir, name, &bytes, NewFile::mode(0o644))
        .map_err(in_chroot(dest.root, dest.child(name)))
}

fn file_type(fd: &OwnedFd) -> Result<FileType, Errno> {
    Ok(FileType::from_raw_mode(rustix::fs::fstat(fd)?.st_mode))
}

/// Opens for reading exactly the file an `O_PATH` descriptor holds (through its /proc link).
fn reopen(fd: &OwnedFd, flags: OFlags) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        root::proc_fd_path(fd),
        flags | OFlags::CLOEXEC,
        Mode::empty(),
    )
}
