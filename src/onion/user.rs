//! The chroot's user: takes a user name; gives its entries in the chroot's passwd, shadow, group
//! and gshadow (written directly, in a fixed order, so the result is deterministic) and a home
//! directory /home/USER owned by it.
//!
//! The uid and gid are the host's for the same name when the host has that user and the chroot
//! has not taken them: `schroot -u USER` switches to the host's uid, which then maps to the same
//! name inside the chroot. A user the host lacks gets ids free on both sides, and
//! [`ensure_host_user`] adds it to HOST_ROOT's databases (locked, no shell), since schroot looks
//! users up on the host.

use std::collections::BTreeSet;
use std::os::fd::AsFd as _;
use std::path::Path;

use rustix::fs::{FileType, OFlags};

use super::files;
use super::host::HostChanges;
use super::nginx::in_chroot;
use super::OnionError;
use crate::root::{self, NewFile, Root};

/// The chroot's user databases.
const PASSWD: &str = "etc/passwd";
const GROUP: &str = "etc/group";
const SHADOW: &str = "etc/shadow";
const GSHADOW: &str = "etc/gshadow";

/// The first uid and gid Debian gives to ordinary users.
const FIRST_UID: u32 = 1000;
/// The last uid Debian gives to ordinary users.
const LAST_UID: u32 = 59999;

/// The chroot user as it ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChrootUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// False when the chroot already had the user (a rebuild): nothing was changed.
    pub created: bool,
}

/// Whether `name` is a user name Debian's useradd accepts by default.
pub fn is_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}

/// The host's passwd and group under HOST_ROOT, if it has them.
fn host_databases(host_root: &Path) -> Result<(Option<String>, Option<String>), OnionError> {
    let read = |rel: &str| -> Result<Option<String>, OnionError> {
        let path = host_root.join(rel);
        let bytes = files::read_optional(&path)
            .map_err(|source| OnionError::WriteChroot { path, source })?;
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    Ok((read("etc/passwd")?, read("etc/group")?))
}

/// Creates `name` in the chroot `root` unless it exists there, with a home directory; its
/// ids are the host's user of that name (HOST_ROOT's passwd), else free in both.
pub(crate) fn ensure_user(
    root: &Root,
    name: &str,
    host_root: &Path,
) -> Result<ChrootUser, OnionError> {
    if !is_user_name(name) {
        return Err(OnionError::BadUserName {
            name: name.to_string(),
        });
    }
    let read = |rel: &str| -> Result<String, OnionError> {
        let found = root
            .read_file(rel.as_bytes())
            .map_err(in_chroot(root, rel))?;
        Ok(
            String::from_utf8_lossy(&found.map(|(bytes, _)| bytes).unwrap_or_default())
                .into_owned(),
        )
    };
    let passwd = read(PASSWD)?;
    let group = read(GROUP)?;
    if let Some(fields) = find_entry(&passwd, name) {
        let uid = fields.get(2).and_then(|f| f.parse().ok()).unwrap_or(0);
        let gid = fields.get(3).and_then(|f| f.parse().ok()).unwrap_or(0);
        let user = ChrootUser {
            name: name.to_string(),
            uid,
            gid,
            created: false,
        };
        // An existing user (a rebuild, or one a package made) is left exactly as it is.
        return Ok(user);
    }
    let (host_passwd, host_group) = host_databases(host_root)?;
    let mut used_uids = ids(&passwd, 2);
    used_uids.extend(ids(host_passwd.as_deref().unwrap_or(""), 2));
    let mut used_gids = ids(&group, 2);
    used_gids.extend(ids(host_group.as_deref().unwrap_or(""), 2));
    // The host's entry of that name: from HOST_ROOT's passwd, or the host's own when HOST_ROOT
    // has none.
    let host_ids: Option<(u32, u32)> = match &host_passwd {
        Some(text) => find_entry(text, name)
            .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))),
        None => crate::sys::user_by_name(name)
            .ok()
            .flatten()
            .map(|u| (u.uid, u.gid)),
    };
    // The host's own ids are taken on the host by this very user: only the chroot must not
    // have given them to someone else.
    let uid = host_ids
        .map(|(uid, _)| uid)
        .filter(|uid| *uid != 0 && !ids(&passwd, 2).contains(uid))
        .or_else(|| first_free(&used_uids))
        .ok_or_else(|| OnionError::NoFreeId {
            root: root.path().into(),
        })?;
    let existing_group = find_entry(&group, name);
    let (gid, add_group) = match existing_group {
        Some(fields) => (
            fields.get(2).and_then(|f| f.parse().ok()).unwrap_or(0),
            false,
        ),
        None => {
            let gid = host_ids
                .map(|(_, gid)| gid)
                .filter(|gid| *gid != 0 && !ids(&group, 2).contains(gid))
                .or_else(|| Some(uid).filter(|uid| !used_gids.contains(uid)))
                .or_else(|| first_free(&used_gids))
                .ok_or_else(|| OnionError::NoFreeId {
                    root: root.path().into(),
                })?;
            (gid, true)
        }
    };
    // Looked up as the chroot sees it: /bin is usually a symlink to /usr/bin.
    let exists = |rel: &[u8]| root.open(rel, OFlags::PATH).is_ok();
    let shell = if exists(b"usr/bin/bash") || exists(b"bin/bash") {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let user = ChrootUser {
        name: name.to_string(),
        uid,
        gid,
        created: true,
    };
    // Group first: a passwd entry naming a missing gid is worse than an unused group.
    if add_group {
        append_in_chroot(root, GROUP, &format!("{name}:x:{gid}:"), 0o644)?;
        let gshadow = read(GSHADOW)?;
        if find_entry(&gshadow, name).is_none() {
            append_in_chroot(root, GSHADOW, &format!("{name}:!::"), 0o640)?;
        }
    }
    // A locked password: the user enters through schroot, never by logging in.
    let shadow = read(SHADOW)?;
    if find_entry(&shadow, name).is_none() {
        append_in_chroot(root, SHADOW, &format!("{name}:!::0:99999:7:::"), 0o640)?;
    }
    append_in_chroot(
        root,
        PASSWD,
        &format!("{name}:x:{uid}:{gid}::/home/{name}:{shell}"),
        0o644,
    )?;
    make_home(root, &user)?;
    Ok(user)
}

/// Adds `user` to HOST_ROOT's passwd, group, shadow and gshadow (those that exist) unless its
/// passwd has the name, with the chroot's ids, a locked password, no home and no login shell:
/// schroot finds the user there, and nobody logs in as it. Returns whether it was added; a
/// HOST_ROOT without a passwd (an image's) is left alone.
pub(crate) fn ensure_host_user(
    host_root: &Path,
    user: &ChrootUser,
    changes: &mut HostChanges,
) -> Result<bool, OnionError> {
    let (Some(passwd), Some(group)) = host_databases(host_root)? else {
        tracing::info!(
            "{} has no etc/passwd and etc/group: create the user {} on the host (uid {}, gid {}) \
             before entering the chroot with schroot",
            host_root.display(),
            user.name,
            user.uid,
            user.gid
        );
        return Ok(false);
    };
    if find_entry(&passwd, &user.name).is_some() {
        return Ok(false);
    }
    let name = &user.name;
    let mut lines = Vec::new();
    if find_entry(&group, name).is_none() {
        lines.push(("etc/group", format!("{name}:x:{}:", user.gid), 0o644));
        lines.push(("etc/gshadow", format!("{name}:!::"), 0o640));
    }
    lines.push(("etc/shadow", format!("{name}:!::0:99999:7:::"), 0o640));
    lines.push((
        "etc/passwd",
        format!(
            "{name}:x:{}:{}:debstrap-onion chroot user:/nonexistent:/usr/sbin/nologin",
            user.uid, user.gid
        ),
        0o644,
    ));
    for (rel, line, mode) in lines {
        let path = host_root.join(rel);
        let Some(bytes) =
            files::read_optional(&path).map_err(|source| OnionError::WriteChroot {
                path: path.clone(),
                source,
            })?
        else {
            continue; // no shadow file: nothing to lock there
        };
        let text = String::from_utf8_lossy(&bytes);
        if find_entry(&text, name).is_some() {
            continue;
        }
        changes
            .before_write(host_root, &path)
            .map_err(|source| OnionError::WriteChroot {
                path: path.clone(),
                source,
            })?;
        append_line(&path, &text, &line, mode)?;
    }
    Ok(true)
}

/// The fields of the entry for `name` in a passwd-like file.
fn find_entry<'a>(text: &'a str, name: &str) -> Option<Vec<&'a str>> {
    text.lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&name))
}

fn ids(text: &str, field: usize) -> BTreeSet<u32> {
    text.lines()
        .filter_map(|line| line.split(':').nth(field)?.parse().ok())
        .collect()
}

fn first_free(used: &BTreeSet<u32>) -> Option<u32> {
    (FIRST_UID..=LAST_UID).find(|id| !used.contains(id))
}

/// `old` with `line` added as its last line.
fn appended(old: &str, line: &str) -> String {
    let mut text = old.to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    text
}

/// Adds `line` to the host file `path` (text `old`), keeping its mode and owner.
fn append_line(path: &Path, old: &str, line: &str, mode: u32) -> Result<(), OnionError> {
    files::replace_keeping_perms(path, appended(old, line).as_bytes(), mode).map_err(|source| {
        OnionError::WriteChroot {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Adds `line` to the chroot's file `rel` as it is now (read again, by descriptor), keeping its
/// mode and owner; a new file gets `mode`.
fn append_in_chroot(root: &Root, rel: &str, line: &str, mode: u32) -> Result<(), OnionError> {
    let error = in_chroot(root, rel);
    let (old, file) = match root.read_file(rel.as_bytes()).map_err(&error)? {
        Some((bytes, stat)) => (
            String::from_utf8_lossy(&bytes).into_owned(),
            NewFile {
                owner: Some((stat.st_uid, stat.st_gid)),
                ..NewFile::mode(stat.st_mode & 0o7777)
            },
        ),
        None => (String::new(), NewFile::mode(mode)),
    };
    root.write_file_with(rel.as_bytes(), appended(&old, line).as_bytes(), file)
        .map_err(error)
}

/// /home/USER, 0750 and owned by the user, with /etc/skel's files when it is created.
fn make_home(root: &Root, user: &ChrootUser) -> Result<(), OnionError> {
    let home = format!("home/{}", user.name);
    let home_error = in_chroot(root, &home);
    if root
        .file_type(home.as_bytes())
        .map_err(&home_error)?
        .is_some()
    {
        return Ok(());
    }
    let home_fd = root
        .create_dir_all(home.as_bytes(), 0o750)
        .map_err(&home_error)?;
    // Only root can give files away; a non-root run (tests) keeps them its own.
    let owner = rustix::process::geteuid()
        .is_root()
        .then_some((user.uid, user.gid));
    if let Ok(skel) = root.open(b"etc/skel", OFlags::RDONLY | OFlags::DIRECTORY) {
        let skel_error = in_chroot(root, "etc/skel");
        let names = root::read_names(skel.as_fd()).map_err(|e| skel_error(e.into()))?;
        for name in names {
            // Regular files only: a symlink in skel is not followed.
            let stat = rustix::fs::statat(&skel, &name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| skel_error(e.into()))?;
            if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
                continue;
            }
            let Some((bytes, _)) =
                root::read_in(skel.as_fd(), name.to_bytes(), u64::MAX).map_err(&skel_error)?
            else {
                continue;
            };
            let file = NewFile {
                owner,
                ..NewFile::mode(0o644)
            };
            root.write_in(home_fd.as_fd(), name.to_bytes(), &bytes, file)
                .map_err(&home_error)?;
        }
    }
    if let Some((uid, gid)) = owner {
        root::chown_fd(&home_fd, uid, gid).map_err(&home_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_follow_useradd() {
        for good in ["alice", "_svc", "web-1"] {
            assert!(is_user_name(good), "{good}");
        }
        for bad in ["", "Alice", "1abc", "a:b", "a b", "../x", &"a".repeat(33)] {
            assert!(!is_user_name(bad), "{bad}");
        }
    }

    #[test]
    fn first_free_skips_used_ids() {
        let used: BTreeSet<u32> = [1000, 1001, 65534].into_iter().collect();
        assert_eq!(first_free(&used), Some(1002));
    }
}
