//! Tree comparison for equivalence tests: file types, modes, owners, symlink targets and file
//! contents, with the paths that legitimately differ between two builds left out.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::Digest;

/// What is compared of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Symlink target, device number or content hash.
    pub detail: String,
}

/// Paths left out of the comparison: logs, caches, apt lists, dpkg's backups and per-machine
/// files (machine-id, hostname, resolv.conf, hosts), as the equivalence criterion says.
pub fn ignored(path: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "var/log/",
        "var/cache/",
        "var/lib/apt/lists/",
        "tmp/",
        "run/",
        "debootstrap/",
        "proc/",
        "sys/",
    ];
    const EXACT: &[&str] = &[
        "etc/machine-id",
        "etc/hostname",
        "etc/resolv.conf",
        "etc/hosts",
        "var/lib/dbus/machine-id",
        "var/lib/systemd/random-seed",
    ];
    PREFIXES.iter().any(|p| path.starts_with(p))
        || EXACT.contains(&path)
        || (path.starts_with("var/lib/dpkg/") && path.ends_with("-old"))
        || path.ends_with(".dpkg-old")
}

/// Every path under `root` (relative, without leading `/`) with what is compared of it.
pub fn snapshot(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
    let mut entries: Vec<_> = fs_err::read_dir(dir).expect("read dir").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        let meta = fs_err::symlink_metadata(&path).expect("lstat");
        let ft = meta.file_type();
        let (kind, detail) = if ft.is_symlink() {
            (
                "symlink",
                std::fs::read_link(&path)
                    .expect("readlink")
                    .to_string_lossy()
                    .into_owned(),
            )
        } else if ft.is_dir() {
            ("dir", String::new())
        } else if ft.is_file() {
            let data = fs_err::read(&path).expect("read file");
            ("file", hex::encode(sha2::Sha256::digest(&data)))
        } else {
            use std::os::unix::fs::FileTypeExt;
            let kind = if ft.is_char_device() {
                "char"
            } else if ft.is_block_device() {
                "block"
            } else if ft.is_fifo() {
                "fifo"
            } else {
                "socket"
            };
            (kind, format!("{:x}", meta.rdev()))
        };
        if !ignored(&rel) {
            out.insert(
                rel.clone(),
                Entry {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    detail,
                },
            );
        }
        if ft.is_dir() && !ignored(&format!("{rel}/")) {
            walk(root, &path, out);
        }
    }
}

/// Human-readable differences between two snapshots, one line each.
pub fn differences(
    ours: &BTreeMap<String, Entry>,
    theirs: &BTreeMap<String, Entry>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for (path, entry) in ours {
        match theirs.get(path) {
            None => diffs.push(format!("only ours: /{path} ({})", entry.kind)),
            Some(other) if other != entry => diffs.push(format!(
                "differs: /{path}: ours {entry:?}, theirs {other:?}"
            )),
            Some(_) => {}
        }
    }
    for (path, entry) in theirs {
        if !ours.contains_key(path) {
            diffs.push(format!("only theirs: /{path} ({})", entry.kind));
        }
    }
    diffs
}
