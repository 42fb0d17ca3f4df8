//! Where a root is built and how it becomes TARGET: decided from what TARGET is (a directory
//! built beside it and renamed into place, an empty mount point built in place, a temporary
//! directory for tarballs and images), checked before any work, held by descriptor and locked
//! while the build runs, and removed on every path but success.

use std::path::{Path, PathBuf};

use crate::config::{BuildConfig, ImageFormat, Output, Variant};
use crate::pipeline::Error;
use crate::{stage, target};

/// Where a root is built, decided from what TARGET is: beside a directory TARGET (renamed into
/// place at the end), in a mount point TARGET itself (a mount point is never renamed), or in a
/// temporary directory for tarballs.
#[derive(Debug)]
pub(crate) enum BuildPlace {
    Beside {
        parent: PathBuf,
        target: PathBuf,
    },
    InPlace {
        target: PathBuf,
    },
    Temporary {
        parent: PathBuf,
        prefix: &'static str,
    },
}

impl BuildPlace {
    /// Checks TARGET and the filesystem the root will be on; creates nothing. `quiet` keeps a
    /// fallback to the temporary directory unsaid.
    pub(crate) fn decide(config: &BuildConfig, quiet: bool) -> Result<BuildPlace, Error> {
        let place = match &config.output {
            Output::Directory(target) => Self::for_directory(target, config.force)?,
            // The layout replaces TARGET at the end, as a directory build would.
            Output::Image {
                path,
                format: ImageFormat::OciDir,
            } if !config.force && is_non_empty_dir(path) => {
                return Err(Error::TargetNotEmpty { path: path.clone() });
            }
            // Beside the tarball, unless another user could swap the root there: then in the
            // system's temporary directory, which gets the same checks below.
            Output::Tarball { path, .. } | Output::Image { path, .. } => {
                match target::check_parents(path, &parent_of(path)) {
                    Ok(()) => BuildPlace::Temporary {
                        parent: parent_of(path),
                        prefix: ".debstrap-onion-root-",
                    },
                    Err(unsafe_parent) => {
                        let parent = std::env::temp_dir();
                        // Decided again when the build directory is made: said once. (A
                        // rootless build's first process checks quietly; the build says it.)
                        static SAID: std::sync::Once = std::sync::Once::new();
                        if !quiet {
                            SAID.call_once(|| {
                                tracing::warn!(
                                    "{unsafe_parent}; building the root in {} instead",
                                    parent.display()
                                );
                            });
                        }
                        target::check_parents(path, &parent)?;
                        BuildPlace::Temporary {
                            parent,
                            prefix: "debstrap-onion-root-",
                        }
                    }
                }
            }
            Output::Stdout { .. } => BuildPlace::Temporary {
                parent: std::env::temp_dir(),
                prefix: "debstrap-onion-root-",
            },
        };
        if config.variant != Variant::Extract {
            check_scripts_can_run(place.dir())?;
        }
        Ok(place)
    }

    fn for_directory(target: &Path, force: bool) -> Result<BuildPlace, Error> {
        let mounted = stage::mounts_under(target);
        if !mounted.is_empty() {
            return Err(Error::TargetMounted {
                path: target.to_path_buf(),
                mounts: mounted,
            });
        }
        if stage::is_mount_point(target) {
            if !is_empty_filesystem(target) {
                return Err(Error::MountPointNotEmpty {
                    path: target.to_path_buf(),
                });
            }
            return Ok(BuildPlace::InPlace {
                target: target.to_path_buf(),
            });
        }
        if !force && is_non_empty_dir(target) {
            return Err(Error::TargetNotEmpty {
                path: target.to_path_buf(),
            });
        }
        // The root is renamed into place from beside TARGET, so that place must be one nobody
        // else can swap it in.
        target::check_parents(target, &parent_of(target))?;
        Ok(BuildPlace::Beside {
            parent: parent_of(target),
            target: target.to_path_buf(),
        })
    }

    /// The directory the root is made in (or is).
    fn dir(&self) -> &Path {
        match self {
            BuildPlace::Beside { parent, .. } | BuildPlace::Temporary { parent, .. } => parent,
            BuildPlace::InPlace { target } => target,
        }
    }
}

/// Refuses a filesystem mounted `noexec` (nothing could run in the chroot), naming its mount
/// point; `nodev` is worked around while scripts run (see [`stage::ChrootMounts`]). The nearest
/// existing ancestor stands for a directory not made yet.
fn check_scripts_can_run(dir: &Path) -> Result<(), Error> {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let Some(existing) = absolute.ancestors().find(|p| p.exists()) else {
        return Ok(());
    };
    let Ok(stat) = rustix::fs::statvfs(existing) else {
        return Ok(());
    };
    if stat.f_flag.contains(rustix::fs::StatVfsMountFlags::NOEXEC) {
        return Err(Error::MountOption {
            path: dir.to_path_buf(),
            mount_point: stage::mount_point_of(existing),
            option: "noexec",
        });
    }
    Ok(())
}

/// The directory a root is built in: beside a directory TARGET (moved into place on success), a
/// mount point TARGET itself, or a temporary one for tarballs. Dropped without
/// [`BuildDir::commit`], it removes what it made: the whole directory, or, built in place,
/// everything in it.
///
/// It holds TARGET's lock for its whole life, so a second build of the same TARGET is refused
/// while this one runs, and it checks before each stage that its path still names the
/// directory it created.
pub(crate) struct BuildDir {
    root: PathBuf,
    held: target::HeldRoot,
    /// Where a directory build is moved on success.
    target: Option<PathBuf>,
    in_place: bool,
    /// Whether an existing non-empty TARGET may be replaced; decided again at the commit.
    force: bool,
    committed: bool,
    _lock: Option<target::TargetLock>,
}

impl BuildDir {
    pub(crate) fn create(
        place: BuildPlace,
        output: &Output,
        force: bool,
    ) -> Result<BuildDir, Error> {
        let locked = output.path();
        let (parent, prefix, target) = match place {
            BuildPlace::InPlace { target } => return BuildDir::in_place(target, force),
            BuildPlace::Beside { parent, target } => (
                parent,
                format!(".{}.build-", file_name(&target)),
                Some(target),
            ),
            BuildPlace::Temporary { parent, prefix } => (parent, prefix.to_string(), None),
        };
        let err = |source| Error::Target {
            path: parent.clone(),
            source,
        };
        // A directory TARGET's parent is refused before any of it is made: a directory created
        // as root inside another user's tree would be theirs to swap.
        if let (Some(path), Some(_)) = (locked, &target) {
            target::check_parents(path, &parent)?;
        }
        fs_err::create_dir_all(&parent).map_err(err)?;
        if let Output::Tarball { path, .. } | Output::Image { path, .. } = output {
            let dir = parent_of(path);
            fs_err::create_dir_all(&dir).map_err(|source| Error::Target { path: dir, source })?;
        }
        // Checked again now that it exists (and in case it changed since the build was planned).
        if let Some(path) = locked {
            target::check_parents(path, &parent)?;
        }
        let lock = match locked {
            Some(path) => Some(target::TargetLock::acquire(
                path,
                &parent,
                &lock_name(path, &parent),
            )?),
            None => None,
        };
        if let Some(target) = &target {
            check_target_free(target, force)?;
        }
        // Removal is ours (Drop below), after checking that nothing is mounted inside.
        let root = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&parent)
            .map_err(err)?
            .keep();
        let held = match target::HeldRoot::open(&root) {
            Ok(held) => held,
            Err(e) => {
                remove_tree(&root);
                return Err(e.into());
            }
        };
        Ok(BuildDir {
            root,
            held,
            target,
            in_place: false,
            force,
            committed: false,
            _lock: lock,
        })
    }

    /// A root built in the mount point TARGET itself, under TARGET's lock.
    fn in_place(target: PathBuf, force: bool) -> Result<BuildDir, Error> {
        let parent = parent_of(&target);
        // TARGET itself too: whoever owns the root directory could rename what the build puts
        // in it (usr, say) and have root run their own files in its place.
        if let Err(unsafe_parent) = target::check_parents(&target, &target) {
            return Err(unsafe_parent.into());
        }
        let lock = target::TargetLock::acquire(&target, &parent, &file_name(&target))?;
        // Decided again under the lock: another build may have filled it, or it may have been
        // unmounted, since the first look; a failure here must not empty what is there now.
        match BuildPlace::for_directory(&target, force) {
            Ok(BuildPlace::InPlace { .. }) => {}
            Ok(_) => {
                return Err(Error::Target {
                    path: target,
                    source: std::io::Error::other("it is no longer a mount point"),
                })
            }
            Err(e) => return Err(e),
        }
        let held = target::HeldRoot::open(&target)?;
        Ok(BuildDir {
            root: target,
            held,
            target: None,
            in_place: true,
            force,
            committed: false,
            _lock: Some(lock),
        })
    }

    /// The build directory, held by the descriptor opened when it was created; fails unless
    /// its path still names that directory, so a swap is reported at the next stage even though
    /// no stage looks the path up.
    pub(crate) fn verify(&self) -> Result<&target::HeldRoot, Error> {
        self.held.verify()?;
        Ok(&self.held)
    }

    /// Moves a directory build into place. Whether an existing TARGET may be replaced is decided
    /// here, against what is there now, not only at the start; nothing is committed once a stop
    /// was requested. A tarball build's root is removed on drop; one built in place stays.
    pub(crate) fn commit(mut self) -> Result<(), Error> {
        crate::cancel::check()?;
        self.held.verify()?;
        let Some(target) = self.target.clone() else {
            self.committed = self.in_place;
            return Ok(());
        };
        check_target_free(&target, self.force)?;
        let err = |source| Error::Target {
            path: target.clone(),
            source,
        };
        let old = parent_of(&target).join(format!(
            ".{}.old-{}",
            file_name(&target),
            std::process::id()
        ));
        let replacing = fs_err::symlink_metadata(&target).is_ok();
        if replacing {
            fs_err::rename(&target, &old).map_err(err)?;
        }
        if let Err(e) = fs_err::rename(&self.root, &target) {
            // The old TARGET goes back to its name rather than stay hidden beside it.
            if replacing {
                if let Err(back) = fs_err::rename(&old, &target) {
                    tracing::error!("{back}");
                    crate::cancel::left_behind(old.clone());
                }
            }
            return Err(err(e));
        }
        self.committed = true;
        if replacing {
            remove_tree(&old);
        }
        Ok(())
    }
}

/// The name of TARGET's lock in `parent`: TARGET's own name beside it; in a shared temporary
/// directory a tarball fell back to, a name drawn from TARGET's whole path, so two builds of
/// `root.tar` in different directories do not refuse each other while the same TARGET is still
/// built once at a time.
fn lock_name(target: &Path, parent: &Path) -> String {
    if parent_of(target) == parent {
        return file_name(target);
    }
    let absolute = std::path::absolute(target).unwrap_or_else(|_| target.to_path_buf());
    let digest = crate::fetch::Sha256Digest::of(absolute.as_os_str().as_encoded_bytes());
    format!("debstrap-onion-{}", &digest.to_hex()[..16])
}

/// Refuses a TARGET that is occupied (without --force) or that has mounts inside.
fn check_target_free(target: &Path, force: bool) -> Result<(), Error> {
    if !force && is_non_empty_dir(target) {
        return Err(Error::TargetNotEmpty {
            path: target.to_path_buf(),
        });
    }
    let mounted = stage::mounts_under(target);
    if !mounted.is_empty() {
        return Err(Error::TargetMounted {
            path: target.to_path_buf(),
            mounts: mounted,
        });
    }
    Ok(())
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // A directory put in its place is someone else's: it is not ours to delete, and ours
        // is wherever it was moved to.
        if let Err(err) = self.held.verify() {
            tracing::error!("{err}");
            crate::cancel::moved_away(self.root.clone());
            return;
        }
        if self.in_place {
            empty_in_place(&self.root);
        } else {
            remove_tree(&self.root);
        }
    }
}

/// Removes everything a failed build made in a mount point TARGET, keeping `lost+found`, and
/// nothing while something is still mounted inside; what stays is recorded as left behind.
fn empty_in_place(root: &Path) {
    let mounted = stage::mounts_under(root);
    if !mounted.is_empty() {
        tracing::error!(
            "{}: not emptied, still mounted inside: {mounted:?}",
            root.display()
        );
        crate::cancel::left_behind(root.to_path_buf());
        return;
    }
    let entries = match fs_err::read_dir(root) {
        Ok(entries) => entries,
        Err(err) => {
            tracing::error!("cannot empty {}: {err}", root.display());
            crate::cancel::left_behind(root.to_path_buf());
            return;
        }
    };
    for entry in entries.flatten() {
        if entry.file_name() == LOST_AND_FOUND {
            continue;
        }
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(kind) if kind.is_dir() => fs_err::remove_dir_all(&path),
            _ => fs_err::remove_file(&path),
        };
        if let Err(err) = removed {
            tracing::error!("cannot remove {}: {err}", path.display());
            crate::cancel::left_behind(path);
        }
    }
}

/// What mkfs.ext4 leaves at the top of a new filesystem.
const LOST_AND_FOUND: &str = "lost+found";

/// Whether a mount point holds nothing, or only an empty `lost+found`.
fn is_empty_filesystem(path: &Path) -> bool {
    let Ok(entries) = fs_err::read_dir(path) else {
        return false;
    };
    entries.flatten().all(|entry| {
        entry.file_name() == LOST_AND_FOUND
            && entry.file_type().is_ok_and(|t| t.is_dir())
            && !is_non_empty_dir(&entry.path())
    })
}

/// Removes a build tree, but never one with something still mounted inside: deleting through a
/// mount would reach the host.
fn remove_tree(path: &Path) {
    if !path.exists() {
        return;
    }
    let mounted = stage::mounts_under(path);
    if !mounted.is_empty() {
        tracing::error!(
            "{}: not removed, still mounted inside: {mounted:?}",
            path.display()
        );
        crate::cancel::left_behind(path.to_path_buf());
        return;
    }
    if let Err(err) = fs_err::remove_dir_all(path) {
        tracing::error!("cannot remove {}: {err}", path.display());
        crate::cancel::left_behind(path.to_path_buf());
    }
}

fn is_non_empty_dir(path: &Path) -> bool {
    match fs_err::read_dir(path) {
        Ok(mut entries) => entries.next().is_some(),
        // A file or anything else unreadable at TARGET counts as occupied.
        Err(err) => err.kind() != std::io::ErrorKind::NotFound,
    }
}

fn parent_of(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "target".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_away_from_target_is_named_by_targets_whole_path() {
        let tmp = Path::new("/tmp");
        let (a, b) = (Path::new("/home/a/root.tar"), Path::new("/home/b/root.tar"));
        assert_eq!(lock_name(a, Path::new("/home/a")), "root.tar");
        assert_ne!(
            lock_name(a, tmp),
            lock_name(b, tmp),
            "two root.tar share a lock"
        );
        assert_eq!(lock_name(a, tmp), lock_name(a, tmp));
        assert!(lock_name(a, tmp).starts_with("debstrap-onion-"));
    }

    /// Sets or clears the immutable attribute with e2fsprogs' chattr (root only); whether it
    /// could (tmpfs, for one, has no such attribute).
    fn chattr(flag: &str, path: &Path) -> bool {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(path)
            .status()
            .is_ok_and(|status| status.success())
    }

    /// The old TARGET is moved aside before the build takes its name; when that second rename
    /// fails (here the build directory is made immutable, so the kernel refuses to move it),
    /// the old TARGET must be back under its own name with its contents, not left hidden in
    /// `.NAME.old-PID`.
    #[test]
    fn a_failed_commit_puts_the_old_target_back_under_its_name() {
        if !crate::test_skip::require_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("root");
        fs_err::create_dir(&target).unwrap();
        fs_err::write(target.join("old-marker"), b"the previous build").unwrap();
        let output = Output::Directory(target.clone());
        let place = BuildPlace::Beside {
            parent: dir.path().to_path_buf(),
            target: target.clone(),
        };
        let build = BuildDir::create(place, &output, true).unwrap();
        let root = build.root.clone();
        if !chattr("+i", &root) {
            crate::test_skip::missing("chattr +i on the temporary directory's filesystem");
            return;
        }
        let result = build.commit();
        assert!(chattr("-i", &root), "chattr -i {}", root.display());
        let err = result.expect_err("the build directory cannot be renamed, so commit must fail");
        assert!(
            err.to_string().contains(&*target.to_string_lossy()),
            "the error names TARGET: {err}"
        );
        assert_eq!(
            fs_err::read(target.join("old-marker")).unwrap(),
            b"the previous build",
            "the old TARGET is back under its name"
        );
        let hidden: Vec<_> = fs_err::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains(".old-"))
            .collect();
        assert!(hidden.is_empty(), "an old TARGET left aside: {hidden:?}");
    }
}
