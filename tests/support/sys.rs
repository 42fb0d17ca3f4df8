//! The system calls tests make themselves (signals, mounts, FIFOs and device nodes, waiting on
//! a descriptor), through rustix as the library makes them.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

pub use rustix::mount::MountFlags;
pub use rustix::process::Signal;

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: Signal) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| std::io::Error::other(format!("{pid} is not a process id")))?;
    Ok(rustix::process::kill_process(pid, signal)?)
}

/// Mounts a new tmpfs on `point` with `flags` (and `options`, such as `size=64m`).
pub fn mount_tmpfs(point: &Path, flags: MountFlags, options: Option<&str>) -> std::io::Result<()> {
    let options = options.map(|o| std::ffi::CString::new(o).expect("no NUL in mount options"));
    Ok(rustix::mount::mount(
        "tmpfs",
        point,
        "tmpfs",
        flags,
        options.as_deref(),
    )?)
}

/// Binds `source` on `point`.
pub fn bind(source: &Path, point: &Path) -> std::io::Result<()> {
    Ok(rustix::mount::mount_bind(source, point)?)
}

/// Detaches the mount on `point` (lazily, as `umount -l`); errors are for the caller to ignore.
pub fn detach(point: &Path) -> std::io::Result<()> {
    Ok(rustix::mount::unmount(
        point,
        rustix::mount::UnmountFlags::DETACH,
    )?)
}

/// Makes a FIFO at `path`, mode 0600.
pub fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_bits_truncate(0o600),
        0,
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// Makes a character device node at `path`, mode 0666.
pub fn mknod_char(path: &Path, major: u32, minor: u32) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_bits_truncate(0o666),
        rustix::fs::makedev(major, minor),
    )
    .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
}

/// Whether `fd` becomes readable within `wait` (a pidfd: the process has exited).
pub fn readable_within(fd: impl AsFd, wait: Duration) -> bool {
    let timeout = rustix::event::Timespec {
        tv_sec: i64::try_from(wait.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(wait.subsec_nanos()),
    };
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    rustix::event::poll(&mut fds, Some(&timeout)).unwrap_or(0) > 0
}

/// The account named `name` on the host, if any.
pub fn user(name: &str) -> Option<debstrap_onion::sys::Account> {
    debstrap_onion::sys::user_by_name(name).expect("passwd lookup")
}

/// Puts the calling thread in a mount namespace of its own with every mount private, so what
/// the test mounts there goes when the thread ends and never reaches the host.
pub fn enter_private_mount_namespace() {
    // SAFETY: FILES is not among the flags, so no descriptor table is unshared.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
        .expect("unshare a mount namespace");
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC,
    )
    .expect("make / private");
}
