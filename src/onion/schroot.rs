//! The schroot definition: takes NAME, the suite, the chroot's path and the user; gives
//! HOST_ROOT/etc/schroot/chroot.d/NAME and a profile of its own,
//! HOST_ROOT/etc/schroot/debstrap-onion-NAME/{fstab,copyfiles,nssdatabases}, whose fstab does not
//! bind /home. Other chroots' profiles are never touched.

use std::path::{Path, PathBuf};

use super::files;
use super::host::HostChanges;
use super::OnionError;

/// First line of every file we write; a file without it is someone else's and is left alone.
const MARK: &str = "# Written by debstrap-onion";

/// schroot's configuration directory, as seen from `/`.
pub const SCHROOT_DIR: &str = "/etc/schroot";

/// The profile name of NAME.
pub fn profile_name(name: &str) -> String {
    format!("debstrap-onion-{name}")
}

/// The chroot.d file of NAME, as seen from `/`.
pub fn chroot_file_path(name: &str) -> PathBuf {
    Path::new(SCHROOT_DIR).join("chroot.d").join(name)
}

/// The user schroot lets into the chroot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchrootUser<'a> {
    pub name: &'a str,
    /// Also `root-users=`: the user may run commands as root inside (`schroot -u root`).
    pub root: bool,
}

/// The text of chroot.d/NAME.
pub fn chroot_file(
    name: &str,
    suite: &str,
    chroot_path: &Path,
    user: Option<SchrootUser>,
) -> String {
    let mut text = format!(
        "{MARK} for the onion service {name}; rebuilding {name} replaces it.\n\
         [{name}]\n\
         description=Debian {suite} onion service {name}\n\
         type=directory\n\
         directory={path}\n",
        path = chroot_path.display(),
    );
    if let Some(user) = user {
        text.push_str(&format!("users={}\n", user.name));
        if user.root {
            text.push_str(&format!("root-users={}\n", user.name));
        }
    }
    text.push_str(&format!(
        "root-groups=root\nprofile={profile}\n",
        profile = profile_name(name)
    ));
    text
}

/// The profile's files: (file name, text).
pub fn profile_files(name: &str) -> [(&'static str, String); 3] {
    let fstab = format!(
        "{MARK} for the onion service {name}.\n\
         # schroot's default profile without /home: the service's chroot sees none of the host's\n\
         # home directories.\n\
         /proc           /proc           none    rw,bind         0       0\n\
         /sys            /sys            none    rw,bind         0       0\n\
         /dev            /dev            none    rw,bind         0       0\n\
         /dev/pts        /dev/pts        none    rw,bind         0       0\n\
         /tmp            /tmp            none    rw,bind         0       0\n"
    );
    let copyfiles = format!("{MARK} for the onion service {name}.\n/etc/resolv.conf\n");
    // The chroot keeps its own passwd, shadow and group (the user was created in it with the
    // host's uid): copying the host's would put the host's password hashes in the sandbox and
    // drop users that packages in the chroot created.
    let nssdatabases = format!(
        "{MARK} for the onion service {name}.\n\
         # Not passwd, shadow, group or gshadow: the chroot has its own.\n\
         services\n\
         protocols\n\
         networks\n\
         hosts\n"
    );
    [
        ("fstab", fstab),
        ("copyfiles", copyfiles),
        ("nssdatabases", nssdatabases),
    ]
}

/// Paths written by [`write`], under HOST_ROOT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchrootFiles {
    pub chroot_file: PathBuf,
    pub profile_dir: PathBuf,
}

/// The files [`write`] writes: (path under HOST_ROOT, text).
fn planned(
    host_root: &Path,
    name: &str,
    suite: &str,
    chroot_path: &Path,
    user: Option<SchrootUser>,
) -> Result<Vec<(PathBuf, String)>, OnionError> {
    let text = chroot_path.to_string_lossy();
    if !chroot_path.is_absolute() || text.contains(['\n', '\r']) || text != text.trim() {
        return Err(OnionError::BadChrootPath {
            path: chroot_path.to_path_buf(),
        });
    }
    let dir = host_root.join(SCHROOT_DIR.trim_start_matches('/'));
    let profile_dir = dir.join(profile_name(name));
    let mut writes = vec![(
        dir.join("chroot.d").join(name),
        chroot_file(name, suite, chroot_path, user),
    )];
    writes.extend(
        profile_files(name)
            .into_iter()
            .map(|(file, text)| (profile_dir.join(file), text)),
    );
    Ok(writes)
}

/// Checks, changing nothing, that [`write`] may write every file: a chroot.d/NAME or profile
/// file that debstrap-onion did not write is refused.
pub(crate) fn check(host_root: &Path, name: &str, chroot_path: &Path) -> Result<(), OnionError> {
    for (path, _) in planned(host_root, name, "", chroot_path, None)? {
        ensure_ours(&path)?;
    }
    Ok(())
}

/// Writes chroot.d/NAME and NAME's profile under `host_root`, refusing to replace files that
/// debstrap-onion did not write; each change is recorded in `changes` first.
pub(crate) fn write(
    host_root: &Path,
    request: (&str, &str, &Path, Option<SchrootUser>),
    changes: &mut HostChanges,
) -> Result<SchrootFiles, OnionError> {
    let (name, suite, chroot_path, user) = request;
    let writes = planned(host_root, name, suite, chroot_path, user)?;
    // Check every file before writing any, so a refusal leaves nothing half done.
    for (path, _) in &writes {
        ensure_ours(path)?;
    }
    for (path, text) in &writes {
        let write_error = |source| OnionError::WriteSchroot {
            path: path.clone(),
            source,
        };
        changes.before_write(host_root, path).map_err(write_error)?;
        if let Some(parent) = path.parent() {
            files::create_dir_all_mode(parent, 0o755).map_err(write_error)?;
        }
        // schroot refuses configuration files that others can write.
        files::write_atomic(path, text.as_bytes(), files::Perms::mode(0o644))
            .map_err(write_error)?;
    }
    let dir = host_root.join(SCHROOT_DIR.trim_start_matches('/'));
    Ok(SchrootFiles {
        chroot_file: dir.join("chroot.d").join(name),
        profile_dir: dir.join(profile_name(name)),
    })
}

/// The names of the chroots debstrap-onion defined under HOST_ROOT (chroot.d files it wrote),
/// sorted.
pub(crate) fn names(host_root: &Path) -> Vec<String> {
    let dir = host_root
        .join(SCHROOT_DIR.trim_start_matches('/'))
        .join("chroot.d");
    let mut names: Vec<String> = fs_err::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter(|entry| {
            files::read_optional(&entry.path())
                .ok()
                .flatten()
                .is_some_and(|text| text.starts_with(MARK.as_bytes()))
        })
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| crate::config::validate_name(name).is_ok())
        .collect();
    names.sort();
    names
}

/// Removes chroot.d/NAME and NAME's profile under HOST_ROOT, all of which must be ours (checked
/// before anything is removed); returns what was removed.
pub(crate) fn remove(host_root: &Path, name: &str) -> Result<Vec<PathBuf>, OnionError> {
    let dir = host_root.join(SCHROOT_DIR.trim_start_matches('/'));
    let profile_dir = dir.join(profile_name(name));
    let mut paths = vec![dir.join("chroot.d").join(name)];
    paths.extend(profile_files(name).map(|(file, _)| profile_dir.join(file)));
    for path in &paths {
        ensure_ours(path)?;
    }
    let mut removed = Vec::new();
    for path in paths {
        match fs_err::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(OnionError::WriteSchroot { path, source }),
        }
    }
    // The profile's directory goes only when nothing else is left in it.
    if fs_err::remove_dir(&profile_dir).is_ok() {
        removed.push(profile_dir);
    }
    Ok(removed)
}

/// Ok when `path` is absent or was written by us.
pub(crate) fn ensure_ours(path: &Path) -> Result<(), OnionError> {
    match fs_err::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(meta) if meta.is_file() => {
            let text = fs_err::read(path).map_err(|source| OnionError::WriteSchroot {
                path: path.to_path_buf(),
                source,
            })?;
            if text.starts_with(MARK.as_bytes()) {
                Ok(())
            } else {
                Err(OnionError::ForeignFile {
                    path: path.to_path_buf(),
                })
            }
        }
        Ok(_) => Err(OnionError::ForeignFile {
            path: path.to_path_buf(),
        }),
    }
}

/// The `directory=` of chroot.d/NAME under `host_root`.
pub(crate) fn read_directory(host_root: &Path, name: &str) -> Result<PathBuf, OnionError> {
    let path = host_root.join(
        chroot_file_path(name)
            .strip_prefix("/")
            .unwrap_or(Path::new("")),
    );
    let text = fs_err::read_to_string(&path).map_err(|source| OnionError::NotConfigured {
        name: name.to_string(),
        path: path.clone(),
        source,
    })?;
    text.lines()
        .find_map(|line| line.trim().strip_prefix("directory="))
        .map(|dir| PathBuf::from(dir.trim()))
        .ok_or(OnionError::SchrootWithoutDirectory { path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chroot_file_without_user_has_no_users_lines() {
        let text = chroot_file("onion", "trixie", Path::new("/srv/chroot/onion"), None);
        assert!(!text.contains("users="));
        assert!(text.contains("root-groups=root\n"));
    }

    #[test]
    fn user_is_root_inside_only_on_request() {
        let ordinary = SchrootUser {
            name: "alice",
            root: false,
        };
        let text = chroot_file("onion", "trixie", Path::new("/c"), Some(ordinary));
        assert!(text.contains("\nusers=alice\n"), "{text}");
        assert!(!text.contains("root-users"), "{text}");
        let root = SchrootUser {
            root: true,
            ..ordinary
        };
        let text = chroot_file("onion", "trixie", Path::new("/c"), Some(root));
        assert!(text.contains("\nroot-users=alice\n"), "{text}");
    }

    #[test]
    fn profile_fstab_mounts_like_default_without_home() {
        let [(_, fstab), _, (_, nss)] = profile_files("onion");
        let mounts: Vec<&str> = fstab
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        assert_eq!(mounts, ["/proc", "/sys", "/dev", "/dev/pts", "/tmp"]);
        assert!(!nss.lines().any(|l| l == "shadow" || l == "passwd"));
    }
}
