//! nginx's commands in the chroot: takes the root and a command line; runs it through the stage's
//! chroot runner ([`crate::stage::run_in_chroot`]'s), nginx's daemon inside the onion sandbox
//! ([`Sandbox`]), with the stage's mounts (proc, sysfs, devpts, device nodes) in place while it
//! needs them; gives a failure naming the command and its last lines of output.
//!
//! Mounts are [`crate::stage::ChrootMounts`]; [`unmount_all`] removes what a running nginx kept.

use std::path::{Path, PathBuf};

use std::os::fd::AsFd as _;

use rustix::fs::{Mode, OFlags};

use crate::stage::{
    detach, mount_entries_under, open_mount, ChrootMounts, Invocation, RootDir, StageError,
};

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

/// Runs `argv` (an absolute program path inside the chroot, then its arguments) in `root`, and
/// fails unless it exits 0.
pub(crate) fn run_ok(root: &Path, argv: &[&str]) -> Result<(), OnionError> {
    let dir = open_root(root)?;
    run_ok_at(&dir, root, argv)
}

/// [`run_ok`] in the root open at `dir` (`root` only names it in messages): the command enters
/// it by its descriptor, never through a path.
pub(crate) fn run_ok_at(dir: &RootDir, root: &Path, argv: &[&str]) -> Result<(), OnionError> {
    crate::stage::run_invocation(&invocation(dir, argv), &mut |_| {})
        .map(drop)
        .map_err(|e| failed(e, root))
}

fn open_root(root: &Path) -> Result<RootDir, OnionError> {
    crate::stage::canonical(root)
        .and_then(|path| RootDir::open(&path))
        .map_err(|e| failed(e, root))
}

fn invocation<'a>(dir: &'a RootDir, argv: &'a [&'a str]) -> Invocation<'a> {
    Invocation {
        root: dir,
        argv,
        env: &[],
        log: None,
        what: None,
    }
}

/// The runner's failure as the onion stage reports it: a command that exited non-zero with its
/// last lines, or what kept it from running.
fn failed(error: StageError, root: &Path) -> OnionError {
    match error {
        StageError::Command {
            command,
            status,
            tail,
            ..
        } => OnionError::CommandFailed {
            root: root.to_path_buf(),
            command,
            status: status.to_string(),
            stderr: tail.trim().to_string(),
        },
        other => OnionError::InChroot {
            root: root.to_path_buf(),
            source: Box::new(other),
        },
    }
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

/// Runs `argv` in `root` inside `sandbox` (see [`Sandbox`]), leaving the daemon it starts
/// running; fails unless the command exits 0.
pub(crate) fn run_sandboxed(
    root: &Path,
    argv: &[&str],
    sandbox: Sandbox,
) -> Result<(), OnionError> {
    let dir = open_root(root)?;
    // Built before the fork: the child only hands it to the kernel.
    let filter = super::seccomp::program();
    let confine: crate::stage::Confine = Box::new(move || enter(sandbox, &filter));
    crate::stage::run_daemon(&invocation(&dir, argv), confine)
        .map(drop)
        .map_err(|e| failed(e, root))
}

/// Enters `sandbox`, the system-call filter `filter` last; called between fork and exec, so it
/// only makes system calls.
fn enter(sandbox: Sandbox, filter: &[libc::sock_filter]) -> std::io::Result<()> {
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
    let mut flags =
        libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWPID | libc::CLONE_NEWNS;
    if sandbox.own_network {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: unshare takes flags only. The new PID namespace holds this process's children:
    // the nginx daemon it forks is its pid 1.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The chroot's /proc is read-only in the service's own mount namespace: nginx's master runs
    // as root, and root needs no capability to write /proc/sys/kernel/core_pattern (a program
    // the host's kernel would run as root) or /proc/sysrq-trigger. A flag of this namespace's
    // copy of the mount: the host's stays as it is.
    let flags = libc::MS_BIND
        | libc::MS_REMOUNT
        | libc::MS_RDONLY
        | libc::MS_NOSUID
        | libc::MS_NODEV
        | libc::MS_NOEXEC;
    // SAFETY: NUL-terminated static strings and null pointers where mount(2) allows them.
    let remounted = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/proc".as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if remounted != 0 {
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
