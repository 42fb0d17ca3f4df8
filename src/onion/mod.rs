//! Onion: takes a staged chroot and the onion settings; gives the nginx site in the chroot, and on
//! the host (under HOST_ROOT, DESTDIR-like) the v3 onion key, the torrc entry and the schroot
//! definition; plus the start / stop / status commands of a configured service.
//!
//! [`configure`] works in this order so the host is changed only for a chroot that checks out:
//! the key (its address is the nginx `server_name`), the chroot's user, site and web root,
//! `nginx -t` inside the chroot, then torrc and schroot on the host. Every file is written
//! through a temporary file and a rename; re-running with the same NAME converges to the same
//! files and keeps the key.

mod chroot;
mod files;
mod hsdir;
pub mod key;
mod nginx;
mod schroot;
mod service;
mod torrc;
mod user;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::OnionConfig;

pub use hsdir::{read_key_dir, service_dir, KeyOrigin, TOR_USER};
pub use key::{onion_address, parse_address, KeyFormatError, OnionKey};
pub use nginx::{default_index, site, site_path, web_root, SiteProblem};
pub use schroot::{chroot_file, chroot_file_path, profile_files, profile_name};
pub use service::{
    http_status, locate, start, status, stop, ServiceInfo, StartReport, StatusReport, StopReport,
    TorReload,
};
pub use torrc::{block as torrc_block, update as update_torrc, TorrcProblem, TORRC};
pub use user::{is_user_name, ChrootUser};

/// What to publish.
#[derive(Debug, Clone, Copy)]
pub struct OnionRequest<'a> {
    /// Service and chroot name.
    pub name: &'a str,
    /// Where the chroot is now (may be a temporary build directory).
    pub root: &'a Path,
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
    pub local_port: u16,
    /// Whether the key is new, kept from an earlier build, or imported.
    pub key_origin: KeyOrigin,
    /// The user created (or found) in the chroot.
    pub user: Option<ChrootUser>,
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
            "serves:        http://{}:{} -> nginx on 127.0.0.1:{}",
            self.address, self.onion_port, self.local_port
        )?;
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
    #[error("invalid user name {name:?}: use lower-case letters, digits, '_' or '-', starting with a letter or '_'")]
    BadUserName { name: String },
    #[error("cannot draw random bytes for a new onion key")]
    Random(#[source] std::io::Error),
    #[error("cannot look up the host user {user}")]
    UserLookup {
        user: String,
        #[source]
        source: nix::errno::Errno,
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
        "refusing to write {path} under {root}: it leads through a symlink or outside the root"
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
    #[error("cannot unmount {path}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("cannot read the nginx site {path}; was the service built with this name?")]
    NoSite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} has no `listen 127.0.0.1:PORT;` line")]
    NoListenPort { path: PathBuf },
    #[error("nginx started but nothing accepts connections on 127.0.0.1:{port}")]
    NotAnswering { port: u16 },
    #[error("nginx (pid {pid}) did not exit after `nginx -s quit`")]
    StopTimeout { pid: i32 },
    #[error("cannot signal process {pid}")]
    Signal {
        pid: i32,
        #[source]
        source: nix::errno::Errno,
    },
}

/// Writes the site, key, torrc entry and schroot definition, and checks `nginx -t` in the chroot.
pub fn configure(request: &OnionRequest) -> Result<OnionReport, OnionError> {
    configure_with(request, true)
}

/// [`configure`] without running `nginx -t`, for roots that have no nginx (tests, dry runs).
pub fn configure_unchecked(request: &OnionRequest) -> Result<OnionReport, OnionError> {
    configure_with(request, false)
}

/// Runs `nginx -t` inside the chroot at `root`, with the chroot's mounts for the duration.
pub fn check_nginx(root: &Path) -> Result<(), OnionError> {
    if fs_err::symlink_metadata(root.join("usr/sbin/nginx")).is_err() {
        return Err(OnionError::NginxMissing {
            root: root.to_path_buf(),
        });
    }
    let _mounts = chroot::Mounts::mount(root)?;
    chroot::run_ok(root, &["/usr/sbin/nginx", "-t", "-q"])?;
    Ok(())
}

fn configure_with(request: &OnionRequest, check: bool) -> Result<OnionReport, OnionError> {
    let OnionRequest {
        name,
        root,
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
    let host_root = config.host_root.as_path();
    let owner = hsdir::tor_owner()?;
    let service = hsdir::install(host_root, name, config.onion_key.as_deref(), owner)?;
    let address = service.key.address();

    let user = config
        .user
        .as_deref()
        .map(|user| user::ensure_user(root, user))
        .transpose()?;
    nginx::write_site(root, name, &address, config.local_port)?;
    nginx::write_web_root(
        root,
        name,
        config.site.as_deref(),
        &nginx::default_index(name, suite, &address),
    )?;
    if check {
        check_nginx(root)?;
    }

    let torrc = torrc::write(host_root, name, config.onion_port, config.local_port)?;
    let schroot_files =
        schroot::write(host_root, name, suite, chroot_path, config.user.as_deref())?;

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
    Ok(OnionReport {
        address,
        name: name.to_string(),
        chroot_path: chroot_path.to_path_buf(),
        onion_port: config.onion_port,
        local_port: config.local_port,
        key_origin: service.origin,
        user,
        host_files: vec![
            service.path,
            torrc,
            schroot_files.chroot_file,
            schroot_files.profile_dir,
        ],
        next_steps,
    })
}
