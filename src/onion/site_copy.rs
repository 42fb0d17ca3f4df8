//! Copying a user's site directory into the web root by descriptor: takes the `--site` path;
//! gives its regular files and directories copied, each opened once and read through the
//! descriptor that was checked, so a file swapped for a symlink between a check and a read can
//! never make us (root) copy a file from outside the site.

use std::ffi::CString;
use std::io::Read as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::files::{self, Perms};
use super::nginx::SiteProblem;
use super::OnionError;

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
    dest: &Path,
) -> Result<(), OnionError> {
    let mut names = Vec::new();
    let mut reader = rustix::fs::Dir::read_from(dir).map_err(|e| site.unreadable(rel, e))?;
    while let Some(entry) = reader.read() {
        let entry = entry.map_err(|e| site.unreadable(rel, e))?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    // Sorted, so the copy happens in the same order on every run.
    names.sort_unstable_by(|a, b| a.to_bytes().cmp(b.to_bytes()));
    for name in names {
        let entry_rel = rel.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        let target = dest.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
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
                files::create_dir_all_mode(&target, 0o755).map_err(|source| {
                    OnionError::WriteChroot {
                        path: target.clone(),
                        source,
                    }
                })?;
                copy_dir(site, sub.as_fd(), &entry_rel, &target)?;
            }
            FileType::RegularFile => copy_file(site, &fd, &entry_rel, &target)?,
            FileType::Symlink => copy_symlinked(site, dir, &name, &entry_rel, &target)?,
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
    target: &Path,
) -> Result<(), OnionError> {
    let link = site.path.join(rel);
    let resolved = rustix::fs::openat2(
        site.root,
        rel,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    );
    let fd = match resolved {
        Ok(fd) => fd,
        Err(Errno::XDEV) => {
            let points_at = rustix::fs::readlinkat(dir, name.as_c_str(), Vec::new())
                .map(|t| PathBuf::from(std::ffi::OsStr::from_bytes(t.as_bytes())))
                .unwrap_or_default();
            return Err(site.error(SiteProblem::EscapingSymlink {
                link,
                target: points_at,
            }));
        }
        Err(e) => return Err(site.unreadable(rel, e)),
    };
    match file_type(&fd).map_err(|e| site.unreadable(rel, e))? {
        FileType::RegularFile => copy_file(site, &fd, rel, target),
        FileType::Directory => Err(site.error(SiteProblem::DirectorySymlink { link })),
        _ => Err(site.error(SiteProblem::SpecialFile { path: link })),
    }
}

/// Copies the regular file held by `fd` (an `O_PATH` handle) to `target`, reading through it.
fn copy_file(site: &Site, fd: &OwnedFd, rel: &Path, target: &Path) -> Result<(), OnionError> {
    let file = reopen(fd, OFlags::RDONLY | OFlags::NOCTTY).map_err(|e| site.unreadable(rel, e))?;
    let mut bytes = Vec::new();
    std::fs::File::from(file)
        .read_to_end(&mut bytes)
        .map_err(|e| OnionError::Site {
            path: site.path.join(rel),
            problem: SiteProblem::Unreadable(e),
        })?;
    files::write_atomic(target, &bytes, Perms::mode(0o644)).map_err(|source| {
        OnionError::WriteChroot {
            path: target.to_path_buf(),
            source,
        }
    })
}

fn file_type(fd: &OwnedFd) -> Result<FileType, Errno> {
    Ok(FileType::from_raw_mode(rustix::fs::fstat(fd)?.st_mode))
}

/// Opens for reading exactly the file an `O_PATH` descriptor holds (through its /proc link).
fn reopen(fd: &OwnedFd, flags: OFlags) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        crate::stage::fd_path(fd.as_fd()),
        flags | OFlags::CLOEXEC,
        Mode::empty(),
    )
}
