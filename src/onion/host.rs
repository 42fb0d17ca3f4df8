//! All-or-nothing changes under HOST_ROOT: takes each path before the onion stage writes it;
//! gives a record that puts every one back as it was (old contents, or nothing) when a later
//! step fails: dropped without [`HostChanges::keep`], it rolls back.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use super::files::{self, Perms};
use super::OnionError;

/// How long a build waits for another build's host-side changes to be kept or undone.
pub(crate) const LOCK_PATIENCE: Duration = Duration::from_secs(300);

/// Takes the host lock: flock(2) on the HOST_ROOT directory itself (so nothing is created to
/// hold it), taken before the onion stage reads anything it will change and held until the
/// changes are kept or rolled back, so two builds never plan against each other's half-made
/// changes. Waits at most `patience`, and stops waiting when a stop is requested.
pub(crate) fn lock(
    host_root: &Path,
    patience: Duration,
) -> Result<std::os::fd::OwnedFd, OnionError> {
    use rustix::fs::{FlockOperation, Mode, OFlags};
    let error = |e: rustix::io::Errno| OnionError::LockHost {
        path: host_root.to_path_buf(),
        source: e.into(),
    };
    let fd = rustix::fs::open(
        host_root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(error)?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(fd),
            Err(rustix::io::Errno::WOULDBLOCK | rustix::io::Errno::INTR) => {}
            Err(e) => return Err(error(e)),
        }
        crate::cancel::check()?;
        let waited = started.elapsed();
        if waited >= patience {
            return Err(OnionError::HostLocked {
                path: host_root.to_path_buf(),
                seconds: patience.as_secs(),
            });
        }
        // A short backoff between attempts; it also bounds how late a stop is seen.
        std::thread::sleep(pause.min(patience - waited));
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// How to undo one change.
#[derive(Debug)]
enum Undo {
    /// The file existed: write these bytes back with this mode and owner.
    Restore {
        path: PathBuf,
        bytes: Vec<u8>,
        perms: Perms,
    },
    /// Nothing was there: remove what we created (a file, or a whole directory tree).
    Remove(PathBuf),
    /// The directory existed: put its mode and owner back.
    Perms { path: PathBuf, perms: Perms },
}

/// What the onion stage changed under HOST_ROOT so far, in order; undone when dropped unless
/// kept.
#[derive(Debug, Default)]
pub(crate) struct HostChanges {
    undo: Vec<Undo>,
    /// Locks (flock'ed descriptors) held until the changes are kept or undone.
    locks: Vec<std::os::fd::OwnedFd>,
}

impl HostChanges {
    /// Records how to undo writing `path` (a file, or a directory we fill) under `host_root`:
    /// the first missing component from `host_root` down is removed on roll-back, else the
    /// file's current bytes, or the directory's mode and owner, are put back.
    pub(crate) fn before_write(&mut self, host_root: &Path, path: &Path) -> std::io::Result<()> {
        let rel = path.strip_prefix(host_root).unwrap_or(path);
        let mut at = host_root.to_path_buf();
        for component in rel.components() {
            if let Component::Normal(part) = component {
                at.push(part);
                if fs_err::symlink_metadata(&at).is_err() {
                    self.undo.push(Undo::Remove(at));
                    return Ok(());
                }
            }
        }
        let meta = fs_err::symlink_metadata(path)?;
        if meta.is_dir() {
            self.undo.push(Undo::Perms {
                path: path.to_path_buf(),
                perms: Perms {
                    mode: meta.permissions().mode() & 0o7777,
                    owner: Some((meta.uid(), meta.gid())),
                },
            });
        } else if meta.is_file() {
            self.undo.push(Undo::Restore {
                path: path.to_path_buf(),
                bytes: fs_err::read(path)?,
                perms: Perms {
                    mode: meta.permissions().mode() & 0o7777,
                    owner: Some((meta.uid(), meta.gid())),
                },
            });
        }
        Ok(())
    }

    /// Holds `lock` until these changes are kept or rolled back.
    pub(crate) fn hold(&mut self, lock: std::os::fd::OwnedFd) {
        self.locks.push(lock);
    }

    /// Makes the changes final and releases the locks.
    pub(crate) fn keep(mut self) {
        self.undo.clear();
    }

    /// Puts everything back, last change first, then releases the locks; a step that cannot be
    /// undone is logged and recorded (see [`crate::cancel::left_behind`]), so the CLI does not
    /// claim the host is as it was.
    pub(crate) fn roll_back(mut self) {
        self.undo_all();
    }

    fn undo_all(&mut self) {
        while let Some(undo) = self.undo.pop() {
            let result = match &undo {
                Undo::Restore { path, bytes, perms } => files::write_atomic(path, bytes, *perms),
                Undo::Remove(path) => match fs_err::symlink_metadata(path) {
                    Ok(meta) if meta.is_dir() => fs_err::remove_dir_all(path),
                    Ok(_) => fs_err::remove_file(path),
                    Err(_) => Ok(()),
                },
                Undo::Perms { path, perms } => restore_perms(path, *perms),
            };
            if let Err(err) = result {
                tracing::error!("cannot undo a host-side change of the onion stage: {err}");
                let path = match undo {
                    Undo::Restore { path, .. } | Undo::Remove(path) | Undo::Perms { path, .. } => {
                        path
                    }
                };
                crate::cancel::left_behind(path);
            }
        }
    }
}

fn restore_perms(path: &Path, perms: Perms) -> std::io::Result<()> {
    files::set_perms(path, perms)
}

impl Drop for HostChanges {
    fn drop(&mut self) {
        // The undo records go before the locks (fields drop after this body).
        self.undo_all();
    }
}

/// Runs a host program (`command` is how messages name it) with no input and its output
/// captured; failing to start it is an error naming it.
pub(crate) fn run_host(
    command: &str,
    program: &mut std::process::Command,
) -> Result<std::process::Output, OnionError> {
    program
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| OnionError::Host {
            command: command.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_host_lock_is_waited_for_a_bounded_time_then_named() {
        let host = tempfile::tempdir().expect("tempdir");
        let held = lock(host.path(), Duration::ZERO).expect("free at first");
        let err = lock(host.path(), Duration::from_millis(30)).expect_err("held");
        assert!(
            matches!(&err, OnionError::HostLocked { path, .. } if path == host.path()),
            "{err}"
        );
        assert!(err.to_string().contains(&host.path().display().to_string()));
        drop(held);
        lock(host.path(), Duration::ZERO).expect("free again once released");
    }

    #[test]
    fn a_change_that_cannot_be_undone_is_recorded_as_left_behind() {
        let host = tempfile::tempdir().expect("tempdir");
        let dir = host.path().join("etc/tor");
        fs_err::create_dir_all(&dir).expect("mkdir");
        let torrc = dir.join("torrc");
        fs_err::write(&torrc, "old\n").expect("write");
        let mut changes = HostChanges::default();
        changes.before_write(host.path(), &torrc).expect("record");
        // The file's directory becomes a file: the old bytes cannot be put back.
        fs_err::remove_dir_all(&dir).expect("rm");
        fs_err::write(&dir, "not a directory").expect("write");
        changes.roll_back();
        assert!(crate::cancel::leftovers().contains(&torrc));
    }
}
