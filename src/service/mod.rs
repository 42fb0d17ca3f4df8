//! Services at run time, not a build stage: start / stop / status (here), `list` / `remove`
//! (`manage.rs`) and tor's live view (`tor_view.rs`) of a configured onion service: takes NAME and HOST_ROOT, finds the chroot
//! (schroot's chroot.d/NAME), the port (the nginx site) and the address (tor's hostname file);
//! gives typed reports for the CLI to print.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::Signal;

mod manage;
mod tor_view;

pub use manage::{list, remove, Listed, Removed, TorState};
pub use tor_view::{TorView, CONTROL_SOCKET, COOKIE_FILE};

use crate::onion::chroot::{self, Mounts, Sandbox};
use crate::onion::hsdir::service_dir;
use crate::onion::key::HOSTNAME_FILE;
use crate::onion::nginx::{self, Listen};
use crate::onion::{schroot, OnionError};

/// nginx's pid file inside the chroot (Debian's nginx.conf: `pid /run/nginx.pid;`).
const NGINX_PID: &str = "run/nginx.pid";
/// nginx inside the chroot.
const NGINX: &str = "/usr/sbin/nginx";
/// How long nginx gets to start answering or to exit.
const WAIT: Duration = Duration::from_secs(15);
/// Between two checks while waiting.
const POLL: Duration = Duration::from_millis(50);

/// Where a configured service lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub name: String,
    /// The chroot, from schroot's `directory=`.
    pub chroot: PathBuf,
    /// Where nginx answers, from the site's `listen`.
    pub endpoint: Endpoint,
    /// The `.onion` address, when HOST_ROOT/var/lib/tor/NAME/hostname is readable.
    pub address: Option<String>,
}

/// Where nginx answers, as the host reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The unix socket, as the host sees it.
    Unix(PathBuf),
    /// A port on 127.0.0.1.
    Tcp(u16),
}

impl Endpoint {
    fn of(listen: Listen, chroot: &Path) -> Endpoint {
        match listen {
            Listen::Socket => Endpoint::Unix(nginx::socket_on_host(chroot)),
            Listen::Tcp(port) => Endpoint::Tcp(port),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Tcp(port) => write!(f, "127.0.0.1:{port}"),
        }
    }
}

/// What asking tor to reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorReload {
    /// `systemctl reload tor` succeeded.
    Systemd,
    /// SIGHUP sent to the pid in /run/tor/tor.pid.
    Signalled { pid: i32 },
    /// No running tor was found: start tor for the service to be reachable.
    NotRunning,
    /// HOST_ROOT is not `/`: this host's tor does not read that torrc.
    OtherHostRoot { host_root: PathBuf },
}

/// Result of [`start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartReport {
    pub service: ServiceInfo,
    /// The systemd unit that runs nginx, when systemd manages the service.
    pub unit: Option<String>,
    /// nginx was already running and was told to reload its configuration instead.
    pub already_running: bool,
    pub tor: TorReload,
}

/// Result of [`stop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReport {
    pub service: ServiceInfo,
    /// The systemd unit stopped, when systemd manages the service.
    pub unit: Option<String>,
    /// nginx was running and has exited.
    pub was_running: bool,
    /// Mount points under the chroot that were unmounted.
    pub unmounted: Vec<PathBuf>,
}

/// Result of [`status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub service: ServiceInfo,
    /// The pid in the chroot's /run/nginx.pid when that process is alive.
    pub nginx_pid: Option<i32>,
    /// The HTTP status nginx answered on its endpoint for `Host:` the address, if it answered.
    pub http_status: Option<u16>,
    /// The socket's directory: `Ok` when it is 0710 and root's (and tor's group's), else what
    /// is wrong; `None` with `--local-port`.
    pub socket_access: Option<Result<String, String>>,
    /// Whether the host's tor runs; `None` when HOST_ROOT is not `/`.
    pub tor_running: Option<bool>,
    /// `tor --verify-config` on HOST_ROOT's torrc: `Ok`, or tor's words; `None` without tor.
    pub tor_config: Option<Result<(), String>>,
    /// Whether tor's hostname file names the address of the key beside it; `None` when the key
    /// cannot be read.
    pub hostname_matches_key: Option<bool>,
}

/// Finds NAME's chroot, port and address from the files [`crate::onion::configure`] wrote.
pub fn locate(name: &str, host_root: &Path) -> Result<ServiceInfo, OnionError> {
    crate::config::validate_name(name).map_err(|_| OnionError::BadName {
        name: name.to_string(),
    })?;
    let chroot = schroot::read_directory(host_root, name)?;
    let site_path = chroot.join(
        nginx::site_path(name)
            .strip_prefix("/")
            .expect("site path is absolute"),
    );
    let site = fs_err::read_to_string(&site_path).map_err(|source| OnionError::NoSite {
        path: site_path.clone(),
        source,
    })?;
    let listen = nginx::parse_listen(&site).ok_or(OnionError::NoListenPort { path: site_path })?;
    let hostname = host_root
        .join(service_dir(name).strip_prefix("/").expect("absolute"))
        .join(HOSTNAME_FILE);
    let address = fs_err::read_to_string(hostname)
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|a| !a.is_empty());
    Ok(ServiceInfo {
        name: name.to_string(),
        endpoint: Endpoint::of(listen, &chroot),
        chroot,
        address,
    })
}

/// The unit that runs NAME when systemd runs on HOST_ROOT and the unit is written there; `None`
/// when this program runs nginx itself.
fn managing_unit(host_root: &Path, name: &str) -> Option<String> {
    (crate::onion::unit::systemd_runs(host_root) && crate::onion::unit::installed(host_root, name))
        .then(|| crate::onion::unit::unit_name(name))
}

/// Runs `systemctl ARGS` (the one on PATH), failing unless it exits 0.
pub(crate) fn systemctl(args: &[&str]) -> Result<(), OnionError> {
    let command = format!("systemctl {}", args.join(" "));
    let out =
        crate::onion::host::run_host(&command, std::process::Command::new("systemctl").args(args))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(OnionError::HostCommandFailed {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Whether systemd reports `unit` active (`systemctl is-active --quiet UNIT`).
fn unit_active(unit: &str) -> bool {
    systemctl(&["is-active", "--quiet", unit]).is_ok()
}

/// The host's pid of the nginx master: the main process of NAME's unit when systemd manages
/// the service (`systemctl show --property=MainPID --value UNIT`), else see [`nginx_pid`].
pub(crate) fn running_pid(host_root: &Path, name: &str, chroot: &Path) -> Option<i32> {
    let by_systemd = managing_unit(host_root, name).and_then(|unit| {
        let out = std::process::Command::new("systemctl")
            .args(["show", "--property=MainPID", "--value", &unit])
            .stdin(std::process::Stdio::null())
            .output()
            .ok()?;
        let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        (out.status.success() && pid > 0).then_some(pid)
    });
    by_systemd.or_else(|| nginx_pid(chroot))
}

/// Starts nginx in NAME's chroot, waits until it accepts connections, then asks the host's tor
/// to reload its configuration. When systemd runs (HOST_ROOT/run/systemd/system exists) and
/// NAME's unit is written, systemd starts it (`systemctl start`, or `reload` when it is active,
/// after a `daemon-reload` for a unit a rebuild rewrote); otherwise this program mounts what
/// nginx needs (the mounts stay until [`stop`]) and starts it in its sandbox.
pub fn start(name: &str, host_root: &Path) -> Result<StartReport, OnionError> {
    let service = locate(name, host_root)?;
    let root = &service.chroot;
    if fs_err::symlink_metadata(root.join(NGINX.trim_start_matches('/'))).is_err() {
        return Err(OnionError::NginxMissing { root: root.clone() });
    }
    if let Some(unit) = managing_unit(host_root, name) {
        systemctl(&["daemon-reload"])?;
        let already_running = unit_active(&unit);
        if already_running {
            systemctl(&["reload", &unit])?;
        } else {
            systemctl(&["start", &unit])?;
        }
        if wait_until(|| connects(&service.endpoint)).is_none() {
            return Err(OnionError::NotAnswering {
                endpoint: service.endpoint.to_string(),
            });
        }
        let tor = reload_tor(host_root)?;
        return Ok(StartReport {
            service,
            unit: Some(unit),
            already_running,
            tor,
        });
    }
    let already_running = nginx_pid(root);
    // A running nginx still has the mounts the first start kept; mounting sysfs again on the
    // same place fails with EBUSY.
    let mounts = if already_running.is_some() {
        None
    } else {
        // A socket left by an nginx that was killed would make bind(2) fail.
        if let Endpoint::Unix(socket) = &service.endpoint {
            remove_stale_socket(socket)?;
        }
        Some(Mounts::mount(root)?)
    };
    if let Some(pid) = already_running {
        chroot::run_ok(root, &[NGINX, "-t", "-q"])?;
        signal(pid, Signal::HUP)?;
    } else {
        chroot::run_ok(root, &[NGINX, "-t", "-q"])?;
        let sandbox = Sandbox {
            own_network: matches!(service.endpoint, Endpoint::Unix(_)),
        };
        chroot::run_sandboxed(root, &[NGINX], sandbox)?;
    }
    if wait_until(|| connects(&service.endpoint)).is_none() {
        // Leave nothing half started: the mounts go when `mounts` drops.
        if already_running.is_none() {
            if let Some(pid) = nginx_pid(root) {
                let _ = signal(pid, Signal::QUIT);
            }
        }
        return Err(OnionError::NotAnswering {
            endpoint: service.endpoint.to_string(),
        });
    }
    if let Some(mounts) = mounts {
        mounts.keep();
    }
    let tor = reload_tor(host_root)?;
    Ok(StartReport {
        service,
        unit: None,
        already_running: already_running.is_some(),
        tor,
    })
}

/// Stops nginx in NAME's chroot: through systemd (`systemctl stop`) when it manages the service
/// (see [`start`]); then, as without systemd, an nginx this program started (`nginx -s quit`,
/// waiting until it exits) and the mounts [`start`] made.
pub fn stop(name: &str, host_root: &Path) -> Result<StopReport, OnionError> {
    let service = locate(name, host_root)?;
    let root = &service.chroot;
    let unit = managing_unit(host_root, name);
    let mut stopped_unit = false;
    if let Some(unit) = &unit {
        stopped_unit = unit_active(unit);
        // Also when inactive: it cancels a pending automatic restart.
        systemctl(&["stop", unit])?;
    }
    let stopped_here = match nginx_pid(root) {
        Some(pid) => {
            // What `nginx -s quit` sends; its pid file holds the master's pid inside its PID
            // namespace (1), not the host's.
            signal(pid, Signal::QUIT)?;
            wait_until(|| !alive(pid)).ok_or(OnionError::StopTimeout { pid })?;
            true
        }
        None => false,
    };
    let was_running = stopped_unit || stopped_here;
    let unmounted = chroot::unmount_all(root)?;
    Ok(StopReport {
        service,
        unit,
        was_running,
        unmounted,
    })
}

/// Whether nginx runs in NAME's chroot and what it answers on its port.
pub fn status(name: &str, host_root: &Path) -> Result<StatusReport, OnionError> {
    let service = locate(name, host_root)?;
    let nginx_pid = running_pid(host_root, name, &service.chroot);
    let host = service.address.as_deref().unwrap_or("localhost");
    let http_status = http_status(&service.endpoint, host);
    let socket_access = match &service.endpoint {
        Endpoint::Unix(socket) => Some(socket_access(socket)),
        Endpoint::Tcp(_) => None,
    };
    let key_dir = host_root.join(service_dir(name).strip_prefix("/").expect("absolute"));
    let hostname_matches_key = crate::onion::hsdir::read_key_dir(&key_dir)
        .ok()
        .map(|key| service.address.as_deref() == Some(key.address().as_str()));
    let torrc = host_root.join(crate::onion::TORRC.trim_start_matches('/'));
    Ok(StatusReport {
        nginx_pid,
        http_status,
        socket_access,
        tor_running: is_host(host_root).then(tor_running),
        tor_config: crate::onion::torrc::verify_file(&torrc),
        hostname_matches_key,
        service,
    })
}

/// Checks the socket's directory: 0710, owned by root, group tor's (when tor's user exists).
fn socket_access(socket: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt as _;
    let dir = socket.parent().unwrap_or(socket);
    let meta = fs_err::metadata(dir).map_err(|e| e.to_string())?;
    let (mode, uid, gid) = (meta.mode() & 0o7777, meta.uid(), meta.gid());
    let tor_gid = crate::sys::user_by_name(crate::onion::TOR_USER)
        .ok()
        .flatten()
        .map(|u| u.gid);
    let said = format!("{} is {mode:04o} uid {uid} gid {gid}", dir.display());
    if mode == 0o710 && uid == 0 && tor_gid.is_none_or(|g| g == gid) {
        Ok(said)
    } else {
        Err(format!("{said}; want 0710, uid 0, tor's group"))
    }
}

pub(crate) fn is_host(host_root: &Path) -> bool {
    fs_err::canonicalize(host_root).is_ok_and(|p| p == Path::new("/"))
}

/// Whether the host's tor runs: systemd's tor@default when systemd runs, else the pid in
/// /run/tor/tor.pid.
pub(crate) fn tor_running() -> bool {
    if Path::new("/run/systemd/system").exists() {
        return std::process::Command::new("systemctl")
            .args(["is-active", "--quiet", "tor@default"])
            .status()
            .is_ok_and(|s| s.success());
    }
    fs_err::read_to_string("/run/tor/tor.pid")
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .is_some_and(|pid| pid > 0 && alive(pid))
}

/// The HTTP status of `GET /` with `Host: host` at `endpoint`, or `None` if nothing answers.
pub fn http_status(endpoint: &Endpoint, host: &str) -> Option<u16> {
    let timeout = Some(Duration::from_secs(5));
    match endpoint {
        Endpoint::Tcp(port) => {
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, *port));
            let stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
            stream.set_read_timeout(timeout).ok()?;
            stream.set_write_timeout(timeout).ok()?;
            status_line(stream, host)
        }
        Endpoint::Unix(path) => {
            let stream = UnixStream::connect(path).ok()?;
            stream.set_read_timeout(timeout).ok()?;
            stream.set_write_timeout(timeout).ok()?;
            status_line(stream, host)
        }
    }
}

fn status_line(mut stream: impl std::io::Read + std::io::Write, host: &str) -> Option<u16> {
    let request = format!("GET / HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < head.len() {
        match stream.read(&mut head[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    let text = std::str::from_utf8(&head[..len]).ok()?;
    let mut words = text.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

/// Removes `socket` if it is a socket nobody answers on (nginx was killed before it could
/// remove it); anything else at that path is left for bind(2) to refuse.
fn remove_stale_socket(socket: &Path) -> Result<(), OnionError> {
    use std::os::unix::fs::FileTypeExt as _;
    let is_socket = fs_err::symlink_metadata(socket).is_ok_and(|m| m.file_type().is_socket());
    if is_socket && UnixStream::connect(socket).is_err() {
        fs_err::remove_file(socket).map_err(|source| OnionError::WriteChroot {
            path: socket.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// The host's pid of the nginx master running in the chroot `root`: the process whose root is
/// the chroot, named nginx, and pid 1 of its own PID namespace (as [`start`] runs it); for a
/// master started without one, the pid in the chroot's pid file if that process's root is the
/// chroot. The pid file alone is not trusted: the chroot writes it, and inside the namespace it
/// says 1.
pub(crate) fn nginx_pid(root: &Path) -> Option<i32> {
    let root = fs_err::canonicalize(root).ok()?;
    let in_chroot = |pid: i32| -> bool {
        fs_err::read_link(format!("/proc/{pid}/root"))
            .ok()
            .as_deref()
            == Some(root.as_path())
    };
    let entries = fs_err::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if !in_chroot(pid) {
            continue;
        }
        let Ok(status) = fs_err::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .map(str::to_owned)
        };
        let nspid = field("NSpid:").unwrap_or_default();
        let ids: Vec<&str> = nspid.split_whitespace().collect();
        if field("Name:").as_deref() == Some("nginx") && ids.len() > 1 && ids.last() == Some(&"1") {
            return Some(pid);
        }
    }
    let text = fs_err::read_to_string(root.join(NGINX_PID)).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    (pid > 1 && alive(pid) && in_chroot(pid)).then_some(pid)
}

/// How many rotated generations of each log [`rotate_logs`] keeps (a week, run daily).
pub const LOG_GENERATIONS: u32 = 7;

/// What [`rotate_logs`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateReport {
    /// The systemd service that rotated them, when systemd manages NAME (its timer's service).
    pub unit: Option<String>,
    /// Logs moved to `.1`.
    pub rotated: Vec<PathBuf>,
    /// nginx was told to reopen its logs (SIGUSR1).
    pub reopened: bool,
}

/// Rotates NAME's nginx logs in the chroot (`NAME.access.log` → `.1` → … →
/// `.`[`LOG_GENERATIONS`], the oldest dropped), then tells a running master to reopen them. When
/// systemd manages NAME, its log rotation service does the same (`systemctl start`), as its
/// daily timer does.
pub fn rotate_logs(name: &str, host_root: &Path) -> Result<RotateReport, OnionError> {
    let service = locate(name, host_root)?;
    if managing_unit(host_root, name).is_some() {
        let unit = crate::onion::unit::rotate_name(name);
        systemctl(&["start", &unit])?;
        return Ok(RotateReport {
            unit: Some(unit),
            rotated: Vec::new(),
            reopened: false,
        });
    }
    let dir = service.chroot.join("var/log/nginx");
    let mut rotated = Vec::new();
    for base in [format!("{name}.access.log"), format!("{name}.error.log")] {
        let log = dir.join(&base);
        let exists = fs_err::symlink_metadata(&log).is_ok_and(|m| m.is_file());
        if !exists {
            continue;
        }
        let rename_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OnionError::WriteChroot { path, source }
        };
        for generation in (1..LOG_GENERATIONS).rev() {
            let from = dir.join(format!("{base}.{generation}"));
            if fs_err::symlink_metadata(&from).is_ok() {
                let to = dir.join(format!("{base}.{}", generation + 1));
                fs_err::rename(&from, &to).map_err(rename_error(&from))?;
            }
        }
        fs_err::rename(&log, dir.join(format!("{base}.1"))).map_err(rename_error(&log))?;
        rotated.push(log);
    }
    let reopened = match nginx_pid(&service.chroot) {
        Some(pid) if !rotated.is_empty() => {
            signal(pid, Signal::USR1)?;
            true
        }
        _ => false,
    };
    Ok(RotateReport {
        unit: None,
        rotated,
        reopened,
    })
}

impl std::fmt::Display for RotateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(unit) = &self.unit {
            return write!(f, "logs rotated by {unit} (systemctl start)");
        }
        for log in &self.rotated {
            writeln!(f, "rotated {}", log.display())?;
        }
        let reopened = if self.reopened {
            "nginx reopened its logs"
        } else {
            "nginx not running"
        };
        write!(f, "{reopened}")
    }
}

/// The host's pid of the nginx master serving from `chroot`, if one runs (see [`start`]).
pub fn master_pid(chroot: &Path) -> Option<i32> {
    nginx_pid(chroot)
}

fn signal(pid: i32, signal: Signal) -> Result<(), OnionError> {
    let target = rustix::process::Pid::from_raw(pid).ok_or(OnionError::Signal {
        pid,
        source: rustix::io::Errno::SRCH,
    })?;
    rustix::process::kill_process(target, signal)
        .map_err(|source| OnionError::Signal { pid, source })
}

fn alive(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid)
        .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
}

fn connects(endpoint: &Endpoint) -> bool {
    match endpoint {
        Endpoint::Tcp(port) => TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, *port)),
            Duration::from_millis(500),
        )
        .is_ok(),
        Endpoint::Unix(path) => UnixStream::connect(path).is_ok(),
    }
}

/// Polls `ready` until it holds or [`WAIT`] has passed.
fn wait_until(mut ready: impl FnMut() -> bool) -> Option<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        if ready() {
            return Some(());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Asks the host's running tor to re-read torrc: systemd when it runs, else SIGHUP.
pub(crate) fn reload_tor(host_root: &Path) -> Result<TorReload, OnionError> {
    if !is_host(host_root) {
        return Ok(TorReload::OtherHostRoot {
            host_root: host_root.to_path_buf(),
        });
    }
    if Path::new("/run/systemd/system").exists() {
        // Debian's tor.service is a wrapper whose reload reaches tor@default.
        let active = std::process::Command::new("systemctl")
            .args(["is-active", "--quiet", "tor@default"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !active {
            return Ok(TorReload::NotRunning);
        }
        systemctl(&["reload", "tor"])?;
        return Ok(TorReload::Systemd);
    }
    let pid = fs_err::read_to_string("/run/tor/tor.pid")
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .filter(|pid| *pid > 0 && alive(*pid));
    match pid {
        Some(pid) => {
            signal(pid, Signal::HUP)?;
            Ok(TorReload::Signalled { pid })
        }
        None => Ok(TorReload::NotRunning),
    }
}

impl std::fmt::Display for TorReload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TorReload::Systemd => write!(f, "tor reloaded (systemctl reload tor)"),
            TorReload::Signalled { pid } => write!(f, "tor (pid {pid}) told to reload (SIGHUP)"),
            TorReload::NotRunning => write!(
                f,
                "tor is not running: start it (systemctl start tor) to publish the service"
            ),
            TorReload::OtherHostRoot { host_root } => write!(
                f,
                "tor not reloaded: the torrc was written under {}, not this host's /",
                host_root.display()
            ),
        }
    }
}

impl std::fmt::Display for ServiceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let address = self.address.as_deref().unwrap_or("(no hostname file yet)");
        writeln!(f, "onion address: {address}")?;
        writeln!(f, "chroot:        {}", self.chroot.display())?;
        write!(f, "nginx:         {}", self.endpoint)
    }
}

impl std::fmt::Display for StartReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.service)?;
        let nginx = if self.already_running {
            "nginx was running; configuration reloaded"
        } else {
            "nginx started"
        };
        match &self.unit {
            Some(unit) => writeln!(f, "{nginx} by systemd ({unit})")?,
            None => writeln!(f, "{nginx}")?,
        }
        write!(f, "{}", self.tor)
    }
}

impl std::fmt::Display for StopReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.service)?;
        let nginx = if self.was_running {
            "nginx stopped"
        } else {
            "nginx was not running"
        };
        if let Some(unit) = &self.unit {
            write!(f, "{unit} stopped (systemctl stop); ")?;
        }
        write!(f, "{nginx}; {} mounts removed", self.unmounted.len())
    }
}

impl std::fmt::Display for StatusReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.service)?;
        match &self.socket_access {
            Some(Ok(said)) => writeln!(f, "socket:        ok ({said})")?,
            Some(Err(said)) => writeln!(f, "socket:        WRONG ({said})")?,
            None => writeln!(f, "socket:        none (TCP, --local-port)")?,
        }
        match self.tor_running {
            Some(true) => writeln!(f, "tor:           running")?,
            Some(false) => writeln!(f, "tor:           not running")?,
            None => writeln!(f, "tor:           not checked (HOST_ROOT is not /)")?,
        }
        match &self.tor_config {
            Some(Ok(())) => writeln!(f, "torrc:         valid (tor --verify-config)")?,
            Some(Err(said)) => writeln!(f, "torrc:         REFUSED by tor: {said}")?,
            None => writeln!(f, "torrc:         not checked (tor is not installed)")?,
        }
        match self.hostname_matches_key {
            Some(true) => writeln!(f, "hostname:      matches the key")?,
            Some(false) => writeln!(f, "hostname:      DOES NOT match the key")?,
            None => writeln!(f, "hostname:      key unreadable")?,
        }
        match (self.nginx_pid, self.http_status) {
            (_, Some(code)) => write!(f, "answering: HTTP {code}"),
            (Some(pid), None) => write!(f, "nginx runs (pid {pid}) but does not answer"),
            (None, None) => write!(f, "not running"),
        }
    }
}
