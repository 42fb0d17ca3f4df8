//! Running programs inside the chroot: takes the root and a command line; gives its exit status
//! and error output, run through chroot(2), with the stage's mounts (proc, sysfs, devpts, device
//! nodes) in place while it needs them.
//!
//! Mounts are [`crate::stage::ChrootMounts`]. Commands run through a runner of our own rather
//! than [`crate::stage::run_in_chroot`], which reads the command's pipes to their end: nginx's
//! daemon inherits them, so that would wait for nginx to exit.

use std::io::{Read as _, Seek as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd};

use rustix::fs::{Mode, OFlags};

use crate::stage::{detach, mount_entries_under, open_mount, ChrootMounts, RootDir, CHROOT_ENV};

use super::OnionError;

/// The stage's chroot mounts, unmounted when dropped unless kept.
#[derive(Debug)]
pub(crate) struct Mounts(ChrootMounts);

impl Mounts {
    /// Mounts what a chroot needs under `root`.
    pub fn mount(root: &Path) -> Result<Mounts, OnionError> {
        ChrootMounts::mount(root)
            .map(Mounts)
            .map_err(|source| OnionError::InChroot {
                root: root.to_path_buf(),
                source: Box::new(source),
            })
    }

    /// Mounts what a chroot needs under the open root `dir`, from its descriptor.
    pub fn mount_in(dir: &RootDir) -> Result<Mounts, OnionError> {
        ChrootMounts::mount_in(dir)
            .map(Mounts)
            .map_err(|source| OnionError::InChroot {
                root: dir.path().to_path_buf(),
                source: Box::new(source),
            })
    }

    /// Leaves the mounts in place (nginx keeps running); [`unmount_all`] removes them later.
    pub fn keep(self) {
        std::mem::forget(self.0);
    }
}

/// Unmounts every mount under `root`, innermost first; returns what it unmounted.
///
/// Each mount is reached from `root` without following any symlink and unmounted through a
/// descriptor of its own root, after checking it is the mount mountinfo names: something in the
/// chroot that swaps a directory for a symlink (`dev -> /dev`) cannot turn this onto the host's
/// mounts.
pub(crate) fn unmount_all(root: &Path) -> Result<Vec<PathBuf>, OnionError> {
    let root = fs_err::canonicalize(root).map_err(|source| OnionError::Unreachable {
        path: root.to_path_buf(),
        source,
    })?;
    let root_fd = rustix::fs::open(
        &root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| OnionError::Unreachable {
        path: root.clone(),
        source: e.into(),
    })?;
    let mut unmounted = Vec::new();
    for entry in mount_entries_under(&root).into_iter().rev() {
        let rel = entry.point.strip_prefix(&root).unwrap_or(&entry.point);
        let unreachable = |source| OnionError::Unreachable {
            path: entry.point.clone(),
            source,
        };
        let fd = open_mount(root_fd.as_fd(), rel, entry.id)
            .map_err(unreachable)?
            .ok_or_else(|| {
                unreachable(std::io::Error::other(
                    "another mount is there now; unmount it by hand",
                ))
            })?;
        // Lazy, so a process still holding a file there cannot keep the mount alive.
        detach(&fd).map_err(|source| OnionError::Unmount {
            path: entry.point.clone(),
            source,
        })?;
        unmounted.push(entry.point);
    }
    Ok(unmounted)
}

/// What a command in the chroot did.
#[derive(Debug)]
pub(crate) struct Ran {
    pub success: bool,
    pub status: String,
    pub stderr: String,
}

/// Runs `argv` (an absolute program path inside the chroot, then its arguments) in `root`, with a
/// clean environment, standard input and output on /dev/null and standard error captured.
pub(crate) fn run(root: &Path, argv: &[&str]) -> Result<Ran, OnionError> {
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| OnionError::Chroot {
        root: root.to_path_buf(),
        command: argv.join(" "),
        source: e.into(),
    })?;
    run_at(dir.as_fd(), root, argv)
}

/// [`run`] in the root open at `dir` (`root` only names it in messages): the command enters it
/// with fchdir(2) and chroot("."), never through a path.
pub(crate) fn run_at(dir: BorrowedFd, root: &Path, argv: &[&str]) -> Result<Ran, OnionError> {
    let command = argv.join(" ");
    let spawn_error = |source| OnionError::Chroot {
        root: root.to_path_buf(),
        command: command.clone(),
        source,
    };
    // Valid in the child until exec: `dir` outlives the spawn.
    let root_fd = dir.as_raw_fd();
    // Standard error goes to a file, not a pipe: a daemon (nginx) keeps its inherited
    // descriptors, and reading a pipe to its end would wait for the daemon to exit.
    let mut stderr_file = tempfile::tempfile().map_err(spawn_error)?;
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(CHROOT_ENV.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr_file.try_clone().map_err(spawn_error)?);
    // SAFETY: between fork and exec the closure only calls fchdir(2), chroot(2) and chdir(2) on
    // a descriptor and C strings that exist before the fork; all are async-signal-safe and
    // allocate nothing.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::fchdir(BorrowedFd::borrow_raw(root_fd))?;
            rustix::process::chroot(c".")?;
            rustix::process::chdir(c"/")?;
            Ok(())
        });
    }
    let status = cmd.status().map_err(spawn_error)?;
    let mut stderr = String::new();
    stderr_file
        .seek(std::io::SeekFrom::Start(0))
        .and_then(|_| stderr_file.read_to_string(&mut stderr))
        .map_err(spawn_error)?;
    Ok(Ran {
        success: status.success(),
        status: status.to_string(),
        stderr,
    })
}

/// Runs `argv` in `root` and fails unless it exits 0.
pub(crate) fn run_ok(root: &Path, argv: &[&str]) -> Result<Ran, OnionError> {
    check_ran(run(root, argv)?, root, argv)
}

/// [`run_at`], failing unless the command exits 0.
pub(crate) fn run_ok_at(dir: BorrowedFd, root: &Path, argv: &[&str]) -> Result<Ran, OnionError> {
    check_ran(run_at(dir, root, argv)?, root, argv)
}

fn check_ran(ran: Ran, root: &Path, argv: &[&str]) -> Result<Ran, OnionError> {
    if ran.success {
        Ok(ran)
    } else {
        Err(OnionError::CommandFailed {
            root: root.to_path_buf(),
            command: argv.join(" "),
            status: ran.status,
            stderr: ran.stderr.trim().to_string(),
        })
    }
}
