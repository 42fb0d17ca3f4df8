//! Services by name: takes HOST_ROOT (and a NAME); gives the list of the services debstrap-onion
//! defined there, and the removal of one (stopped, its torrc block and schroot files gone, its
//! key kept unless purged).

use std::path::{Path, PathBuf};

use super::tor_view::{self, TorView};
use super::{self as service, TorReload};
use crate::onion::hsdir::service_dir;
use crate::onion::key::HOSTNAME_FILE;
use crate::onion::{host, schroot, torrc, OnionError};

/// One service as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    /// The address in tor's hostname file, when readable.
    pub address: Option<String>,
    /// The chroot, from schroot's `directory=`.
    pub chroot: Option<PathBuf>,
    /// nginx's master is alive in the chroot.
    pub running: bool,
    /// The torrc has the service's block, so tor publishes it once (re)loaded.
    pub in_torrc: bool,
    /// Tor's own view: whether the tor running now has the service loaded.
    pub tor: TorState,
    /// Whether the hostname file names the address of the key beside it; `None` when the key
    /// cannot be read.
    pub hostname_matches_key: Option<bool>,
}

/// Whether the running tor serves a service, as its loaded configuration says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorState {
    /// No tor runs for HOST_ROOT.
    NotRunning,
    /// Tor runs with the service's `HiddenServiceDir` loaded.
    Loaded,
    /// Tor runs without it: it needs a reload (or the torrc lacks the block).
    NotLoaded,
    /// Tor runs, but what it loaded could not be read: why.
    Unknown(String),
}

/// Every service debstrap-onion defined under HOST_ROOT (a chroot.d file it wrote), by name,
/// with what the tor running for HOST_ROOT has loaded (see [`TorView`]).
pub fn list(host_root: &Path) -> Vec<Listed> {
    let view = tor_view::view(host_root, || {
        service::is_host(host_root) && service::tor_running()
    });
    schroot::names(host_root)
        .into_iter()
        .map(|name| {
            let chroot = schroot::read_directory(host_root, &name).ok();
            let running = chroot
                .as_deref()
                .is_some_and(|root| service::running_pid(host_root, &name, root).is_some());
            let tor = match (&view, view.has(&service_dir(&name))) {
                (_, Some(true)) => TorState::Loaded,
                (_, Some(false)) => TorState::NotLoaded,
                (TorView::Unreadable(why), None) => TorState::Unknown(why.clone()),
                (_, None) => TorState::NotRunning,
            };
            let key_dir = host_root.join(service_dir(&name).strip_prefix("/").expect("absolute"));
            let address = address(host_root, &name);
            let hostname_matches_key = crate::onion::hsdir::read_key_dir(&key_dir)
                .ok()
                .map(|key| address.as_deref() == Some(key.address().as_str()));
            Listed {
                address,
                in_torrc: torrc::has_block(host_root, &name),
                chroot,
                running,
                tor,
                hostname_matches_key,
                name,
            }
        })
        .collect()
}

fn address(host_root: &Path, name: &str) -> Option<String> {
    let hostname = host_root
        .join(service_dir(name).strip_prefix("/").ok()?)
        .join(HOSTNAME_FILE);
    let text = fs_err::read_to_string(hostname).ok()?;
    Some(text.trim().to_string()).filter(|a| !a.is_empty())
}

/// What [`remove`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub name: String,
    /// nginx was running and was stopped.
    pub stopped: bool,
    /// The torrc had the block, now gone.
    pub torrc_block: bool,
    /// Files and directories removed under HOST_ROOT.
    pub removed: Vec<PathBuf>,
    /// The key directory (the address), kept unless `--purge`; `None` once purged.
    pub key_kept: Option<PathBuf>,
    /// The chroot, which is left in place.
    pub chroot: Option<PathBuf>,
    pub tor: TorReload,
}

/// Stops NAME, then removes its torrc block, schroot definition and profile under HOST_ROOT;
/// the key directory goes too with `purge`, else it is kept (the address lives in it). Every
/// file is checked before any is removed; other torrc content and other services are untouched.
pub fn remove(name: &str, host_root: &Path, purge: bool) -> Result<Removed, OnionError> {
    crate::config::validate_name(name).map_err(|_| OnionError::BadName {
        name: name.to_string(),
    })?;
    let key_dir = host_root.join(service_dir(name).strip_prefix("/").expect("absolute"));
    // A service removed before keeps only its key: `remove --purge` may still delete that.
    let chroot = match schroot::read_directory(host_root, name) {
        Ok(chroot) => Some(chroot),
        Err(err) if purge && key_dir.exists() => {
            tracing::info!("{err}; removing what is left of {name}");
            None
        }
        Err(err) => return Err(err),
    };
    let _lock = host::lock(host_root, host::LOCK_PATIENCE)?;
    let stopped = match &chroot {
        Some(root) if root.exists() => service::stop(name, host_root)?.was_running,
        _ => false,
    };
    let torrc_block = torrc::remove(host_root, name)?;
    let mut removed = schroot::remove(host_root, name)?;
    let units = crate::onion::unit::remove(host_root, name)?;
    if !units.is_empty() && crate::onion::unit::systemd_runs(host_root) {
        // systemd forgets the removed units.
        service::systemctl(&["daemon-reload"])?;
    }
    removed.extend(units);
    let key_kept = if purge {
        // The key, and the private lines of clients not yet handed over.
        let clients = host_root
            .join(crate::onion::client_auth::CLIENT_KEYS.trim_start_matches('/'))
            .join(name);
        for dir in [key_dir, clients] {
            match fs_err::remove_dir_all(&dir) {
                Ok(()) => removed.push(dir),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(OnionError::WriteKey { dir, source }),
            }
        }
        None
    } else {
        Some(key_dir).filter(|dir| dir.exists())
    };
    let tor = if torrc_block {
        service::reload_tor(host_root)?
    } else {
        TorReload::NotRunning
    };
    Ok(Removed {
        name: name.to_string(),
        stopped,
        torrc_block,
        removed,
        key_kept,
        chroot,
        tor,
    })
}

impl std::fmt::Display for Listed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let address = self.address.as_deref().unwrap_or("(no hostname file)");
        let chroot = self
            .chroot
            .as_deref()
            .map_or("(no directory=)".to_string(), |c| c.display().to_string());
        let state = if self.running { "running" } else { "stopped" };
        let torrc = if self.in_torrc {
            "in torrc"
        } else {
            "not in torrc"
        };
        let tor = match &self.tor {
            TorState::NotRunning => "tor not running".to_string(),
            TorState::Loaded => "tor serves it".to_string(),
            TorState::NotLoaded => "tor runs without it (reload tor)".to_string(),
            TorState::Unknown(why) => format!("tor runs; unknown whether it serves it: {why}"),
        };
        let hostname = match self.hostname_matches_key {
            Some(true) => "hostname matches key",
            Some(false) => "hostname DOES NOT match key",
            None => "key unreadable",
        };
        write!(
            f,
            "{}\t{address}\t{chroot}\t{state}\t{torrc}\t{tor}\t{hostname}",
            self.name
        )
    }
}

impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.stopped {
            writeln!(f, "nginx stopped")?;
        }
        if self.torrc_block {
            writeln!(f, "torrc block of {} removed; {}", self.name, self.tor)?;
        }
        for path in &self.removed {
            writeln!(f, "removed {}", path.display())?;
        }
        if let Some(chroot) = &self.chroot {
            writeln!(
                f,
                "the chroot {} is left in place (rm -rf it when no longer needed)",
                chroot.display()
            )?;
        }
        match &self.key_kept {
            Some(dir) => write!(
                f,
                "the key (the onion address) is kept in {}: a build with --name {} publishes the \
                 same address again; `debstrap-onion remove {} --purge` deletes it",
                dir.display(),
                self.name,
                self.name
            ),
            None => write!(f, "the key is removed: the address is gone for good"),
        }
    }
}
