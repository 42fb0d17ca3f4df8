//! The onion service's unit run by a real systemd: a bookworm root built by us with systemd and
//! dbus boots under `systemd-nspawn -b` (systemd 252, which has no `PrivatePIDs=`), the chroot of
//! a default onion build (bookworm, then trixie: each chroot's own util-linux makes nginx's PID
//! namespace) is bound into it at its own path, and the unit the build wrote is started there.
//! Read from outside through /proc: nginx's master is in a PID namespace other than the
//! container's init, holds no CAP_SYS_ADMIN, and its network namespace has only `lo`; curl gets
//! the site through the socket; `systemctl reload` keeps the master; `systemctl stop` leaves no
//! process in the chroot.
//!
//! The container gets a private mount namespace whose /run/systemd is a tmpfs holding the
//! `inaccessible` nodes a booted systemd would have made (this machine's PID 1 is not systemd),
//! so nothing of it stays on the host; nspawn runs with `--register=no --keep-unit`, which need
//! no system bus on the host.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::host::{assert_ok, host_mirror, require_program, require_root, shared_cache};

/// How long the container gets to boot, and each wait below.
const WAIT: Duration = Duration::from_secs(60);
const CAP_SYS_ADMIN: u32 = 21;

fn ours(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
        .args(args)
        .output()
        .expect("run debstrap-onion");
    assert_ok(&format!("debstrap-onion {args:?}"), &out);
    out
}

/// Sets up what a booted systemd leaves in /run/systemd for nspawn, in the private mount
/// namespace `unshare` made, then runs nspawn.
const PREPARE: &str = r#"set -e
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
i=/run/systemd/inaccessible
mkdir -m 0755 "$i"
: >"$i/reg" && chmod 0000 "$i/reg"
mkdir -m 0000 "$i/dir"
mknod -m 0000 "$i/chr" c 0 0
mknod -m 0000 "$i/blk" b 0 0
mkfifo -m 0000 "$i/fifo"
exec "$@"
"#;

/// A booted container, powered off (and killed if it will not go) when dropped.
struct Container {
    nspawn: Child,
    /// The host's pid of the container's systemd.
    init: i32,
}

impl Container {
    fn boot(root: &Path, bind: &Path, name: &str) -> Container {
        let nspawn = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                PREPARE,
                "sh",
            ])
            .args(["systemd-nspawn", "--quiet", "--register=no", "--keep-unit"])
            .args(["--console=pipe", "--machine", name, "--boot", "--directory"])
            .arg(root)
            .arg(format!("--bind={0}:{0}", bind.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("systemd-nspawn");
        let nspawn_pid = i32::try_from(nspawn.id()).expect("pid");
        let mut container = Container { nspawn, init: 0 };
        container.init = wait_for(|| {
            children(nspawn_pid)
                .into_iter()
                .find(|pid| comm(*pid).as_deref() == Some("systemd"))
        })
        .expect("the container's systemd");
        // Until systemd answers ("offline" before it has made /run/systemd/system, early in
        // boot), then until it has finished booting: running, or degraded by a unit of the
        // container's own.
        let state = wait_for(|| {
            let out = container.systemctl(&["is-system-running", "--wait"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (!state.is_empty() && state != "offline").then_some(state)
        })
        .expect("the container's systemd answers");
        assert!(
            state == "running" || state == "degraded",
            "the container booted into {state:?}"
        );
        container
    }

    /// `systemctl ARGS` run inside the container (all its namespaces).
    fn systemctl(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--target={}", self.init))
            .args(["--all", "systemctl", "--no-pager"])
            .args(args)
            .output()
            .expect("nsenter systemctl")
    }

    fn systemctl_ok(&self, args: &[&str]) -> Output {
        let out = self.systemctl(args);
        if !out.status.success() {
            let journal = Command::new("nsenter")
                .arg(format!("--target={}", self.init))
                .args(["--all", "journalctl", "--no-pager", "-b", "-n", "40"])
                .output()
                .expect("journalctl");
            panic!(
                "systemctl {args:?}: {}{}\njournal:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&journal.stdout)
            );
        }
        out
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.systemctl(&["poweroff"]);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

/// Polls `found` until it gives something or [`WAIT`] has passed.
fn wait_for<T>(mut found: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = found() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn children(pid: i32) -> Vec<i32> {
    fs_err::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn comm(pid: i32) -> Option<String> {
    fs_err::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_string())
}

/// Every process whose root directory is `chroot` (the same inode: its path as another mount
/// namespace names it may differ), with its command line.
fn processes_in(chroot: &Path) -> Vec<(i32, String)> {
    use std::os::unix::fs::MetadataExt as _;
    let id = |meta: std::fs::Metadata| (meta.dev(), meta.ino());
    let chroot = id(fs_err::metadata(chroot).expect("the chroot"));
    fs_err::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| fs_err::metadata(format!("/proc/{pid}/root")).map(id).ok() == Some(chroot))
        .map(|pid| {
            let cmdline = fs_err::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            (pid, String::from_utf8_lossy(&cmdline).replace('\0', " "))
        })
        .collect()
}

fn master(chroot: &Path) -> Option<i32> {
    processes_in(chroot)
        .into_iter()
        .find(|(_, cmdline)| cmdline.starts_with("nginx: master process"))
        .map(|(pid, _)| pid)
}

fn status_field(pid: i32, key: &str) -> String {
    let status = fs_err::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

fn ns(pid: i32, kind: &str) -> PathBuf {
    fs_err::read_link(format!("/proc/{pid}/ns/{kind}")).expect("ns link")
}

/// The status code curl gets through the socket for the onion Host.
fn http_status(socket: &Path, host: &str) -> String {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(["--output", "/dev/null", "--write-out", "%{http_code}"])
        .arg("--unix-socket")
        .arg(socket)
        .arg("-H")
        .arg(format!("Host: {host}"))
        .arg(format!("http://{host}/"))
        .output()
        .expect("curl");
    assert_ok("curl --unix-socket", &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn real_archive_root_systemd_252_runs_the_unit_with_nginx_in_its_own_pid_namespace() {
    if !require_root()
        || !require_program("systemd-nspawn")
        || !require_program("nsenter")
        || !require_program("curl")
    {
        return;
    }
    let Some(mirror) = host_mirror() else { return };
    let cache = shared_cache();
    let cache = cache.to_str().expect("utf-8");
    let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let machine = dir.path().join("machine");
    let machine_s = machine.to_str().expect("utf-8");
    ours(&[
        "build",
        "--quiet",
        "--no-onion",
        "--include",
        "systemd,dbus",
        "--cache-dir",
        cache,
        "bookworm",
        machine_s,
        &mirror,
    ]);
    for suite in ["bookworm", "trixie"] {
        let name = format!("sd-{suite}");
        let chroot = dir.path().join(&name);
        let host = dir.path().join(format!("host-{suite}"));
        fs_err::create_dir_all(host.join("etc")).expect("host root");
        // HOST_ROOT stands for the host: its user databases start as copies of the host's.
        for db in ["passwd", "group", "shadow", "gshadow"] {
            fs_err::copy(Path::new("/etc").join(db), host.join("etc").join(db)).expect("copy");
        }
        let (chroot_s, host_s) = (
            chroot.to_str().expect("utf-8"),
            host.to_str().expect("utf-8"),
        );
        ours(&[
            "build",
            "--quiet",
            "--name",
            &name,
            "--host-root",
            host_s,
            "--cache-dir",
            cache,
            suite,
            chroot_s,
            &mirror,
        ]);
        // HOST_ROOT has no systemd to ask: the unit is the one for any systemd.
        let unit = format!("debstrap-onion-{name}.service");
        let text =
            fs_err::read_to_string(host.join("etc/systemd/system").join(&unit)).expect("the unit");
        assert!(!text.contains("\nPrivatePIDs=yes\n"), "{text}");
        fs_err::copy(
            host.join("etc/systemd/system").join(&unit),
            machine.join("etc/systemd/system").join(&unit),
        )
        .expect("install the unit");

        let container = Container::boot(&machine, &chroot, &format!("debstrap-{name}"));
        container.systemctl_ok(&["start", &unit]);
        let address = fs_err::read_to_string(host.join(format!("var/lib/tor/{name}/hostname")))
            .expect("hostname");
        let socket = chroot.join("run/onion/nginx.sock");
        // Type=exec: started once unshare runs; nginx listens a moment later.
        wait_for(|| std::os::unix::net::UnixStream::connect(&socket).ok())
            .expect("nginx listens on its socket");
        assert_eq!(http_status(&socket, address.trim()), "200");

        let pid = master(&chroot).expect("nginx's master runs in the chroot");
        assert_ne!(
            ns(pid, "pid"),
            ns(container.init, "pid"),
            "{suite}: nginx shares the PID namespace of the container's systemd"
        );
        assert_eq!(
            status_field(pid, "NSpid:").split_whitespace().last(),
            Some("1"),
            "{suite}: nginx's master is its namespace's first process"
        );
        for set in ["CapEff:", "CapPrm:", "CapBnd:", "CapInh:", "CapAmb:"] {
            let caps = u64::from_str_radix(&status_field(pid, set), 16).expect("hex");
            assert_eq!(caps & (1 << CAP_SYS_ADMIN), 0, "{suite}: {set} {caps:#x}");
        }
        assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
        // Its network namespace, as the kernel lists it: the loopback and nothing else.
        let devices = fs_err::read_to_string(format!("/proc/{pid}/net/dev")).expect("net/dev");
        let names: Vec<&str> = devices
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(str::trim)
            .collect();
        assert_eq!(names, ["lo"], "{suite}: {devices}");
        assert_ne!(ns(pid, "net"), ns(container.init, "net"));

        // A reload reaches nginx (not its wrapper): the same master answers.
        container.systemctl_ok(&["reload", &unit]);
        assert_eq!(
            master(&chroot),
            Some(pid),
            "{suite}: the reload replaced the master"
        );
        assert_eq!(http_status(&socket, address.trim()), "200");

        container.systemctl_ok(&["stop", &unit]);
        assert_eq!(processes_in(&chroot), [], "{suite}: left after stop");
        let result = container.systemctl_ok(&["show", "--property=Result", "--value", &unit]);
        assert_eq!(String::from_utf8_lossy(&result.stdout).trim(), "success");
        drop(container);
    }
}
