//! File helpers of the onion stage's host side (HOST_ROOT: torrc, key directory, schroot):
//! takes a path and bytes, gives a file replaced in one rename (never half written, and a
//! symlink at the name replaced, never written through). Files inside the chroot go through
//! [`crate::root::Root`] instead.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

/// Owner and mode of a file written by the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Perms {
    pub mode: u32,
    /// `None` leaves the owner as created (the running user).
    pub owner: Option<(u32, u32)>,
}

impl Perms {
    pub fn mode(mode: u32) -> Perms {
        Perms { mode, owner: None }
    }
}

/// Replaces `path` with `contents` through a temporary file in the same directory and a rename.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], perms: Perms) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // tempfile creates the file 0600, so a secret is never readable while being written.
    let mut tmp = tempfile::Builder::new()
        .prefix(".debstrap-onion.")
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    if let Some((uid, gid)) = perms.owner {
        std::os::unix::fs::fchown(tmp.as_file(), Some(uid), Some(gid))?;
    }
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(perms.mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Sets the mode and (when given) the owner of `path` itself: a symlink planted at the name is
/// refused (ELOOP), never followed to what it points at.
pub(crate) fn set_perms(path: &Path, perms: Perms) -> std::io::Result<()> {
    use rustix::fs::{FileType, Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| at(path, e.into()))?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| at(path, e.into()))?;
    if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
        return Err(at(path, rustix::io::Errno::LOOP.into()));
    }
    if let Some((uid, gid)) = perms.owner {
        crate::root::chown_fd(&fd, uid, gid).map_err(|e| at(path, e))?;
    }
    crate::root::chmod_fd(&fd, perms.mode).map_err(|e| at(path, e))
}

/// `error` with the path it happened at.
fn at(path: &Path, error: std::io::Error) -> std::io::Error {
    std::io::Error::new(error.kind(), format!("`{}`: {error}", path.display()))
}

/// Like [`write_atomic`], keeping the mode and owner of the file it replaces, if any.
pub(crate) fn replace_keeping_perms(
    path: &Path,
    contents: &[u8],
    default_mode: u32,
) -> std::io::Result<()> {
    let perms = match fs_err::symlink_metadata(path) {
        Ok(meta) => Perms {
            mode: meta.mode() & 0o7777,
            owner: Some((meta.uid(), meta.gid())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Perms::mode(default_mode),
        Err(e) => return Err(e),
    };
    write_atomic(path, contents, perms)
}

/// Reads a file that may be absent.
pub(crate) fn read_optional(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match fs_err::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates `path` and its missing parents with `mode`, leaving existing directories as they are.
pub(crate) fn create_dir_all_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true).mode(mode);
    builder.create(path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("failed to create directory `{}`: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        write_atomic(&path, b"one", Perms::mode(0o600)).expect("write");
        write_atomic(&path, b"two", Perms::mode(0o640)).expect("rewrite");
        assert_eq!(fs_err::read(&path).expect("read"), b"two");
        let mode = fs_err::metadata(&path).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o640);
        let names: Vec<_> = fs_err::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec!["f"]);
    }

    #[test]
    fn replacing_keeps_the_mode_of_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        write_atomic(&path, b"one", Perms::mode(0o640)).expect("write");
        replace_keeping_perms(&path, b"two", 0o644).expect("replace");
        assert_eq!(fs_err::metadata(&path).expect("meta").mode() & 0o777, 0o640);
    }
}
