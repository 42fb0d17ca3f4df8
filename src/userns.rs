//! Rootless builds (`--mode unshare`): takes the calling user and their subordinate id ranges
//! (/etc/subuid, /etc/subgid); gives the same build run as root of a new user namespace, where
//! in-namespace id 0 is the caller and ids 1..=65535 are the caller's subordinate ids, so that
//! root and every system user inside the root get distinct ids, as mmdebstrap's unshare mode
//! maps them.
//!
//! Three processes take part:
//! 1. the caller's process checks every prerequisite (nothing is written before), starts the
//!    next one in a new user namespace, writes its id maps with `newuidmap`/`newgidmap` (the
//!    setuid helpers of Debian's uidmap package) and waits;
//! 2. the keeper, now root of the namespace, holds new mount, PID, UTS and IPC namespaces and
//!    starts the build as the first process of the PID namespace, so the build may mount proc
//!    and everything it starts ends with it;
//! 3. the build, the same program and arguments, which sees itself inside a user namespace
//!    ([`inside`]) and adapts what the kernel refuses there (device nodes, sysfs).
//!
//! The first two forward a SIGTERM, SIGINT or SIGHUP that a process sends them; signals from the
//! terminal reach all three already (they share the process group).

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};

/// Marks the processes started inside the namespace: `keeper`, then `build`.
pub const STAGE_ENV: &str = "DEBSTRAP_ONION_USERNS";

/// Ids the namespace maps besides 0: enough for every id Debian allocates, `nobody` (65534)
/// included.
pub const SUBORDINATE_IDS: u32 = 65535;

/// How a build gets the privileges it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// As root of the host (sudo).
    Root,
    /// In a new user namespace with the caller's subordinate ids.
    Unshare,
    /// Root when the effective uid is 0, else unshare.
    #[default]
    Auto,
}

/// What the process that parsed the command line does.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Build here, as root of the host.
    AsRoot,
    /// Build here: this is the build started in the namespace.
    Inside,
    /// Start the build in a new user namespace with these ids.
    Unshare(Box<Ids>),
}

/// The ids of the caller and the ranges mapped after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// First host id of the caller's subordinate uid range used (and its length is
    /// [`SUBORDINATE_IDS`]).
    pub subuid: u32,
    pub subgid: u32,
    pub newuidmap: PathBuf,
    pub newgidmap: PathBuf,
}

/// Why a rootless build cannot start; each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum RootlessError {
    #[error("--mode root needs root: run it with sudo, or use --mode unshare as a user")]
    NotRoot,
    #[error("user namespaces are disabled on this host ({setting} is {value}): {fix}")]
    Disabled {
        setting: String,
        value: String,
        fix: String,
    },
    #[error(
        "user {user} has no subordinate {kind} range of {SUBORDINATE_IDS} ids in {file}: add one \
         with `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}` (as root)"
    )]
    NoRange {
        user: String,
        kind: &'static str,
        file: PathBuf,
    },
    #[error(
        "{program} is not installed (looked in PATH): install Debian's uidmap package \
         (apt-get install uidmap)"
    )]
    NoHelper { program: &'static str },
    #[error("cannot name the calling user (uid {uid}): it has no entry in the user database")]
    NoUser { uid: u32 },
    #[error(
        "cannot create a user namespace ({source}): the kernel or a security policy refuses it \
         (check the sysctls user.max_user_namespaces and kernel.unprivileged_userns_clone, an \
         AppArmor or seccomp policy of a container), or run the build as root with --mode root"
    )]
    Unshare {
        #[source]
        source: std::io::Error,
    },
    #[error("{program} {args} failed ({status}): {stderr}")]
    Map {
        program: String,
        args: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("cannot run {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// Whether this process runs in a user namespace other than the host's: its uid map is not the
/// identity over every id.
pub fn inside() -> bool {
    match fs_err::read_to_string("/proc/self/uid_map") {
        Ok(map) => !is_identity_map(&map),
        Err(_) => false,
    }
}

fn is_identity_map(map: &str) -> bool {
    let lines: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    lines.len() == 1 && lines[0] == ["0", "0", "4294967295"]
}

/// The id the kernel shows for owners not mapped into this namespace (the host's root among
/// them, from inside ours).
pub fn overflow_uid() -> u32 {
    fs_err::read_to_string("/proc/sys/kernel/overflowuid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65534)
}

/// Decides how the build runs; for unshare, checks every prerequisite first (nothing is written
/// before this returns).
pub fn plan(mode: Mode) -> Result<Plan, RootlessError> {
    if std::env::var_os(STAGE_ENV).is_some_and(|v| v == "build") && inside() {
        return Ok(Plan::Inside);
    }
    let root = rustix::process::geteuid().is_root();
    match (mode, root) {
        (Mode::Root, true) | (Mode::Auto, true) => Ok(Plan::AsRoot),
        (Mode::Root, false) => Err(RootlessError::NotRoot),
        (Mode::Unshare, _) | (Mode::Auto, false) => {
            check_kernel(Path::new("/proc/sys"), !root)?;
            let uid = rustix::process::getuid().as_raw();
            let gid = rustix::process::getgid().as_raw();
            let user = crate::sys::user_by_uid(uid)
                .ok()
                .flatten()
                .ok_or(RootlessError::NoUser { uid })?
                .name;
            let subuid = subordinate_start(Path::new("/etc/subuid"), &user, uid, "uid")?;
            let subgid = subordinate_start(Path::new("/etc/subgid"), &user, uid, "gid")?;
            let path = std::env::var_os("PATH").unwrap_or_default();
            Ok(Plan::Unshare(Box::new(Ids {
                user,
                uid,
                gid,
                subuid,
                subgid,
                newuidmap: find_program("newuidmap", &path)?,
                newgidmap: find_program("newgidmap", &path)?,
            })))
        }
    }
}

/// Refuses the sysctls that disable user namespaces, naming the one to change. `sys` is
/// /proc/sys (a directory of the same shape in tests); `unprivileged` says whether the caller
/// is not root, whom the last two do not restrict.
pub fn check_kernel(sys: &Path, unprivileged: bool) -> Result<(), RootlessError> {
    let read = |rel: &str| {
        fs_err::read_to_string(sys.join(rel))
            .ok()
            .map(|v| v.trim().to_owned())
    };
    let disabled = |setting: &str, value: String, fix: &str| RootlessError::Disabled {
        setting: setting.to_owned(),
        value,
        fix: fix.to_owned(),
    };
    if let Some(v) = read("user/max_user_namespaces").filter(|v| v == "0") {
        return Err(disabled(
            "user.max_user_namespaces",
            v,
            "allow them with `sysctl -w user.max_user_namespaces=15000` (as root)",
        ));
    }
    // Debian's own switch for unprivileged user namespaces (older kernels).
    if unprivileged {
        if let Some(v) = read("kernel/unprivileged_userns_clone").filter(|v| v == "0") {
            return Err(disabled(
                "kernel.unprivileged_userns_clone",
                v,
                "allow them with `sysctl -w kernel.unprivileged_userns_clone=1` (as root)",
            ));
        }
        if let Some(v) = read("kernel/apparmor_restrict_unprivileged_userns").filter(|v| v == "1") {
            return Err(disabled(
                "kernel.apparmor_restrict_unprivileged_userns",
                v,
                "lift AppArmor's restriction with `sysctl -w \
                 kernel.apparmor_restrict_unprivileged_userns=0` (as root), or give this program \
                 an AppArmor profile that allows `userns`",
            ));
        }
    }
    Ok(())
}

/// The first id of `user`'s range in an /etc/subuid-shaped file that holds at least
/// [`SUBORDINATE_IDS`] ids (the user named by name or by uid, as shadow's tools accept).
pub fn subordinate_start(
    file: &Path,
    user: &str,
    uid: u32,
    kind: &'static str,
) -> Result<u32, RootlessError> {
    let text = fs_err::read_to_string(file).unwrap_or_default();
    let uid = uid.to_string();
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
            if owner != user && owner != uid {
                return None;
            }
            let start: u32 = start.parse().ok()?;
            let count: u32 = count.parse().ok()?;
            (count >= SUBORDINATE_IDS && start.checked_add(SUBORDINATE_IDS).is_some())
                .then_some(start)
        })
        .next()
        .ok_or_else(|| RootlessError::NoRange {
            user: user.to_owned(),
            kind,
            file: file.to_path_buf(),
        })
}

fn find_program(name: &'static str, path: &std::ffi::OsStr) -> Result<PathBuf, RootlessError> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|p| {
            fs_err::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or(RootlessError::NoHelper { program: name })
}

/// The child a forwarding handler sends signals to (0: none yet).
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Forwards SIGINT, SIGTERM and SIGHUP that another process sent (not the terminal's, which
/// reach the whole process group anyway) to [`CHILD`].
fn forward_signals() {
    extern "C" fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
        let code = unsafe { (*info).si_code };
        let child = CHILD.load(Ordering::SeqCst);
        // si_code <= 0: sent by kill(2), sigqueue(3) or tgkill(2), i.e. by a process.
        if code <= 0 && child > 0 {
            // SAFETY: kill is async-signal-safe.
            unsafe { libc::kill(child, signal) };
        }
    }
    let signals = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
    // SAFETY: the handler only reads an atomic and calls kill, both async-signal-safe.
    if let Err(err) = unsafe { crate::sys::handle_signals(&signals, forward) } {
        tracing::warn!("cannot forward signals to the build: {err}");
    }
}

/// This program again, with the same arguments, marked as `stage` of the namespace.
fn this_program(stage: &str) -> Command {
    let mut args = std::env::args_os();
    let arg0 = args
        .next()
        .unwrap_or_else(|| OsString::from("debstrap-onion"));
    let mut command = Command::new("/proc/self/exe");
    command.arg0(arg0).args(args).env(STAGE_ENV, stage);
    command
}

/// Waits for `child`, forwarding signals to it; its exit code (128 + the signal that ended it).
fn wait_forwarding(mut child: std::process::Child) -> Result<i32, RootlessError> {
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    let status = child.wait().map_err(|source| RootlessError::Spawn {
        program: "the build".into(),
        source,
    })?;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}

/// Runs the build in a new user namespace mapped with `ids`; returns its exit code.
pub fn run_unshared(ids: &Ids) -> Result<i32, RootlessError> {
    let pipe = || {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| {
            RootlessError::Spawn {
                program: "pipe".into(),
                source: e.into(),
            }
        })
    };
    // The child says "unshared" (its pid) on the first pipe; we answer "mapped" on the second.
    let (ready_read, ready_write) = pipe()?;
    let (go_read, go_write) = pipe()?;
    let (ready_w, go_r) = (ready_write.as_raw_fd(), go_read.as_raw_fd());
    let (ready_r, go_w) = (ready_read.as_raw_fd(), go_write.as_raw_fd());

    let mapper = {
        let ids = ids.clone();
        std::thread::spawn(move || write_maps(ready_read, go_write, &ids))
    };
    let mut command = this_program("keeper");
    // SAFETY: between fork and exec the closure makes only async-signal-safe system calls and
    // allocates nothing.
    unsafe {
        command.pre_exec(move || enter_namespaces(ready_w, go_r, ready_r, go_w));
    }
    forward_signals();
    let spawned = command.spawn();
    // Our copies go, so the mapper sees the end of the pipe if the child died before writing.
    drop(ready_write);
    drop(go_read);
    let mapped = mapper.join().unwrap_or(Ok(()));
    let child = match spawned {
        Ok(child) => child,
        Err(source) => {
            mapped?;
            return Err(RootlessError::Unshare { source });
        }
    };
    if let Err(err) = mapped {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&child),
            rustix::process::Signal::KILL,
        );
        return Err(err);
    }
    wait_forwarding(child)
}

/// In the forked child: a new user namespace, maps written by the parent, root of it, then the
/// other namespaces.
fn enter_namespaces(
    ready_w: RawFd,
    go_r: RawFd,
    ready_r: RawFd,
    go_w: RawFd,
) -> std::io::Result<()> {
    use rustix::thread::{unshare_unsafe, UnshareFlags};
    // The parent's ends: closed here, or the parent's "no" (closing its end) would never show.
    // SAFETY: these descriptors are this process's copies of the pipes' other ends.
    unsafe {
        libc::close(ready_r);
        libc::close(go_w);
    }
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    // SAFETY: FILES is not among the flags, so no descriptor table is unshared.
    unsafe { unshare_unsafe(UnshareFlags::NEWUSER) }?;
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    // SAFETY: the descriptor is open and ours until exec.
    let ready = unsafe { std::os::fd::BorrowedFd::borrow_raw(ready_w) };
    rustix::io::write(ready, &pid.to_ne_bytes())?;
    let go = unsafe { std::os::fd::BorrowedFd::borrow_raw(go_r) };
    let mut answer = [0u8; 1];
    if rustix::io::read(go, &mut answer)? != 1 {
        return Err(std::io::Error::from_raw_os_error(libc::EPERM));
    }
    // Per thread is per process here: this forked child has one thread.
    let (root_uid, root_gid) = (rustix::process::Uid::ROOT, rustix::process::Gid::ROOT);
    rustix::thread::set_thread_res_gid(root_gid, root_gid, root_gid)?;
    rustix::thread::set_thread_groups(&[])?;
    rustix::thread::set_thread_res_uid(root_uid, root_uid, root_uid)?;
    // SAFETY: as above, FILES is not among the flags.
    unsafe {
        unshare_unsafe(
            UnshareFlags::NEWNS
                | UnshareFlags::NEWPID
                | UnshareFlags::NEWUTS
                | UnshareFlags::NEWIPC,
        )
    }?;
    Ok(())
}

/// In a thread of the parent: waits for the child's pid, writes its maps, says go (or, by
/// closing the pipe, no).
fn write_maps(ready: OwnedFd, go: OwnedFd, ids: &Ids) -> Result<(), RootlessError> {
    let mut pid = [0u8; 4];
    let mut ready = std::fs::File::from(ready);
    if ready.read_exact(&mut pid).is_err() {
        // The child failed before unsharing; spawn reports why.
        return Ok(());
    }
    let pid = i32::from_ne_bytes(pid).to_string();
    let count = SUBORDINATE_IDS.to_string();
    let map = |program: &Path, own: u32, start: u32| -> Result<(), RootlessError> {
        let args = [
            pid.clone(),
            "0".into(),
            own.to_string(),
            "1".into(),
            "1".into(),
            start.to_string(),
            count.clone(),
        ];
        let output = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RootlessError::Spawn {
                program: program.display().to_string(),
                source,
            })?;
        if output.status.success() {
            return Ok(());
        }
        Err(RootlessError::Map {
            program: program.display().to_string(),
            args: args.join(" "),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    };
    map(&ids.newuidmap, ids.uid, ids.subuid)?;
    map(&ids.newgidmap, ids.gid, ids.subgid)?;
    rustix::io::write(&go, b"1").map_err(|e| RootlessError::Spawn {
        program: "the keeper".into(),
        source: e.into(),
    })?;
    Ok(())
}

/// The keeper's part, when this process is one ([`STAGE_ENV`] = `keeper` inside a user
/// namespace): starts the build as the first process of the new PID namespace and exits with
/// its code. `None` for every other process.
pub fn keeper() -> Option<i32> {
    if std::env::var_os(STAGE_ENV).is_none_or(|v| v != "keeper") || !inside() {
        return None;
    }
    let mut command = this_program("build");
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            Ok(())
        });
    }
    forward_signals();
    let code = match command.spawn() {
        Ok(child) => wait_forwarding(child),
        Err(source) => Err(RootlessError::Spawn {
            program: "the build in the namespace".into(),
            source,
        }),
    };
    Some(code.unwrap_or_else(|err| {
        eprintln!("error: {err}");
        1
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_full_identity_map_is_the_host() {
        assert!(is_identity_map("         0          0 4294967295\n"));
        assert!(!is_identity_map("0 1000 1\n1 100000 65535\n"));
        assert!(!is_identity_map("0 0 65536\n"));
    }

    #[test]
    fn a_range_is_found_by_name_or_uid_and_must_hold_every_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("subuid");
        fs_err::write(
            &file,
            "# comment\nalice:100000:1000\nbob:300000:65536\n1001:400000:65536\n",
        )
        .expect("write");
        assert_eq!(
            subordinate_start(&file, "bob", 1000, "uid").expect("bob"),
            300000
        );
        assert_eq!(
            subordinate_start(&file, "carol", 1001, "uid").expect("carol"),
            400000
        );
        let err = subordinate_start(&file, "alice", 999, "uid").expect_err("too small");
        assert!(err.to_string().contains("usermod --add-subuids"), "{err}");
        assert!(err.to_string().contains("alice"), "{err}");
        let err = subordinate_start(&dir.path().join("none"), "dave", 5, "gid").expect_err("none");
        assert!(err.to_string().contains("subordinate gid range"), "{err}");
    }

    #[test]
    fn each_disabling_sysctl_is_named_with_its_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let set = |rel: &str, value: &str| {
            let path = dir.path().join(rel);
            fs_err::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs_err::write(path, value).expect("write");
        };
        set("user/max_user_namespaces", "15000\n");
        assert!(check_kernel(dir.path(), true).is_ok());
        set("user/max_user_namespaces", "0\n");
        let err = check_kernel(dir.path(), false).expect_err("disabled");
        assert!(
            err.to_string()
                .contains("sysctl -w user.max_user_namespaces="),
            "{err}"
        );
        set("user/max_user_namespaces", "15000\n");
        set("kernel/unprivileged_userns_clone", "0\n");
        let err = check_kernel(dir.path(), true).expect_err("debian switch");
        assert!(
            err.to_string()
                .contains("kernel.unprivileged_userns_clone=1"),
            "{err}"
        );
        // Root is not restricted by the unprivileged switches.
        assert!(check_kernel(dir.path(), false).is_ok());
        set("kernel/unprivileged_userns_clone", "1\n");
        set("kernel/apparmor_restrict_unprivileged_userns", "1\n");
        let err = check_kernel(dir.path(), true).expect_err("apparmor");
        assert!(
            err.to_string()
                .contains("apparmor_restrict_unprivileged_userns=0"),
            "{err}"
        );
    }
}
