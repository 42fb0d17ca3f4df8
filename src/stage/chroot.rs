//! The chroot runner, the one place that calls chroot(2): takes a root directory; gives the
//! kernel filesystems mounted inside it for as long as a [`ChrootMounts`] guard lives, and
//! commands run in it with a clean environment and their output logged inside the root; every
//! stage, the onion service's nginx included ([`run_daemon`]), runs its commands through it.

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::mount::{MountFlags, UnmountFlags};

use super::rootfs::RootDir;
use super::{devices, namespace, StageError};

/// The whole environment of every command run in the chroot: nothing of the host's leaks in.
pub const CHROOT_ENV: &[(&str, &str)] = &[
    ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    ("LANG", "C.UTF-8"),
    ("DEBIAN_FRONTEND", "noninteractive"),
    ("DEBCONF_NONINTERACTIVE_SEEN", "true"),
    ("HOME", "/root"),
];

/// How many lines of a failed command's output its error shows.
const TAIL_LINES: usize = 20;

/// How often a running command's output is read and a stop request checked for.
const TICK_MS: u16 = 50;
const TICK: Duration = Duration::from_millis(TICK_MS as u64);

/// The kernel filesystems a chroot needs (proc, sysfs, a private devpts), mounted under a root
/// until this guard is dropped or [`ChrootMounts::unmount`] is called.
///
/// Each mount is held by a descriptor of its own root from the moment it is made, and undone
/// through that descriptor: a symlink planted in the chroot afterwards (`dev -> /dev`) cannot
/// turn the unmount onto a host path. Drop unmounts in reverse order on every path (success,
/// error, panic).
#[derive(Debug)]
pub struct ChrootMounts {
    /// What we mounted, in mount order.
    mounted: Vec<Mounted>,
}

/// One mount made by [`ChrootMounts`]: its host path for messages, and its root.
#[derive(Debug)]
struct Mounted {
    target: PathBuf,
    fd: OwnedFd,
}

/// One mount: what, where (relative to the root), how.
struct MountSpec {
    fstype: &'static str,
    target: &'static str,
    flags: MountFlags,
    data: Option<&'static std::ffi::CStr>,
}

const MOUNTS: [MountSpec; 3] = [
    MountSpec {
        fstype: "proc",
        target: "proc",
        flags: MountFlags::NOSUID
            .union(MountFlags::NODEV)
            .union(MountFlags::NOEXEC),
        data: None,
    },
    MountSpec {
        fstype: "sysfs",
        target: "sys",
        flags: MountFlags::NOSUID
            .union(MountFlags::NODEV)
            .union(MountFlags::NOEXEC)
            .union(MountFlags::RDONLY),
        data: None,
    },
    // A new devpts instance, so ptys opened in the chroot never touch the host's /dev/pts;
    // gid 5 is Debian's fixed `tty` group.
    MountSpec {
        fstype: "devpts",
        target: "dev/pts",
        flags: MountFlags::NOSUID.union(MountFlags::NOEXEC),
        data: Some(c"newinstance,ptmxmode=0666,mode=0620,gid=5"),
    },
];

impl ChrootMounts {
    /// Creates the device nodes under `root/dev`, then mounts proc, sysfs (read-only) and a new
    /// devpts instance; refuses mount points that go through a symlink.
    pub fn mount(root: &Path) -> Result<ChrootMounts, StageError> {
        let root = canonical(root)?;
        ChrootMounts::mount_in(&RootDir::open(&root)?)
    }

    /// [`ChrootMounts::mount`] in a root already open: every mount point is reached from its
    /// descriptor, never through the root's path.
    pub(crate) fn mount_in(dir: &RootDir) -> Result<ChrootMounts, StageError> {
        devices::create(dir)?;
        let mut guard = ChrootMounts {
            mounted: Vec::new(),
        };
        // In a user namespace sysfs cannot be mounted (it belongs to the host's network
        // namespace): the host's is bound instead, as mmdebstrap's unshare mode does, then
        // remounted with sysfs's flags below (a bind ignores every flag but MS_REC).
        let rootless = crate::userns::inside();
        for spec in &MOUNTS {
            let bound = spec.fstype == "sysfs" && rootless;
            let (source, fstype, flags) = if bound {
                ("/sys", "", MountFlags::BIND | MountFlags::REC)
            } else {
                (spec.fstype, spec.fstype, spec.flags)
            };
            dir.create_dir_all(Path::new(spec.target), 0o755)?;
            let target = dir.host_path(Path::new(spec.target));
            // Mounting on /proc/thread-self/fd/N mounts on exactly the directory we opened inside
            // the root, whatever happens to the path afterwards.
            let fd = dir.open_dir(Path::new(spec.target), true)?;
            let under = namespace::mount_id(fd.as_fd()).map_err(|source| StageError::Fs {
                action: "inspect",
                path: target.clone(),
                source,
            })?;
            let via = namespace::fd_path(fd.as_fd());
            rustix::mount::mount(source, via.as_path(), fstype, flags, spec.data).map_err(
                |source| StageError::Mount {
                    fstype: spec.fstype,
                    target: target.clone(),
                    source,
                },
            )?;
            // The new mount's root, reached from the root without following any symlink; it must
            // be a mount other than the directory's (nothing moved in between).
            let mounted = dir.open_dir(Path::new(spec.target), true);
            let mounted = match mounted {
                Ok(mounted) if namespace::mount_id(mounted.as_fd()).ok() != Some(under) => mounted,
                other => {
                    let _ = rustix::mount::unmount(via.as_path(), UnmountFlags::DETACH);
                    return Err(match other {
                        Err(e) => e,
                        Ok(_) => StageError::UnsafePath {
                            path: target,
                            reason: "it changed while it was being mounted",
                        },
                    });
                }
            };
            let remount = bound.then(|| namespace::fd_path(mounted.as_fd()));
            guard.mounted.push(Mounted {
                target: target.clone(),
                fd: mounted,
            });
            if let Some(remount) = remount {
                // Read-only, nosuid, nodev and noexec, as the sysfs of a root build; the guard
                // unmounts the bind if this fails.
                rustix::mount::mount_remount(remount.as_path(), MountFlags::BIND | spec.flags, "")
                    .map_err(|source| StageError::Mount {
                        fstype: spec.fstype,
                        target,
                        source,
                    })?;
            }
        }
        if rootless || devices::on_nodev(dir)? {
            guard.bind_device_nodes(dir)?;
        }
        Ok(guard)
    }

    /// On a `nodev` filesystem the root's device nodes exist but cannot be opened: a script's
    /// `cmd >/dev/null || true` then skips `cmd` without a word (apt's and dpkg's postinsts lose
    /// their systemd timer links). Binding the host's node of the same device over each one, and
    /// our devpts's ptmx over a /dev/ptmx node, makes the chroot's /dev work as on any other
    /// filesystem; the nodes underneath, which the finished root keeps, are untouched.
    fn bind_device_nodes(&mut self, dir: &RootDir) -> Result<(), StageError> {
        for (rel, host, major, minor) in devices::host_nodes() {
            check_host_node(&host, major, minor)?;
            self.bind_over(dir, Path::new(&host), &rel)?;
        }
        let ptmx = Path::new("dev/ptmx");
        let node = dir.file_type(ptmx)? == Some(rustix::fs::FileType::CharacterDevice);
        if node || dir.is_placeholder(ptmx)? {
            let source = dir.open_char_device(Path::new("dev/pts/ptmx"))?;
            self.bind_over(dir, &namespace::fd_path(source.as_fd()), ptmx)?;
        }
        Ok(())
    }

    /// Bind-mounts `source` over the device node `rel` of the root, recording it for unmounting.
    fn bind_over(&mut self, dir: &RootDir, source: &Path, rel: &Path) -> Result<(), StageError> {
        let target = dir.host_path(rel);
        let fd = dir.open_bind_target(rel)?;
        rustix::mount::mount_bind(source, namespace::fd_path(fd.as_fd())).map_err(|source| {
            StageError::Mount {
                fstype: "bind",
                target: target.clone(),
                source,
            }
        })?;
        // Opened again, the path now gives the bound node: the mount, detached through it later.
        let mounted = match dir.open_char_device(rel) {
            Ok(mounted) => mounted,
            Err(e) => {
                // The descriptor above names the node under the mount, so the mount goes by path.
                let _ =
                    rustix::mount::unmount(&target, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW);
                return Err(e);
            }
        };
        self.mounted.push(Mounted {
            target,
            fd: mounted,
        });
        Ok(())
    }

    /// Unmounts everything now, reporting the first failure (Drop only logs).
    pub fn unmount(mut self) -> Result<(), StageError> {
        self.unmount_all()
    }

    fn unmount_all(&mut self) -> Result<(), StageError> {
        let mut first_error = None;
        while let Some(mounted) = self.mounted.pop() {
            if let Err(source) = namespace::detach(&mounted.fd) {
                let e = StageError::Unmount {
                    target: mounted.target,
                    source,
                };
                tracing::warn!("{e}");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for ChrootMounts {
    fn drop(&mut self) {
        let _ = self.unmount_all();
    }
}

/// Refuses to bind a host "device" that is not the device it should be.
fn check_host_node(host: &str, major: u32, minor: u32) -> Result<(), StageError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = fs_err::metadata(host).map_err(|source| StageError::Fs {
        action: "inspect the host's device",
        path: PathBuf::from(host),
        source,
    })?;
    let rdev = meta.rdev();
    if !meta.file_type().is_char_device()
        || rustix::fs::major(rdev) != major
        || rustix::fs::minor(rdev) != minor
    {
        return Err(StageError::UnsafePath {
            path: PathBuf::from(host),
            reason: "it is not the character device its name says",
        });
    }
    Ok(())
}

/// Every mount point strictly under `root` (a root that is itself a mount point is fine), as
/// this thread's mount namespace has them, in mount order.
pub fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let root = fs_err::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    namespace::mount_entries_under(&root)
        .into_iter()
        .map(|entry| entry.point)
        .collect()
}

/// Every mount point this thread's mount namespace has, in mount order.
fn mount_points() -> Vec<PathBuf> {
    namespace::mount_entries_under(Path::new(""))
        .into_iter()
        .map(|entry| entry.point)
        .collect()
}

/// Whether `path` (resolved) is itself a mount point.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(path) = fs_err::canonicalize(path) else {
        return false;
    };
    mount_points().contains(&path)
}

/// The mount point of the filesystem `path` (resolved) is on: the longest one above it.
pub fn mount_point_of(path: &Path) -> PathBuf {
    let path = fs_err::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    mount_points()
        .into_iter()
        .filter(|point| path.starts_with(point))
        .max_by_key(|point| point.as_os_str().len())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
pub(crate) fn unescape_mountinfo(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes.get(i + 1..i + 4).unwrap_or_default();
        if bytes[i] == b'\\'
            && digits.len() == 3
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

/// The root's canonical path; the host's own `/` is refused.
pub(crate) fn canonical(root: &Path) -> Result<PathBuf, StageError> {
    let path = fs_err::canonicalize(root).map_err(|source| StageError::Fs {
        action: "resolve the root",
        path: root.to_path_buf(),
        source,
    })?;
    if path == Path::new("/") {
        return Err(StageError::UnsafePath {
            path,
            reason: "the host's own root cannot be a chroot target",
        });
    }
    Ok(path)
}

/// Runs `argv` chrooted into `root` (never the host's `/`) with [`CHROOT_ENV`] plus `env` (which
/// may override it), stdin from /dev/null, and its output appended to `log` (a path inside the
/// root) as it comes; a non-zero exit is an error naming the command and showing its last lines.
///
/// The command is the first process of a PID namespace of its own: when it exits, the kernel
/// kills whatever it left running (a daemon, a `setsid` child), so nothing it started outlives it.
pub fn run_in_chroot(
    root: &Path,
    argv: &[&str],
    env: &[(&str, &str)],
    log: Option<&Path>,
) -> Result<Output, StageError> {
    let root = RootDir::open(&canonical(root)?)?;
    run(
        &Invocation {
            root: &root,
            argv,
            env,
            log,
            what: None,
        },
        &mut |_| {},
    )
}

/// A command to run in the chroot, with what to call it in errors.
pub(crate) struct Invocation<'a> {
    /// The root, entered through its descriptor (never its path).
    pub root: &'a RootDir,
    pub argv: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    pub log: Option<&'a Path>,
    /// What failed, in words (`base-passwd preinst`); the command line when `None`.
    pub what: Option<&'a str>,
}

/// Output collected while a command runs: the log, and the last lines for an error.
struct Sink {
    log: Option<std::fs::File>,
    tail: VecDeque<String>,
}

impl Sink {
    fn line(&mut self, line: &[u8]) {
        if let Some(log) = self.log.as_mut() {
            // A log that cannot be written must not fail the build: the output is still kept.
            let _ = log.write_all(line);
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail
            .push_back(String::from_utf8_lossy(line).trim_end().to_owned());
    }
}

/// Runs an [`Invocation`], calling `on_stdout_line` for each line of standard output as it comes.
pub(crate) fn run(
    inv: &Invocation,
    on_stdout_line: &mut dyn FnMut(&str),
) -> Result<Output, StageError> {
    supervise(inv, Place::Chroot, on_stdout_line)
}

/// What a daemon's command does in the chroot, between chroot(2) and exec: it runs in the forked
/// child, so it may only make async-signal-safe system calls and must not allocate.
pub(crate) type Confine = Box<dyn FnMut() -> std::io::Result<()> + Send + Sync>;

/// Runs an [`Invocation`] whose command starts a daemon that outlives it (nginx): like [`run`],
/// but without a PID namespace of its own, so the daemon is not killed when the command exits,
/// and with `confine` applied in the child just before exec (the onion sandbox). Its output goes
/// to unlinked files, as every command's does, so the daemon keeping them open blocks nothing;
/// its process group is still killed when the command fails.
pub(crate) fn run_daemon(inv: &Invocation, confine: Confine) -> Result<Output, StageError> {
    supervise(inv, Place::Daemon(confine), &mut |_| {})
}

/// Runs an [`Invocation`] on the host, beside the root rather than in it (a hook): in the
/// caller's directory and mount namespace, with the caller's environment plus `inv.env`
/// (TMPDIR and APT_CONFIG removed, as mmdebstrap does), standard error merged into standard
/// output, and the same process group, log, stop and failure handling as [`run`].
pub(crate) fn run_beside(
    inv: &Invocation,
    on_output_line: &mut dyn FnMut(&str),
) -> Result<Output, StageError> {
    supervise(inv, Place::Beside, on_output_line)
}

/// Where a command runs, and how it may end.
enum Place {
    /// In the chroot, the first process of a PID namespace that ends with it ([`run`]).
    Chroot,
    /// In the chroot, leaving a daemon behind, confined as given ([`run_daemon`]).
    Daemon(Confine),
    /// On the host ([`run_beside`]).
    Beside,
}

/// Runs `inv` as `place` says.
fn supervise(
    inv: &Invocation,
    place: Place,
    on_stdout_line: &mut dyn FnMut(&str),
) -> Result<Output, StageError> {
    let chrooted = !matches!(place, Place::Beside);
    let (contained, mut confine) = match place {
        Place::Daemon(confine) => (false, Some(confine)),
        Place::Chroot | Place::Beside => (true, None),
    };
    let command_line = inv.argv.join(" ");
    let spawn_error = |source| StageError::Spawn {
        root: inv.root.path().to_path_buf(),
        command: command_line.clone(),
        source,
    };
    let Some((program, args)) = inv.argv.split_first() else {
        return Err(spawn_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty command",
        )));
    };
    // Valid in the child until exec: `inv.root` outlives the spawn.
    let root_fd = inv.root.fd().as_raw_fd();

    let mut log = match inv.log {
        Some(rel) => Some(inv.root.append(rel, 0o640)?),
        None => None,
    };
    if let Some(log) = log.as_mut() {
        let _ = writeln!(log, "$ {command_line}");
    }

    // Output goes to unlinked temporary files, not pipes: a daemon the command leaves running
    // keeps the descriptors it inherited, so reading a pipe to its end would wait for the daemon,
    // and closing it would kill the daemon with SIGPIPE on its next write.
    let capture_file = || tempfile::tempfile().map_err(spawn_error);
    let (out_file, err_file) = (capture_file()?, capture_file()?);
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(out_file.try_clone().map_err(spawn_error)?);
    if chrooted {
        command
            .env_clear()
            .envs(CHROOT_ENV.iter().copied())
            .stderr(err_file.try_clone().map_err(spawn_error)?);
    } else {
        // One stream, so a hook's messages and errors stay in the order it wrote them.
        command
            .env_remove("TMPDIR")
            .env_remove("APT_CONFIG")
            .stderr(out_file.try_clone().map_err(spawn_error)?);
    }
    command.envs(inv.env.iter().copied());
    // The build itself, as a descriptor that becomes readable when it exits: the child checks it
    // once its own death signal is armed, to see whether the build died before that.
    let build = rustix::process::pidfd_open(
        rustix::process::getpid(),
        rustix::process::PidfdFlags::empty(),
    )
    .ok();
    let build_fd = build.as_ref().map(|fd| fd.as_raw_fd());
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // syscalls (setpgid, prctl, poll, _exit, fchdir, chroot, chdir, umask) on descriptors and C
    // strings that exist before the fork, then `confine`, which promises the same ([`Confine`]);
    // it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            // A process group of its own, so a stop reaches every process the command started.
            rustix::process::setpgid(None, None)?;
            die_with_the_build(build_fd)?;
            if !chrooted {
                return Ok(());
            }
            // Into the held root by its descriptor: whatever its path names now is not entered.
            // SAFETY: the descriptor is open until exec (see above).
            rustix::process::fchdir(std::os::fd::BorrowedFd::borrow_raw(root_fd))?;
            rustix::process::chroot(c".")?;
            rustix::process::chdir(c"/")?;
            rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o022));
            match confine.as_mut() {
                Some(confine) => confine(),
                None => Ok(()),
            }
        });
    }
    // Hooks too: whatever a command started ends with it, unless it is to leave a daemon.
    let spawned = if contained {
        in_own_pid_namespace(|| command.spawn()).and_then(|spawned| spawned)
    } else {
        command.spawn()
    };
    let mut child = spawned.map_err(spawn_error)?;
    // Dropped only after the child is reaped below.
    let exit_fd = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
        });

    let mut sink = Sink {
        log,
        tail: VecDeque::with_capacity(TAIL_LINES),
    };
    let mut stdout = Capture::new(out_file);
    let mut stderr = Capture::new(err_file);
    // The command's first process: its process group's leader and pid 1 of its namespace.
    let first = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    let kill_group = || {
        if let Some(first) = first {
            let _ = rustix::process::kill_process_group(first, rustix::process::Signal::KILL);
        }
    };
    let mut signalled = false;
    loop {
        let exited = wait_a_moment(&mut child, exit_fd.as_ref()).map_err(spawn_error)?;
        stdout.read_new(&mut sink, on_stdout_line);
        stderr.read_new(&mut sink, &mut |_| {});
        if exited {
            break;
        }
        // A stop request reaches this process alone when it comes as SIGTERM. The command is the
        // first process of its PID namespace, which ignores any signal from out here but SIGKILL
        // unless it has a handler; SIGKILL ends it and the kernel then ends every process of the
        // namespace, so a long dpkg run and whatever it started stop now, as one.
        if crate::cancel::is_requested() && !signalled {
            if let Some(first) = first {
                let _ = rustix::process::kill_process(first, rustix::process::Signal::KILL);
            }
            signalled = true;
        }
    }
    // Before reaping (the zombie keeps the group id ours): when the command failed or a stop was
    // requested, whatever it left running in its group is killed, so nothing it started goes on
    // writing while the build cleans up.
    let exited_well = first.map(|first| {
        rustix::process::waitid(
            rustix::process::WaitId::Pid(first),
            rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
        )
    });
    let failed = !matches!(
        exited_well,
        Some(Ok(Some(status))) if status.exited() && status.exit_status() == Some(0)
    );
    if failed || crate::cancel::is_requested() {
        kill_group();
    }
    let status = child.wait().map_err(spawn_error)?;
    let stdout_bytes = stdout.finish(&mut sink, on_stdout_line);
    let stderr_bytes = stderr.finish(&mut sink, &mut |_| {});
    if !status.success() && crate::cancel::is_requested() {
        return Err(StageError::Cancelled(crate::cancel::Cancelled));
    }
    if !status.success() {
        return Err(StageError::Command {
            what: inv.what.map_or_else(|| command_line.clone(), str::to_owned),
            command: command_line,
            status,
            tail: Vec::from(sink.tail).join("\n"),
        });
    }
    Ok(Output {
        status,
        stdout: stdout_bytes,
        stderr: stderr_bytes,
    })
}

/// Runs `spawn` with this thread's new processes created in a new PID namespace, whose first
/// process the spawned command becomes; afterwards the thread's later children are created in
/// its own namespace again.
///
/// When the command ends, the kernel kills everything else in its namespace, so nothing a
/// maintainer script started (even through `setsid`, out of its process group) outlives it.
/// unshare(CLONE_NEWPID) changes only where this thread's children go (other threads are not
/// affected), and setns back to the thread's own namespace makes the next unshare possible.
fn in_own_pid_namespace<T>(spawn: impl FnOnce() -> T) -> std::io::Result<T> {
    let own = fs_err::File::open("/proc/thread-self/ns/pid")?;
    // SAFETY: FILES is not among the flags, so no descriptor table is unshared.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWPID) }?;
    let spawned = spawn();
    if let Err(e) = rustix::thread::move_into_link_name_space(
        own.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::ProcessID),
    ) {
        // The command runs already; this thread's next unshare will refuse and say so.
        tracing::error!("cannot return to the build's PID namespace: {e}");
    }
    Ok(spawned)
}

/// In the forked child, before exec: asks for SIGKILL when the thread that started it ends (so
/// a build killed with SIGKILL leaves no script running), then ends at once if the build went
/// before that request was in place. The child is in a new PID namespace, where getppid() says
/// 0 whatever happened, so the build is watched through its pidfd (`build_fd`), readable once it
/// has exited. Only async-signal-safe calls.
fn die_with_the_build(build_fd: Option<std::os::fd::RawFd>) -> std::io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    if let Some(fd) = build_fd {
        // SAFETY: the descriptor was opened before the fork and stays open until after exec.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let now = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if rustix::event::poll(&mut fds, Some(&now))? > 0 {
            // SAFETY: _exit ends this forked child without running the parent's destructors.
            unsafe { libc::_exit(1) };
        }
    }
    Ok(())
}

/// Waits up to [`TICK`] for the child to exit; returns whether it has (without reaping it when
/// its pidfd is there to tell).
fn wait_a_moment(child: &mut Child, exit_fd: Option<&OwnedFd>) -> std::io::Result<bool> {
    let Some(fd) = exit_fd else {
        // No pidfd (Linux before 5.3): ask, then wait a tick.
        if child.try_wait()?.is_some() {
            return Ok(true);
        }
        std::thread::sleep(TICK);
        return Ok(false);
    };
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let tick = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: i64::from(TICK_MS) * 1_000_000,
    };
    match rustix::event::poll(&mut fds, Some(&tick)) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// One output stream of the command, read from its file as it grows.
struct Capture {
    file: std::fs::File,
    offset: u64,
    all: Vec<u8>,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
}

impl Capture {
    fn new(file: std::fs::File) -> Self {
        Self {
            file,
            offset: 0,
            all: Vec::new(),
            partial: Vec::new(),
        }
    }

    /// Takes in what was written since the last call, passing on each complete line.
    fn read_new(&mut self, sink: &mut Sink, on_line: &mut dyn FnMut(&str)) {
        let mut buf = [0u8; 16 * 1024];
        // pread: the child shares the file offset, which must stay where it writes.
        while let Ok(n @ 1..) = self.file.read_at(&mut buf, self.offset) {
            self.offset += n as u64;
            self.partial.extend_from_slice(&buf[..n]);
        }
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.take_line(&line, sink, on_line);
        }
    }

    /// Takes in the rest, a last line without a newline included, and gives every byte.
    fn finish(mut self, sink: &mut Sink, on_line: &mut dyn FnMut(&str)) -> Vec<u8> {
        self.read_new(sink, on_line);
        if !self.partial.is_empty() {
            let mut line = std::mem::take(&mut self.partial);
            line.push(b'\n');
            sink.line(&line);
            on_line(&String::from_utf8_lossy(&line));
            line.pop();
            self.all.extend_from_slice(&line);
        }
        self.all
    }

    fn take_line(&mut self, line: &[u8], sink: &mut Sink, on_line: &mut dyn FnMut(&str)) {
        sink.line(line);
        on_line(&String::from_utf8_lossy(line));
        self.all.extend_from_slice(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(
            unescape_mountinfo(r"/tmp/a\040b\011c"),
            PathBuf::from("/tmp/a b\tc")
        );
        assert_eq!(
            unescape_mountinfo(r"/tmp/plain\"),
            PathBuf::from(r"/tmp/plain\")
        );
    }

    #[test]
    fn mountinfo_escapes_are_octal_bytes_and_nothing_else_is_changed() {
        for (field, expected) in [
            (r"/srv/a\134b", &b"/srv/a\\b"[..]),
            (r"/x/123\0401", b"/x/123 1"),
            (r"/x/1234567", b"/x/1234567"),
            (r"\011x", b"\tx"),
            (r"/x/\377", b"/x/\xff"),
            // Not escapes: a value past a byte, a digit that is not octal, too few digits.
            (r"/x/\400", br"/x/\400"),
            (r"/x/\048", br"/x/\048"),
            (r"/x/\04", br"/x/\04"),
        ] {
            assert_eq!(
                unescape_mountinfo(field).as_os_str().as_bytes(),
                expected,
                "{field}"
            );
        }
    }

    #[test]
    fn a_host_device_must_be_the_character_device_its_name_says() {
        check_host_node("/dev/null", 1, 3).expect("/dev/null is 1:3");
        for (host, major, minor) in [
            ("/dev/null", 1, 5),
            ("/dev/null", 5, 3),
            ("/dev/zero", 1, 3),
            // A directory's rdev is 0:0; it is still no character device.
            ("/", 0, 0),
        ] {
            let err = check_host_node(host, major, minor).expect_err(host);
            assert!(
                matches!(&err, StageError::UnsafePath { path, .. } if path == Path::new(host)),
                "{host} {major}:{minor}: {err}"
            );
        }
        assert!(check_host_node("/nonexistent/null", 1, 3).is_err());
    }

    #[test]
    fn mount_points_are_read_from_this_namespace() {
        let points = mount_points();
        assert!(points.contains(&PathBuf::from("/proc")), "{points:?}");
        assert!(is_mount_point(Path::new("/proc")));
        assert!(
            is_mount_point(Path::new("/proc/../proc/")),
            "resolved first"
        );
        assert!(!is_mount_point(Path::new("/proc/self")));
        assert!(!is_mount_point(Path::new("/nonexistent")));
        assert_eq!(
            mount_point_of(Path::new("/proc/self/fd")),
            Path::new("/proc")
        );
        assert_eq!(mount_point_of(Path::new("/proc")), Path::new("/proc"));
        let tmp = tempfile::tempdir().expect("temp dir");
        let below = mount_point_of(tmp.path());
        assert!(
            tmp.path().starts_with(&below) && below != tmp.path(),
            "{below:?}"
        );
        assert!(mounts_under(tmp.path()).is_empty());
        assert!(mounts_under(Path::new("/")).contains(&PathBuf::from("/proc")));
    }

    #[test]
    fn the_root_is_resolved_and_the_hosts_own_refused() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let real = fs_err::canonicalize(tmp.path()).expect("canonical");
        std::os::unix::fs::symlink(&real, real.join("link")).expect("symlink");
        assert_eq!(canonical(&real.join("link")).expect("resolved"), real);
        let err = canonical(Path::new("/tmp/..")).expect_err("/ by another name");
        assert!(
            matches!(&err, StageError::UnsafePath { path, .. } if path == Path::new("/")),
            "{err}"
        );
    }
}
