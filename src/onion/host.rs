//! All-or-nothing changes under HOST_ROOT: takes each path before the onion stage writes it;
//! gives a record that puts every one back as it was (old contents, or nothing) when a later
//! step fails: dropped without [`HostChanges::keep`], it rolls back.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

use super::files::{self, Perms};

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
    /// file's current bytes are put back.
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
        if meta.is_file() {
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
            };
            if let Err(err) = result {
                tracing::error!("cannot undo a host-side change of the onion stage: {err}");
                let path = match undo {
                    Undo::Restore { path, .. } | Undo::Remove(path) => path,
                };
                crate::cancel::left_behind(path);
            }
        }
    }
}

impl Drop for HostChanges {
    fn drop(&mut self) {
        // The undo records go before the locks (fields drop after this body).
        self.undo_all();
    }
}
