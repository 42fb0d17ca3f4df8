//! Onion: takes a staged chroot and the onion settings; gives the nginx site in the chroot, and on
//! the host (under HOST_ROOT, DESTDIR-like) the v3 onion key, the torrc entry and the schroot
//! definition; plus the start / stop / status commands of a configured service.
//!
//! [`configure`] works in this order so the host is changed only for a chroot that checks out:
//! the key (its address is the nginx `server_name`), the chroot's user, site and web root,
//! `nginx -t` inside the chroot, then torrc and schroot on the host. Every file is written
//! through a temporary file and a rename; re-running with the same NAME converges to the same
//! files and keeps the key.

pub(crate) mod chroot;
pub(crate) mod client_auth;
mod files;
pub(crate) mod host;
pub(crate) mod hsdir;
pub mod key;
pub(crate) mod nginx;
pub(crate) mod schroot;
mod seccomp;
mod site_copy;
pub(crate) mod torrc;
pub(crate) mod unit;
mod user;

use std::fmt;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};

use crate::config::OnionConfig;
use crate::root::Root;
use crate::stage::RootDir;
use crate::HeldRoot;

pub use crate::service::{
    http_status, locate, master_pid, rotate_logs, start, status, stop, Endpoint, RotateReport,
    ServiceInfo, StartReport, StatusReport, StopReport, TorReload, LOG_GENERATIONS,
};
pub use crate::service::{list, remove, Listed, Removed, TorState};
pub use crate::service::{TorView, CONTROL_SOCKET, COOKIE_FILE};
pub use client_auth::{is_client_name, Client, ClientKey, CLIENT_KEYS};
pub use hsdir::{read_key_dir, service_dir, KeyOrigin, TOR_USER};
pub use key::{onion_address, parse_address, KeyFormatError, OnionKey};
pub use nginx::{
    access_log, default_index, parse_listen, site, site_path, socket_on_host, web_root, Listen,
    SiteProblem, HEADERS, SOCKET, SOCKET_DIR,
};
pub use schroot::{chroot_file, chroot_file_path, profile_files, profile_name, SchrootUser};
pub use torrc::{block as torrc_block, update as update_torrc, TorrcProblem, TORRC};
pub use unit::{
    enable, installed as unit_installed, systemd_runs, systemd_version, timer, unit, unit_name,
    UnitSpec, ASSUMED_SYSTEMD, UNIT_DIR,
};
pub use user::{is_user_name, ChrootUser};

/// What to publish.
#[derive(Debug, Clone, Copy)]
pub struct OnionRequest<'a> {
    /// Service and chroot name.
    pub name: &'a str,
    /// Where the chroot is now (may be a temporary build directory), held by its descriptor.
    pub root: &'a HeldRoot,
    /// Where the chroot will be, as seen from the host's `/` (written into schroot's file).
    pub chroot_path: &'a Path,
    pub suite: &'a str,
    pub config: &'a OnionConfig,
}

/// The published service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionReport {
    /// The 56-character v3 address with `.onion`.
    pub address: String,
    pub name: String,
    /// The chroot as seen from `/`.
    pub chroot_path: PathBuf,
    pub onion_port: u16,
    /// Where nginx listens: the socket in the chroot, or 127.0.0.1:PORT on request.
    pub listen: Listen,
    /// Whether the key is new, kept from an earlier build, or imported.
    pub key_origin: KeyOrigin,
    /// The user created (or found) in the chroot.
    pub user: Option<ChrootUser>,
    /// The authorized clients, with where a new client's private line was written.
    pub clients: Vec<Client>,
    /// Host-side paths written, under HOST_ROOT: key directory, torrc, schroot file, profile.
    pub host_files: Vec<PathBuf>,
    /// What to run next, in order.
    pub next_steps: Vec<NextStep>,
}

/// A command the user runs next, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextStep {
    pub command: String,
    pub purpose: &'static str,
}

impl fmt::Display for OnionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "onion address: {}", self.address)?;
        writeln!(f, "chroot:        {}", self.chroot_path.display())?;
        writeln!(
            f,
            "serves:        http://{}:{} -> nginx on {}",
            self.address,
            self.onion_port,
            self.listen.tor_target(&self.chroot_path)
        )?;
        for client in &self.clients {
            match &client.private_file {
                Some(file) => writeln!(
                    f,
                    "client {}: give {} to that client (its ClientOnionAuthDir), then delete it",
                    client.name,
                    file.display()
                )?,
                None => writeln!(f, "client {}: key kept", client.name)?,
            }
        }
        for step in &self.next_steps {
            writeln!(f, "  {:<40} # {}", step.command, step.purpose)?;
        }
        Ok(())
    }
}

/// Why the onion stage failed.
#[derive(Debug, thiserror::Error)]
pub enum OnionError {
    #[error("invalid service name {name:?}: use letters, digits, '-', '_' or '.'")]
    BadName { name: String },
    #[error("invalid client name {name:?}: use 1 to 64 letters, digits, '-' or '_'")]
    BadClientName { name: String },
    #[error("invalid user name {name:?}: use lower-case letters, digits, '_' or '-', starting with a letter or '_'")]
    BadUserName { name: String },
    #[error("cannot draw random bytes for a new onion key")]
    Random(#[source] std::io::Error),
    #[error("cannot look up the host user {user}")]
    UserLookup {
        user: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the onion key file {path}")]
    ReadKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a regular file")]
    NotRegularFile { path: PathBuf },
    #[error("{path} is not a tor v3 key file")]
    BadKeyFile {
        path: PathBuf,
        #[source]
        problem: KeyFormatError,
    },
    #[error("{path} does not hold the public key of the secret key beside it")]
    PublicKeyMismatch { path: PathBuf },
    #[error("{path} exists and is not a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "{dir} already holds the key of {existing}; refusing to replace it with the imported \
         key of {imported} (move that directory away first if the address is to change)"
    )]
    KeyConflict {
        dir: PathBuf,
        existing: String,
        imported: String,
    },
    #[error(
        "{dir} now holds the key of {found}, not the planned key of {planned}; something else \
         wrote it during this build: check that directory, then retry"
    )]
    KeyChanged {
        dir: PathBuf,
        found: String,
        planned: String,
    },
    #[error("cannot write the onion service directory {dir}")]
    WriteKey {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot update the torrc {path}")]
    WriteTorrc {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing to edit the torrc {path}")]
    Torrc {
        path: PathBuf,
        #[source]
        problem: TorrcProblem,
    },
    #[error("refusing to replace the symlink {path}; point the tool at the file it names")]
    SymlinkRefused { path: PathBuf },
    #[error(
        "chroot path {path:?} must be absolute and free of line breaks to go in schroot's file"
    )]
    BadChrootPath { path: PathBuf },
    #[error(
        "the socket path {path:?} holds a space, quote or backslash, which tor's \
         HiddenServicePort cannot take: build in another directory, or give --local-port"
    )]
    SocketPath { path: PathBuf },
    #[error(
        "the chroot path {path:?} cannot go in a systemd unit as it is: use letters, digits \
         and '/', '.', '_', '-', '+', '@' only"
    )]
    UnitPath { path: PathBuf },
    #[error("cannot write the systemd unit {path}")]
    WriteUnit {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the schroot file {path}")]
    WriteSchroot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} exists and was not written by debstrap-onion; remove it or choose another --name"
    )]
    ForeignFile { path: PathBuf },
    #[error("no onion service {name:?} is configured ({path} is unreadable); build it first")]
    NotConfigured {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} has no directory= line")]
    SchrootWithoutDirectory { path: PathBuf },
    #[error(
        "refusing to use {path} in the image {root} as the host-side files' root: it already \
         exists (a package or hook made it); remove it in a hook or build without it"
    )]
    Unconfined { root: PathBuf, path: PathBuf },
    #[error("cannot write {path} in the chroot")]
    WriteChroot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot publish the site directory {path}")]
    Site {
        path: PathBuf,
        #[source]
        problem: SiteProblem,
    },
    #[error("no free uid or gid between 1000 and 59999 in {root}/etc/passwd")]
    NoFreeId { root: PathBuf },
    #[error("nginx is not installed in {root} (the build must include the nginx package)")]
    NginxMissing { root: PathBuf },
    #[error("cannot run `{command}` in the chroot {root}")]
    Chroot {
        root: PathBuf,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed in the chroot {root} ({status}): {stderr}")]
    CommandFailed {
        root: PathBuf,
        command: String,
        status: String,
        stderr: String,
    },
    #[error("cannot run `{command}` on the host")]
    Host {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    HostCommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("cannot prepare the chroot {root}")]
    InChroot {
        root: PathBuf,
        #[source]
        source: Box<crate::stage::StageError>,
    },
    #[error(
        "cannot reach the mount {path} from the chroot without following a symlink; it is left \
         in place"
    )]
    Unreachable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock the host root {path} against other builds")]
    LockHost {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the host root {path} is still locked by another build after {seconds}s; wait for that \
         build to end, then retry"
    )]
    HostLocked { path: PathBuf, seconds: u64 },
    #[error("tor refuses the new torrc for {path}, which is left as it was: {output}")]
    TorrcRejected { path: PathBuf, output: String },
    #[error(transparent)]
    Cancelled(#[from] crate::cancel::Cancelled),
    #[error("cannot unmount {path}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: rustix::io::Errno,
    },
    #[error("cannot read the nginx site {path}; was the service built with this name?")]
    NoSite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} has no `listen unix:{SOCKET};` or `listen 127.0.0.1:PORT;` line")]
    NoListenPort { path: PathBuf },
    #[error("nginx started but nothing accepts connections on {endpoint}")]
    NotAnswering { endpoint: String },
    #[error("nginx (pid {pid}) did not exit after `nginx -s quit`")]
    StopTimeout { pid: i32 },
    #[error("cannot signal process {pid}")]
    Signal {
        pid: i32,
        #[source]
        source: rustix::io::Errno,
    },
}

/// The HOST_ROOT of an image build: [`crate::config::IMAGE_HOST_ROOT`] inside the root, made
/// fresh by the confined layer and reached for the rest of the build through a descriptor, never
/// through the root's path again.
#[derive(Debug)]
pub struct ImageHostRoot {
    /// Open for as long as the pinned name is used: the name goes through it.
    _dir: OwnedFd,
    pinned: PathBuf,
    shown: PathBuf,
}

impl ImageHostRoot {
    /// The name the host-side writers use: the directory's /proc/self/fd entry, which no rename
    /// of the build directory can redirect. The descriptor is inherited by the commands the
    /// stage runs (`tor --verify-config` reads its candidate torrc under this name).
    pub fn path(&self) -> &Path {
        &self.pinned
    }

    /// Where the directory is under the root's path, for messages.
    pub fn shown(&self) -> &Path {
        &self.shown
    }
}

/// Creates [`crate::config::IMAGE_HOST_ROOT`] inside the held image `root`, 0700 (it will hold
/// the onion key): a new, empty directory, since packages and hooks ran as root in the image and
/// whatever they left there (a symlink to the host's /etc, say) must not steer the host-side
/// writers. Its parents are resolved inside the root.
pub fn image_host_root(held: &HeldRoot) -> Result<ImageHostRoot, OnionError> {
    let root = Root::held(held).map_err(nginx::in_chroot_at(held.path()))?;
    let rel = crate::config::IMAGE_HOST_ROOT;
    let shown = root.host_path(rel);
    let error = nginx::in_chroot(&root, rel);
    let (parent, name) = rel.rsplit_once('/').expect("IMAGE_HOST_ROOT has a parent");
    let parent = root
        .create_dir_all(parent.as_bytes(), 0o755)
        .map_err(&error)?;
    let dir = match crate::root::make_dir_in(parent.as_fd(), name.as_bytes(), 0o700) {
        Ok(dir) => dir,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => {
            return Err(OnionError::Unconfined {
                root: held.path().to_path_buf(),
                path: shown,
            })
        }
        Err(e) => return Err(error(e)),
    };
    // Inherited by the commands the stage runs, so the pinned name works for them too.
    rustix::io::fcntl_setfd(&dir, rustix::io::FdFlags::empty()).map_err(|e| error(e.into()))?;
    let pinned = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&dir)
    ));
    Ok(ImageHostRoot {
        _dir: dir,
        pinned,
        shown,
    })
}

/// A configured service whose host-side changes are not yet final: dropped without
/// [`Configured::keep`] (a later step of the build failed or was stopped), it puts the host back
/// as it was; until then it holds the host lock, so no other build plans against half a change.
#[derive(Debug)]
#[must_use = "dropping it rolls the host-side changes back"]
pub struct Configured {
    report: OnionReport,
    changes: host::HostChanges,
}

impl Configured {
    /// The service as it will be once kept.
    pub fn report(&self) -> &OnionReport {
        &self.report
    }

    /// Keeps the host-side changes and releases the host lock.
    pub fn keep(self) -> OnionReport {
        self.changes.keep();
        self.report
    }

    /// Keeps the host-side changes now and releases the host lock, for a HOST_ROOT inside the
    /// root being built (an image's), which a failed build removes whole; the report names
    /// its files under the root's path instead of the descriptor they were written through.
    pub fn keep_now(&mut self, host_root: &ImageHostRoot) {
        std::mem::take(&mut self.changes).keep();
        let clients = self.report.clients.iter_mut();
        let files = clients.filter_map(|client| client.private_file.as_mut());
        for file in files.chain(&mut self.report.host_files) {
            if let Ok(below) = file.strip_prefix(host_root.path()) {
                *file = host_root.shown().join(below);
            }
        }
    }
}

/// Writes the site, key, torrc entry and schroot definition, and checks `nginx -t` in the chroot;
/// the host-side files stay only once the result is [kept](Configured::keep).
pub fn configure(request: &OnionRequest) -> Result<Configured, OnionError> {
    configure_with(request, true)
}

/// [`configure`] without running `nginx -t`, for roots that have no nginx (tests, dry runs).
pub fn configure_unchecked(request: &OnionRequest) -> Result<Configured, OnionError> {
    configure_with(request, false)
}

/// Runs `nginx -t` inside the held chroot `root`, with the chroot's mounts for the duration;
/// the root is reached through its descriptor, never looked up by its path.
pub fn check_nginx(root: &HeldRoot) -> Result<(), OnionError> {
    let path = root.path();
    let nginx = rustix::fs::statat(
        root.fd(),
        "usr/sbin/nginx",
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    );
    if nginx.is_err() {
        return Err(OnionError::NginxMissing {
            root: path.to_path_buf(),
        });
    }
    // A private mount namespace: the mounts go with this process, however it ends.
    let in_chroot = |source| OnionError::InChroot {
        root: path.to_path_buf(),
        source: Box::new(source),
    };
    let held = RootDir::held(root).map_err(in_chroot)?;
    let checked = crate::stage::in_private_mounts(|| {
        let dir = held.in_this_namespace(path)?;
        Ok(chroot::Mounts::mount_in(&dir)
            .and_then(|_mounts| chroot::run_ok_at(&dir, path, &["/usr/sbin/nginx", "-t", "-q"])))
    })
    .map_err(in_chroot)?;
    checked.map(drop)
}

fn configure_with(request: &OnionRequest, check: bool) -> Result<Configured, OnionError> {
    let OnionRequest {
        name,
        root: held,
        chroot_path,
        suite,
        config,
    } = *request;
    crate::config::validate_name(name).map_err(|_| OnionError::BadName {
        name: name.to_string(),
    })?;
    if let Some(user) = &config.user {
        if !user::is_user_name(user) {
            return Err(OnionError::BadUserName { name: user.clone() });
        }
    }
    if let Some(bad) = config
        .auth_clients
        .iter()
        .find(|c| !client_auth::is_client_name(c))
    {
        return Err(OnionError::BadClientName { name: bad.clone() });
    }
    crate::cancel::check()?;
    // Every file inside the chroot is written through the held root's descriptor, its path
    // resolved inside the root; the root's path is never looked up again.
    let root = Root::held(held).map_err(nginx::in_chroot_at(held.path()))?;
    let root = &root;
    let host_root = config.host_root.as_deref().unwrap_or(Path::new("/"));
    // The host lock comes before anything is read, so what is planned below is still true when
    // it is written; it is held in `changes` until they are kept or rolled back.
    files::create_dir_all_mode(host_root, 0o755).map_err(|source| OnionError::LockHost {
        path: host_root.to_path_buf(),
        source,
    })?;
    let mut changes = host::HostChanges::default();
    changes.hold(host::lock(host_root, host::LOCK_PATIENCE)?);
    // Everything the host's tor and schroot will read is checked before anything changes.
    let owner = hsdir::tor_owner()?;
    let key = hsdir::plan(host_root, name, config.onion_key.as_deref())?;
    let onion_port = config.onion_port.get();
    let listen = match config.local_port {
        Some(port) => Listen::Tcp(port.get()),
        None => Listen::Socket,
    };
    if listen == Listen::Socket {
        check_socket_path(chroot_path)?;
    }
    let target = listen.tor_target(chroot_path);
    torrc::check(host_root, name, onion_port, &target)?;
    schroot::check(host_root, name, chroot_path)?;
    unit::check_path(chroot_path)?;
    let address = key.key.address();

    let user = config
        .user
        .as_deref()
        .map(|user| user::ensure_user(root, user, host_root))
        .transpose()?;
    if listen == Listen::Socket {
        nginx::write_socket_dir(root, owner.map(|(_, gid)| gid))?;
    }
    nginx::write_site(root, name, &address, listen)?;
    nginx::write_web_root(
        root,
        name,
        config.site.as_deref(),
        &nginx::default_index(name, suite, &address),
    )?;
    if check {
        check_nginx(held)?;
    }

    // The host changes all or nothing: a failing step (or a stop request) undoes the earlier.
    let written = write_host_files(
        host_root,
        request,
        (key, owner, &target, user.as_ref()),
        &mut changes,
    );
    let (service, torrc, schroot_files, clients, unit) = match written {
        Ok(written) => written,
        Err(err) => {
            changes.roll_back();
            return Err(err);
        }
    };

    let enter = match &config.user {
        Some(user) => format!("schroot -c {name} -u {user}"),
        None => format!("schroot -c {name}"),
    };
    let next_steps = vec![
        NextStep {
            command: format!("debstrap-onion start {name}"),
            purpose: "start nginx in the chroot and reload tor",
        },
        NextStep {
            command: format!("debstrap-onion status {name}"),
            purpose: "check that nginx answers",
        },
        NextStep {
            command: enter,
            purpose: "enter the chroot",
        },
        NextStep {
            command: format!("debstrap-onion stop {name}"),
            purpose: "stop nginx and unmount",
        },
    ];
    let report = OnionReport {
        address,
        name: name.to_string(),
        chroot_path: chroot_path.to_path_buf(),
        onion_port,
        listen,
        key_origin: service.origin,
        user,
        clients,
        host_files: vec![
            service.path,
            torrc,
            schroot_files.chroot_file,
            schroot_files.profile_dir,
            unit,
        ],
        next_steps,
    };
    Ok(Configured { report, changes })
}

/// Refuses a chroot path that cannot stand unquoted in tor's `HiddenServicePort ... unix:PATH`.
fn check_socket_path(chroot_path: &Path) -> Result<(), OnionError> {
    let text = chroot_path.to_string_lossy();
    if text.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
        return Err(OnionError::SocketPath {
            path: nginx::socket_on_host(chroot_path),
        });
    }
    Ok(())
}

/// The host-side steps, in order, each recorded in `changes` before it is made, under the host
/// lock `changes` holds.
fn write_host_files(
    host_root: &Path,
    request: &OnionRequest,
    (key, owner, target, user): (
        hsdir::KeyPlan,
        Option<(u32, u32)>,
        &str,
        Option<&ChrootUser>,
    ),
    changes: &mut host::HostChanges,
) -> Result<
    (
        hsdir::ServiceDir,
        PathBuf,
        schroot::SchrootFiles,
        Vec<Client>,
        PathBuf,
    ),
    OnionError,
> {
    let config = request.config;
    crate::cancel::check()?;
    let key_error = |source| OnionError::WriteKey {
        dir: key.dir.clone(),
        source,
    };
    // A missing directory is recorded as the directory (or its first missing parent) to remove;
    // an existing one (empty, or holding this key) keeps its mode and owner on roll-back, and
    // each of its files is recorded.
    changes
        .before_write(host_root, &key.dir)
        .map_err(key_error)?;
    if fs_err::symlink_metadata(&key.dir).is_ok() {
        for file in hsdir::KEY_FILES {
            changes
                .before_write(host_root, &key.dir.join(file))
                .map_err(key_error)?;
        }
    }
    let address = key.key.address();
    let service = hsdir::install(key, owner)?;
    crate::cancel::check()?;
    let clients = client_auth::write(
        host_root,
        (request.name, &service.path, &address),
        &config.auth_clients,
        owner,
        changes,
    )?;
    crate::cancel::check()?;
    let torrc = torrc::write(
        host_root,
        request.name,
        (config.onion_port.get(), target),
        changes,
    )?;
    crate::cancel::check()?;
    if let Some(user) = user {
        user::ensure_host_user(host_root, user, changes)?;
    }
    crate::cancel::check()?;
    let spec = unit::UnitSpec {
        name: request.name,
        chroot: request.chroot_path,
        listen: match config.local_port {
            Some(port) => Listen::Tcp(port.get()),
            None => Listen::Socket,
        },
        systemd: unit::systemd_version(host_root),
    };
    let unit = unit::write(host_root, &spec, config.enable, changes)?;
    crate::cancel::check()?;
    let schroot_files = schroot::write(
        host_root,
        (
            request.name,
            request.suite,
            request.chroot_path,
            config.user.as_deref().map(|name| schroot::SchrootUser {
                name,
                root: config.user_root,
            }),
        ),
        changes,
    )?;
    crate::cancel::check()?;
    Ok((service, torrc, schroot_files, clients, unit))
}
