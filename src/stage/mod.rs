//! Stage: finish an unpacked root through chroot(2) — mounts, device nodes, policy-rc.d, the
//! maintainer scripts dpkg needs and dpkg's configuration in debootstrap's phases — into a
//! working Debian, and write the per-machine files (apt sources, hostname, fstab, resolv.conf)
//! as debootstrap does.
//!
//! Takes the root [`crate::unpack::unpack`] left (files plus dpkg's database, every package
//! `unpacked`); gives a root where every package is `installed`, with nothing left mounted.

mod chroot;
mod configure;
mod devices;
mod etc;
mod maintscript;
mod namespace;
mod rootfs;
mod services;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Instant;

use crate::HeldRoot;

use crate::cancel::Cancelled;
use crate::progress::{Counter, Reporter};
use crate::unpack::Unpacked;

pub(crate) use chroot::{
    canonical, run as run_invocation, run_beside, run_daemon, Confine, Invocation,
};
pub use chroot::{
    is_mount_point, mount_point_of, mounts_under, run_in_chroot, ChrootMounts, CHROOT_ENV,
};
pub use devices::placeholder_device;
pub use namespace::in_private_mounts;
pub(crate) use namespace::{detach, fd_path, mount_entries_under, open_mount};
pub(crate) use rootfs::RootDir;
/// Where, inside the root, the output of every command run in the chroot is appended.
pub const LOG_PATH: &str = "var/log/debstrap-onion.log";

/// What to finish.
#[derive(Debug, Clone, Copy)]
pub struct StageRequest<'a> {
    /// The unpacked root, held: every step reaches it through this descriptor.
    pub root: &'a HeldRoot,
    pub unpacked: &'a Unpacked,
    /// Mirror URL written to the chroot's apt sources.
    pub mirror: &'a str,
    pub suite: &'a str,
    pub components: &'a [String],
    /// The chroot's /etc/hostname.
    pub hostname: &'a str,
    /// Passed to maintainer scripts as SOURCE_DATE_EPOCH, for reproducible builds.
    pub source_date_epoch: Option<i64>,
}

/// What runs once the essential packages are configured and before the rest (the essential
/// hooks), in the chroot's mount namespace with its kernel filesystems and service blocks in
/// place; it is given the root as opened there.
pub(crate) type Interlude<'a> =
    dyn Fn(&RootDir) -> Result<(), Box<dyn std::error::Error + Send + Sync>> + Sync + 'a;

/// Why staging failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("cannot {action} {path}")]
    Fs {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing {field} {value:?}: {reason}")]
    InvalidRequest {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("refusing {path}: {reason}")]
    UnsafePath { path: PathBuf, reason: &'static str },
    #[error("cannot mount {fstype} on {target}")]
    Mount {
        fstype: &'static str,
        target: PathBuf,
        #[source]
        source: rustix::io::Errno,
    },
    #[error("cannot unmount {target}")]
    Unmount {
        target: PathBuf,
        #[source]
        source: rustix::io::Errno,
    },
    #[error(
        "cannot {step} a private mount namespace for the chroot's mounts (root and Linux mount \
         namespaces are needed)"
    )]
    Namespace {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("mounts remain under {root} after the build: {}", display_paths(.mounts))]
    MountsRemain { root: PathBuf, mounts: Vec<PathBuf> },
    #[error("cannot start `{command}` in the chroot {root}")]
    Spawn {
        root: PathBuf,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{what} failed in the chroot ({status}): `{command}`; last lines of its output:\n{tail}"
    )]
    Command {
        /// The package and script, or the command's role (`dpkg --configure -a`).
        what: String,
        command: String,
        status: ExitStatus,
        tail: String,
    },
    #[error("dpkg --audit reports unfinished packages after configuration:\n{report}")]
    Audit { report: String },
    /// What the interlude between the phases returned (an essential hook's failure).
    #[error(transparent)]
    Interlude(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

fn display_paths(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

/// Configures the root: every unpacked package ends `installed`, no service starts, and every
/// mount and service block is undone on every path; fails if a mount under the root remains.
pub fn stage(request: &StageRequest, reporter: &dyn Reporter) -> Result<(), StageError> {
    stage_with(request, None, reporter)
}

/// [`stage`], running `interlude` at mmdebstrap's essential point: once the essential packages
/// are configured, before the others (see [`configure::configure_in_phases`]).
pub(crate) fn stage_with(
    request: &StageRequest,
    interlude: Option<&Interlude>,
    reporter: &dyn Reporter,
) -> Result<(), StageError> {
    crate::cancel::check()?;
    check_request(request)?;
    let root = RootDir::held(request.root)?;
    let root_path = root.path().to_path_buf();
    let log = Some(Path::new(LOG_PATH));
    root.create_dir_all(Path::new("var/log"), 0o755)?;
    etc::before_configure(&root, request)?;
    let staged = configure::stage_new_conffiles(&root)?;
    tracing::debug!("{staged} new conffiles handed to dpkg as .dpkg-new");

    // The mounts live in a namespace of their own: should this process die in any way, the
    // kernel removes them, and the host never sees them.
    let result = in_private_mounts(|| {
        let result = configure_in_chroot(&root, &root_path, request, interlude, log, reporter);
        let remaining = mounts_under(&root_path);
        match result {
            Ok(()) if !remaining.is_empty() => Err(StageError::MountsRemain {
                root: root_path.clone(),
                mounts: remaining,
            }),
            other => {
                if !remaining.is_empty() {
                    tracing::error!(
                        "mounts remain under {}: {}",
                        root_path.display(),
                        display_paths(&remaining)
                    );
                }
                other
            }
        }
    });
    result?;
    etc::after_configure(&root)
}

/// Everything that needs the chroot, between mounting and unmounting.
fn configure_in_chroot(
    opened: &RootDir,
    root_path: &Path,
    request: &StageRequest,
    interlude: Option<&Interlude>,
    log: Option<&Path>,
    reporter: &dyn Reporter,
) -> Result<(), StageError> {
    let started = Instant::now();
    let root = &opened.in_this_namespace(root_path)?;
    let mounts = ChrootMounts::mount_in(root)?;
    let policy = services::PolicyRcD::install(root)?;
    let start_stop_daemon = services::StartStopDaemonDiversion::install(root, log)?;
    reporter.start(Counter::Configured, request.unpacked.packages.len() as u64);
    // Maintainer scripts that stamp dates (shadow's last password change, for one) honour
    // SOURCE_DATE_EPOCH, which reproducible builds need.
    let epoch = request.source_date_epoch.map(|e| e.to_string());
    let extra_env: Vec<(&str, &str)> = epoch
        .iter()
        .map(|e| ("SOURCE_DATE_EPOCH", e.as_str()))
        .collect();
    configure::configure_in_phases(
        root,
        request.unpacked,
        &configure::Around {
            extra_env: &extra_env,
            log,
            interlude,
        },
        reporter,
    )?;
    configure::audit(root, log)?;
    reporter.finish(Counter::Configured);
    start_stop_daemon.remove()?;
    policy.remove()?;
    mounts.unmount()?;
    tracing::info!(
        "configured {} packages in {:.1?}",
        request.unpacked.packages.len(),
        started.elapsed()
    );
    Ok(())
}

/// Removes the placeholders a rootless build keeps where device nodes would be (see
/// [`placeholder_device`]), for outputs other than a tarball: a directory or an image then has
/// no /dev nodes rather than empty files in their place.
pub fn remove_device_placeholders(root: &HeldRoot) -> Result<(), StageError> {
    devices::remove_placeholders(&RootDir::held(root)?)
}

/// Refuses values that would break out of the line or file they are written into.
fn check_request(request: &StageRequest) -> Result<(), StageError> {
    let refuse = |field, value: &str, reason| {
        Err(StageError::InvalidRequest {
            field,
            value: value.to_owned(),
            reason,
        })
    };
    let hostname = request.hostname;
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if hostname.len() > 253 || !hostname.split('.').all(label_ok) {
        return refuse(
            "hostname",
            hostname,
            "a hostname is dot-separated labels of letters, digits and inner hyphens",
        );
    }
    let plain = |v: &str| !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || c.is_control());
    if !plain(request.mirror) {
        return refuse("mirror", request.mirror, "it is empty or holds blanks");
    }
    if !plain(request.suite) {
        return refuse("suite", request.suite, "it is empty or holds blanks");
    }
    if let Some(c) = request.components.iter().find(|c| !plain(c)) {
        return refuse("component", c, "it is empty or holds blanks");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(unpacked: &'a Unpacked, hostname: &'a str, mirror: &'a str) -> StageRequest<'a> {
        // Never entered: the request is refused, or only checked, before any step runs.
        static ROOT: std::sync::LazyLock<HeldRoot> =
            std::sync::LazyLock::new(|| HeldRoot::open(Path::new("/")).expect("hold /"));
        StageRequest {
            root: &ROOT,
            unpacked,
            mirror,
            suite: "trixie",
            components: &[],
            hostname,
            source_date_epoch: None,
        }
    }

    #[test]
    fn hostnames_and_mirrors_that_would_inject_lines_are_refused() {
        let unpacked = Unpacked::default();
        let mirror = "http://mirror.invalid/debian";
        assert!(check_request(&request(&unpacked, "onion", mirror)).is_ok());
        assert!(check_request(&request(&unpacked, "web-1.example", mirror)).is_ok());
        for bad in ["", "a\n127.0.0.1 evil", "-x", "a..b", "x y"] {
            let err = check_request(&request(&unpacked, bad, mirror)).expect_err(bad);
            assert!(err.to_string().contains("hostname"), "{err}");
        }
        let err = check_request(&request(
            &unpacked,
            "onion",
            "http://m/ trixie main\ndeb http://evil",
        ))
        .expect_err("newline in mirror");
        assert!(err.to_string().starts_with("refusing mirror"), "{err}");
    }
}
