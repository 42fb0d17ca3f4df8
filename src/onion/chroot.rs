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
    let dir = open_root(root, argv)?;
    run_at(dir.as_fd(), root, argv)
}

/// `root` opened (`O_PATH`) for a command to enter; `argv` names the command in errors.
fn open_root(root: &Path, argv: &[&str]) -> Result<rustix::fd::OwnedFd, OnionError> {
    rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| OnionError::Chroot {
        root: root.to_path_buf(),
        command: argv.join(" "),
        source: e.into(),
    })
}

/// [`run`] in the root open at `dir` (`root` only names it in messages): the command enters it
/// with fchdir(2) and chroot("."), never through a path.
pub(crate) fn run_at(dir: BorrowedFd, root: &Path, argv: &[&str]) -> Result<Ran, OnionError> {
    run_at_in(dir, root, argv, None)
}

/// The sandbox nginx starts in: its own IPC, UTS and PID namespaces, its own network namespace
/// (loopback only, and down) unless it must listen on the host's 127.0.0.1, no_new_privs, a
/// capability bounding set cut to what nginx's master uses, and a system-call filter (see
/// `seccomp.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sandbox {
    pub own_network: bool,
}

/// The capabilities nginx's master keeps: file owners and modes of its temp directories,
/// switching its workers to www-data and signalling them, a port below 1024 with TCP. Gone are
/// chroot (the way out of a chroot), mount and namespace changes, ptrace, raw sockets, device
/// nodes, modules, and the rest.
/// (Numbers from linux/capability.h: CHOWN 0, DAC_OVERRIDE 1, DAC_READ_SEARCH 2, FOWNER 3,
/// KILL 5, SETGID 6, SETUID 7, NET_BIND_SERVICE 10.)
const KEPT_CAPABILITIES: [i32; 8] = [0, 1, 2, 3, 5, 6, 7, 10];

/// [`run`] inside `sandbox` (see [`Sandbox`]).
pub(crate) fn run_sandboxed(
    root: &Path,
    argv: &[&str],
    sandbox: Sandbox,
) -> Result<Ran, OnionError> {
    let dir = open_root(root, argv)?;
    let ran = run_at_in(dir.as_fd(), root, argv, Some(sandbox))?;
    check_ran(ran, root, argv)
}

/// Enters `sandbox`, the system-call filter `filter` last; called between fork and exec, so it
/// only makes system calls.
fn enter(sandbox: Sandbox, filter: &[nix::libc::sock_filter]) -> std::io::Result<()> {
    use nix::libc;
    // Every capability outside the kept list leaves the bounding set, up to the highest the
    // kernel knows (EINVAL past it ends the loop).
    for cap in 0..64 {
        if KEPT_CAPABILITIES.contains(&cap) {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(err);
        }
    }
    // SAFETY: as above.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut flags = libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWPID;
    if sandbox.own_network {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: unshare takes flags only. The new PID namespace holds this process's children:
    // the nginx daemon it forks is its pid 1.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The service's own UTS namespace does not carry the host's name.
    let name = b"onion";
    // SAFETY: a pointer and length of a static byte string.
    if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Last: the filter refuses unshare(2) and sethostname(2) from here on.
    super::seccomp::install(filter)
}

fn run_at_in(
    dir: BorrowedFd,
    root: &Path,
    argv: &[&str],
    sandbox: Option<Sandbox>,
) -> Result<Ran, OnionError> {
    let command = argv.join(" ");
    let spawn_error = |source| OnionError::Chroot {
        root: root.to_path_buf(),
        command: command.clone(),
        source,
    };
    // Valid in the child until exec: `dir` outlives the spawn.
    let root_fd = dir.as_raw_fd();
    // Built before the fork: the child only hands it to the kernel.
    let filter = sandbox
        .map(|_| super::seccomp::program())
        .unwrap_or_default();
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
    // SAFETY: between fork and exec the closure only calls fchdir(2), chroot(2), chdir(2),
    // prctl(2), unshare(2) and sethostname(2) on a descriptor, integers, C strings and a filter
    // program that exist before the fork; all are async-signal-safe and allocate nothing.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::fchdir(BorrowedFd::borrow_raw(root_fd))?;
            rustix::process::chroot(c".")?;
            rustix::process::chdir(c"/")?;
            if let Some(sandbox) = sandbox {
                enter(sandbox, &filter)?;
            }
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
