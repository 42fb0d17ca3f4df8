//! Device nodes: takes the root; gives the static /dev debootstrap creates (the nodes a
//! container may make, /dev/pts and /dev/shm, and the /proc/self/fd links).
//!
//! In a user namespace (a rootless build) the kernel refuses mknod: each node is then an empty
//! file of the node's mode, a placeholder the host's node is bound over while scripts run.
//! A tarball writes the node itself in the placeholder's place ([`placeholder_device`]); a
//! directory keeps none ([`remove_placeholders`]).

use std::path::Path;

use rustix::io::Errno;

use super::rootfs::{fs_error, RootDir};
use super::StageError;

/// Character devices debootstrap creates, all mode 0666: name, major, minor.
const NODES: [(&str, u32, u32); 7] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
    ("console", 5, 1),
];

/// /dev/ptmx, a node like the others where it can be made.
const PTMX: (&str, u32, u32) = ("ptmx", 5, 2);

/// Links into /proc, resolved inside the chroot once proc is mounted.
const LINKS: [(&str, &str); 4] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// Creates what is missing of /dev; existing entries are left as they are.
pub(crate) fn create(root: &RootDir) -> Result<(), StageError> {
    for dir in ["dev", "dev/pts", "dev/shm"] {
        root.create_dir_all(Path::new(dir), 0o755)?;
    }
    let placeholders = crate::userns::inside();
    for (name, major, minor) in NODES {
        if placeholders {
            make_placeholder(root, name)?;
        } else {
            make_node(root, name, major, minor)?;
        }
    }
    let ptmx = Path::new("dev/ptmx");
    if placeholders {
        make_placeholder(root, PTMX.0)?;
    } else if root.file_type(ptmx)?.is_none() {
        match root.mknod_char(ptmx, 0o666, PTMX.1, PTMX.2) {
            Ok(()) => {}
            // In a container mknod may be refused; the devpts we mount has ptmxmode=0666, so a
            // link to its ptmx works as well.
            Err(Errno::PERM) => root.symlink("pts/ptmx", ptmx)?,
            Err(e) => return Err(fs_error("create the device", &root.host_path(ptmx), e)),
        }
    }
    for (name, target) in LINKS {
        let rel = Path::new("dev").join(name);
        if root.file_type(&rel)?.is_none() {
            root.symlink(target, &rel)?;
        }
    }
    Ok(())
}

/// Whether the root's /dev is on a filesystem mounted `nodev`, where its nodes exist but cannot
/// be opened.
pub(crate) fn on_nodev(root: &RootDir) -> Result<bool, StageError> {
    let dev = root.open_dir(Path::new("dev"), true)?;
    let stat = rustix::fs::fstatvfs(&dev).map_err(|e| StageError::Fs {
        action: "inspect the filesystem of",
        path: root.host_path(Path::new("dev")),
        source: e.into(),
    })?;
    Ok(stat.f_flag.contains(rustix::fs::StatVfsMountFlags::NODEV))
}

/// The root's device nodes and the host's node of the same device, for binding one over the
/// other: `(path in the root, host path, major, minor)`.
pub(crate) fn host_nodes() -> impl Iterator<Item = (std::path::PathBuf, String, u32, u32)> {
    // A placeholder ptmx gets our devpts's, bound by the caller.
    NODES.into_iter().map(|(name, major, minor)| {
        (
            Path::new("dev").join(name),
            format!("/dev/{name}"),
            major,
            minor,
        )
    })
}

/// The device a placeholder at `rel` (a path below the root, `dev/null`) stands for: its major
/// and minor numbers, when `rel` is one of the nodes this module makes.
pub fn placeholder_device(rel: &[u8]) -> Option<(u32, u32)> {
    let name = rel.strip_prefix(b"dev/")?;
    NODES
        .iter()
        .chain(std::iter::once(&PTMX))
        .find(|(node, _, _)| node.as_bytes() == name)
        .map(|&(_, major, minor)| (major, minor))
}

/// Removes the placeholders [`create`] left in a rootless build (empty regular files only).
pub(crate) fn remove_placeholders(root: &RootDir) -> Result<(), StageError> {
    for (name, _, _) in NODES.iter().chain(std::iter::once(&PTMX)) {
        let rel = Path::new("dev").join(name);
        if root.is_placeholder(&rel)? {
            root.remove_file(&rel)?;
        }
    }
    Ok(())
}

/// An empty file of a node's mode (0666) where the node would be, unless something is there.
fn make_placeholder(root: &RootDir, name: &str) -> Result<(), StageError> {
    let rel = Path::new("dev").join(name);
    if root.file_type(&rel)?.is_some() {
        return Ok(());
    }
    root.write_file(&rel, b"", 0o666)
}

fn make_node(root: &RootDir, name: &str, major: u32, minor: u32) -> Result<(), StageError> {
    let rel = Path::new("dev").join(name);
    if root.file_type(&rel)?.is_some() {
        return Ok(());
    }
    root.mknod_char(&rel, 0o666, major, minor)
        .map_err(|e| fs_error("create the device", &root.host_path(&rel), e))
}
