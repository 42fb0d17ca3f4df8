//! Strict tree comparison, as mmdebstrap's test suite compares its roots with debootstrap's:
//! every path's type, mode, owner, symlink target, device number, contents, extended
//! attributes (file capabilities) and mtime clamped to SOURCE_DATE_EPOCH. Only the paths in
//! [`EXCLUDED`] are left out, each for the reason given beside it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::Digest;

/// A path pattern (relative to the root, no leading `/`) left out of the comparison, and why.
/// `DIR/**` is everything strictly under DIR (DIR itself is compared), `DIR/` is DIR and
/// everything under it; a `*` in the last component matches any run of characters there;
/// anything else is one exact path.
#[derive(Debug, Clone, Copy)]
pub struct Exclusion {
    pub pattern: &'static str,
    /// Whether only the mtime is left out (the path is compared in every other aspect).
    pub mtime_only: bool,
    pub why: &'static str,
}

/// The one list of what the comparison leaves out. Everything else must be identical.
pub const EXCLUDED: &[Exclusion] = &[
    Exclusion {
        pattern: "proc/**",
        mtime_only: false,
        why: "a kernel filesystem's mount point: its contents are the running kernel's",
    },
    Exclusion {
        pattern: "sys/**",
        mtime_only: false,
        why: "a kernel filesystem's mount point: its contents are the running kernel's",
    },
    Exclusion {
        pattern: "debootstrap/**",
        mtime_only: false,
        why: "debootstrap's own working files (removed by it unless --keep-debootstrap-dir)",
    },
    Exclusion {
        pattern: "etc/hostname",
        mtime_only: false,
        why: "debootstrap copies the host's /etc/hostname; ours is the build's NAME",
    },
    Exclusion {
        pattern: "etc/resolv.conf",
        mtime_only: false,
        why: "debootstrap copies the host's resolver configuration; a reproducible build must not",
    },
    Exclusion {
        pattern: "var/log/bootstrap.log",
        mtime_only: false,
        why: "debootstrap's log of its own run",
    },
    Exclusion {
        pattern: "run/**",
        mtime_only: false,
        why: "a tmpfs on a running system: what scripts leave there (mount(8)'s utab when \
              debootstrap mounts /proc) is not part of the image, and a reproducible build clears it",
    },
    Exclusion {
        pattern: "var/log/dpkg.log",
        mtime_only: false,
        why: "dpkg's log of this build, with the build's wall-clock times",
    },
    Exclusion {
        pattern: "var/log/alternatives.log",
        mtime_only: false,
        why: "update-alternatives' log of this build, with the build's wall-clock times",
    },
    Exclusion {
        pattern: "var/log/apt/**",
        mtime_only: false,
        why: "apt's logs of this build, with the build's wall-clock times",
    },
    Exclusion {
        pattern: "var/cache/apt/*.bin",
        mtime_only: false,
        why: "apt's binary caches, rebuilt on demand (removed in a reproducible build)",
    },
    Exclusion {
        pattern: "var/cache/apt/archives/*.deb",
        mtime_only: false,
        why: "the downloaded packages debootstrap leaves behind (`apt-get clean` removes them)",
    },
    Exclusion {
        pattern: "var/lib/apt/lists/**",
        mtime_only: false,
        why: "the mirror's indices as fetched; they change with the mirror, not with the build",
    },
    Exclusion {
        pattern: "var/cache/debconf/*-old",
        mtime_only: false,
        why: "debconf's backup of its previous database state, an artefact of write order",
    },
    Exclusion {
        pattern: "var/lib/dpkg/*-old",
        mtime_only: false,
        why: "dpkg's backup of its previous database state, an artefact of write order",
    },
    Exclusion {
        pattern: "var/cache/ldconfig/aux-cache",
        mtime_only: false,
        why: "ldconfig's cache of the files' ctimes, which no two builds share",
    },
    Exclusion {
        pattern: "var/cache/apt",
        mtime_only: true,
        why: "debootstrap downloads under it (excluded above), which stamps the build's time",
    },
    Exclusion {
        pattern: "var/cache/apt/archives",
        mtime_only: true,
        why: "debootstrap leaves its downloaded .debs here (excluded above)",
    },
    Exclusion {
        pattern: "var/cache/apt/archives/partial",
        mtime_only: true,
        why: "debootstrap downloads each .deb here first, which stamps the build's time",
    },
    Exclusion {
        pattern: "var/lib/apt",
        mtime_only: true,
        why: "debootstrap writes the mirror's indices under it (excluded above)",
    },
    Exclusion {
        pattern: "var/lib/apt/lists",
        mtime_only: true,
        why: "debootstrap leaves the mirror's indices here (excluded above)",
    },
    Exclusion {
        pattern: "var/lib/apt/lists/partial",
        mtime_only: true,
        why: "debootstrap downloads the mirror's indices here first",
    },
    Exclusion {
        pattern: "proc",
        mtime_only: true,
        why: "the mount point of proc, which debootstrap's run leaves with the build's time",
    },
    Exclusion {
        pattern: "etc/machine-id",
        mtime_only: false,
        why: "a per-machine identity; a reproducible image carries an empty one (machine-id(5))",
    },
];

/// Whether `rel` is left out of the comparison by [`EXCLUDED`].
pub fn excluded(rel: &str) -> Option<&'static Exclusion> {
    EXCLUDED.iter().find(|e| matches(e.pattern, rel))
}

fn matches(pattern: &str, rel: &str) -> bool {
    if let Some(dir) = pattern.strip_suffix('/').filter(|d| !d.ends_with("/*")) {
        return rel == dir
            || rel
                .strip_prefix(dir)
                .is_some_and(|rest| rest.starts_with('/'));
    }
    if let Some(dir) = pattern.strip_suffix("/**") {
        return rel
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'));
    }
    let (p_dir, p_name) = pattern.rsplit_once('/').unwrap_or(("", pattern));
    let (r_dir, r_name) = rel.rsplit_once('/').unwrap_or(("", rel));
    if p_dir != r_dir {
        return false;
    }
    match p_name.split_once('*') {
        None => p_name == r_name,
        Some((head, tail)) => {
            r_name.len() >= head.len() + tail.len()
                && r_name.starts_with(head)
                && r_name.ends_with(tail)
        }
    }
}

/// What is compared of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Symlink target, `major:minor` of a device, or the SHA-256 of a file's contents.
    pub detail: String,
    /// Extended attributes, name and value in hex (security.capability among them).
    pub xattrs: BTreeMap<String, String>,
    /// min(mtime, SOURCE_DATE_EPOCH), in whole seconds; `None` where an exclusion leaves the
    /// mtime out.
    pub mtime: Option<i64>,
}

/// A root's entries, plus the contents of its small text files for showing differences.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub entries: BTreeMap<String, Entry>,
    texts: BTreeMap<String, String>,
}

/// Every path under `root` but the excluded ones, mtimes clamped to `source_date_epoch`.
pub fn snapshot(root: &Path, source_date_epoch: i64) -> Snapshot {
    let mut snap = Snapshot::default();
    walk(root, root, source_date_epoch, &mut snap);
    snap
}

fn walk(root: &Path, dir: &Path, sde: i64, snap: &mut Snapshot) {
    let mut entries: Vec<_> = fs_err::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry"))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        let exclusion = excluded(&rel);
        if exclusion.is_some_and(|e| !e.mtime_only) {
            continue;
        }
        let meta = fs_err::symlink_metadata(&path).expect("lstat");
        let ft = meta.file_type();
        let (kind, detail) = if ft.is_symlink() {
            let target = fs_err::read_link(&path).expect("readlink");
            ("symlink", target.to_string_lossy().into_owned())
        } else if ft.is_dir() {
            ("dir", String::new())
        } else if ft.is_file() {
            let data = fs_err::read(&path).expect("read file");
            if data.len() <= 256 * 1024 {
                if let Ok(text) = String::from_utf8(data.clone()) {
                    snap.texts.insert(rel.clone(), text);
                }
            }
            ("file", hex::encode(sha2::Sha256::digest(&data)))
        } else {
            let rdev = meta.rdev();
            let kind = if ft.is_char_device() {
                "char"
            } else if ft.is_block_device() {
                "block"
            } else if ft.is_fifo() {
                "fifo"
            } else {
                "socket"
            };
            (
                kind,
                format!("{}:{}", rustix::fs::major(rdev), rustix::fs::minor(rdev)),
            )
        };
        snap.entries.insert(
            rel,
            Entry {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                detail,
                xattrs: xattrs(&path),
                mtime: (!exclusion.is_some_and(|e| e.mtime_only)).then(|| meta.mtime().min(sde)),
            },
        );
        if ft.is_dir() {
            walk(root, &path, sde, snap);
        }
    }
}

/// The extended attributes of `path` itself (a symlink's own, never its target's).
fn xattrs(path: &Path) -> BTreeMap<String, String> {
    let mut names = vec![0u8; 64 * 1024];
    let len = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(len) => len,
        Err(rustix::io::Errno::NOTSUP) => return BTreeMap::new(),
        Err(e) => panic!("listxattr {}: {e}", path.display()),
    };
    names[..len]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|name| {
            let name = std::str::from_utf8(name).expect("xattr name is utf-8");
            let mut value = vec![0u8; 64 * 1024];
            let n = rustix::fs::lgetxattr(path, name, &mut value[..])
                .unwrap_or_else(|e| panic!("getxattr {name} {}: {e}", path.display()));
            (name.to_owned(), hex::encode(&value[..n]))
        })
        .collect()
}

/// One path that differs, with what differs about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: String,
    /// `only ours`, `only theirs`, or the aspects that differ (`mtime`, `contents`, ...).
    pub aspects: Vec<&'static str>,
    pub detail: String,
}

/// Every difference between two snapshots, in path order.
pub fn differences(ours: &Snapshot, theirs: &Snapshot) -> Vec<Difference> {
    let paths: BTreeSet<&String> = ours.entries.keys().chain(theirs.entries.keys()).collect();
    let mut diffs = Vec::new();
    for path in paths {
        let (a, b) = match (ours.entries.get(path), theirs.entries.get(path)) {
            (Some(a), None) => {
                diffs.push(Difference {
                    path: path.clone(),
                    aspects: vec!["only ours"],
                    detail: a.kind.to_owned(),
                });
                continue;
            }
            (None, Some(b)) => {
                diffs.push(Difference {
                    path: path.clone(),
                    aspects: vec!["only theirs"],
                    detail: b.kind.to_owned(),
                });
                continue;
            }
            (Some(a), Some(b)) => (a, b),
            (None, None) => unreachable!("the path came from one of the two"),
        };
        let mut aspects = Vec::new();
        let mut detail = Vec::new();
        if a.kind != b.kind {
            aspects.push("type");
            detail.push(format!("type {} vs {}", a.kind, b.kind));
        } else if a.detail != b.detail {
            let aspect = match a.kind {
                "symlink" => "symlink target",
                "file" => "contents",
                _ => "device number",
            };
            aspects.push(aspect);
            if a.kind == "file" {
                detail.push(text_difference(ours, theirs, path));
            } else {
                detail.push(format!("{} vs {}", a.detail, b.detail));
            }
        }
        if a.mode != b.mode {
            aspects.push("mode");
            detail.push(format!("mode {:o} vs {:o}", a.mode, b.mode));
        }
        if (a.uid, a.gid) != (b.uid, b.gid) {
            aspects.push("owner");
            detail.push(format!("owner {}:{} vs {}:{}", a.uid, a.gid, b.uid, b.gid));
        }
        if a.xattrs != b.xattrs {
            aspects.push("xattrs");
            detail.push(format!("xattrs {:?} vs {:?}", a.xattrs, b.xattrs));
        }
        if a.mtime != b.mtime {
            aspects.push("mtime");
            detail.push(format!("mtime {:?} vs {:?}", a.mtime, b.mtime));
        }
        if !aspects.is_empty() {
            diffs.push(Difference {
                path: path.clone(),
                aspects,
                detail: detail.join("; "),
            });
        }
    }
    diffs
}

/// The lines only one side of a text file has (a few of each), or `binary` when either side
/// is not a small text file.
fn text_difference(ours: &Snapshot, theirs: &Snapshot, path: &str) -> String {
    let (Some(a), Some(b)) = (ours.texts.get(path), theirs.texts.get(path)) else {
        return "binary contents differ".to_owned();
    };
    let a_lines: BTreeSet<&str> = a.lines().collect();
    let b_lines: BTreeSet<&str> = b.lines().collect();
    let only_a: Vec<&str> = a_lines.difference(&b_lines).take(6).copied().collect();
    let only_b: Vec<&str> = b_lines.difference(&a_lines).take(6).copied().collect();
    if only_a.is_empty() && only_b.is_empty() {
        return "the same lines in another order".to_owned();
    }
    format!("lines only ours {only_a:?}, only theirs {only_b:?}")
}

/// How many differences there are of each kind (a path counts once under each of its aspects),
/// and how many differ in their mtime alone.
pub fn tally(diffs: &[Difference]) -> (BTreeMap<&'static str, usize>, usize) {
    let mut counts = BTreeMap::new();
    for d in diffs {
        for aspect in &d.aspects {
            *counts.entry(*aspect).or_insert(0) += 1;
        }
    }
    let mtime_only = diffs.iter().filter(|d| d.aspects == ["mtime"]).count();
    (counts, mtime_only)
}
