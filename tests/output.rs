//! Output stage: reproducible tarballs and a deterministic root.
//!
//! Most tests need root (device nodes, owners, `security.capability`, bind mounts) and say so in
//! their name; outside CI they skip with a message when not run as root, in CI they fail.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use debstrap_onion::config::{Compression, Output};
use debstrap_onion::output::{make_deterministic, write_tar_to, write_tarball, OutputError};
use debstrap_onion::HeldRoot;
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags, CWD};
use sha2::{Digest, Sha256};

/// The root as a build holds it: by a descriptor opened once.
fn held(root: impl AsRef<Path>) -> HeldRoot {
    HeldRoot::open(root.as_ref()).expect("hold the root")
}

const SDE: i64 = 1_700_000_000;
/// A time before SDE, with a fraction, that must survive to the nanosecond.
const OLD: (i64, u32) = (1_600_000_000, 250_000_000);
/// vfs_cap_data revision 2, effective, permitting CAP_NET_RAW: what `setcap cap_net_raw+ep` writes.
const CAP_NET_RAW: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// False (after recording the skip) when the test cannot run here; in CI a missing
/// prerequisite fails (the suite's one rule, `support::skip`).
fn have_root(_test: &str) -> bool {
    support::skip::require_root()
}

fn have_gnu_tar(_test: &str) -> bool {
    let ok = Command::new("tar")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("GNU tar"))
        .unwrap_or(false);
    if !ok {
        support::skip::missing("GNU tar");
    }
    ok
}

/// One thing in a test tree.
#[derive(Clone)]
enum Node {
    Dir,
    File(&'static [u8]),
    Symlink(&'static str),
    HardLink(&'static str),
    Fifo,
    Char(u32, u32),
    Block(u32, u32),
    /// Skipped by the archive, as GNU tar skips it.
    Socket,
}

/// Path, node, mode, owner, xattrs, mtime (None: left at creation time, after SDE).
type Spec = (
    String,
    Node,
    u32,
    (u32, u32),
    Vec<(&'static str, Vec<u8>)>,
    Option<(i64, u32)>,
);

fn long_name() -> String {
    "n".repeat(120)
}

fn sample_tree() -> Vec<Spec> {
    use Node::*;
    let none = Vec::new;
    vec![
        ("a".into(), Dir, 0o755, (0, 0), none(), None),
        ("a/f".into(), File(b"in a\n"), 0o644, (0, 0), none(), Some(OLD)),
        // '-' sorts before '/': GNU tar's order puts a/ and its contents before a-b.
        ("a-b".into(), Dir, 0o750, (0, 0), none(), Some((OLD.0, 0))),
        ("a-b/g".into(), File(b"g\n"), 0o640, (1000, 1000), none(), None),
        ("dev".into(), Dir, 0o755, (0, 0), none(), None),
        ("dev/null".into(), Char(1, 3), 0o666, (0, 0), none(), None),
        ("dev/loop0".into(), Block(7, 0), 0o660, (0, 6), none(), None),
        ("dev/fifo".into(), Fifo, 0o600, (0, 0), none(), None),
        ("dev/log".into(), Socket, 0o666, (0, 0), none(), None),
        ("etc".into(), Dir, 0o755, (0, 0), none(), None),
        ("etc/big-owner".into(), File(b"owned by a large uid\n"), 0o644, (3_000_000, 4_000_000), none(), None),
        (
            "etc/user-attr".into(),
            File(b"has a user xattr\n"),
            0o644,
            (0, 0),
            vec![("user.comment", b"a=b %".to_vec())],
            None,
        ),
        (format!("etc/{}", long_name()), File(b"long name\n"), 0o644, (0, 0), none(), None),
        ("usr".into(), Dir, 0o755, (0, 0), none(), None),
        ("usr/bin".into(), Dir, 0o755, (0, 0), none(), None),
        ("usr/bin/ping".into(), File(b"\x7fELF ping"), 0o755, (0, 0), vec![("security.capability", CAP_NET_RAW.to_vec())], None),
        ("usr/bin/su".into(), File(b"\x7fELF su"), 0o4755, (0, 0), none(), None),
        ("usr/bin/tool".into(), File(b"#!/bin/sh\necho tool\n"), 0o755, (0, 0), none(), None),
        ("usr/bin/tool-again".into(), HardLink("usr/bin/tool"), 0o755, (0, 0), none(), None),
        ("usr/bin/tool-link".into(), Symlink("tool"), 0o777, (0, 0), none(), None),
        ("usr/bin/far-link".into(), Symlink("/usr/share/a/very/long/target/that/does/not/fit/in/the/hundred/bytes/of/a/ustar/linkname/field/at/all"), 0o777, (0, 0), none(), None),
        ("usr/bin/x-empty".into(), File(b""), 0o600, (0, 0), none(), Some(OLD)),
    ]
}

/// Creates `specs` under `root` in the order given (parents are created on the way).
fn build(root: &Path, specs: &[Spec]) {
    for (path, node, ..) in specs {
        let full = root.join(path);
        if let Some(parent) = full.parent() {
            fs_err::create_dir_all(parent).expect("parent");
        }
        match node {
            Node::Dir => {
                if !full.exists() {
                    fs_err::create_dir(&full).expect("dir");
                }
            }
            Node::File(content) => fs_err::write(&full, content).expect("file"),
            Node::Symlink(target) => std::os::unix::fs::symlink(target, &full).expect("symlink"),
            Node::HardLink(first) => {
                let first = root.join(first);
                if !first.exists() {
                    fs_err::write(&first, b"").expect("placeholder for the link");
                }
                std::fs::hard_link(&first, &full).expect("hard link");
            }
            Node::Socket => drop(std::os::unix::net::UnixListener::bind(&full).expect("socket")),
            Node::Fifo => {
                rustix::fs::mknodat(CWD, &full, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                    .expect("mkfifo")
            }
            Node::Char(major, minor) => rustix::fs::mknodat(
                CWD,
                &full,
                FileType::CharacterDevice,
                Mode::from_raw_mode(0o600),
                rustix::fs::makedev(*major, *minor),
            )
            .expect("mknod c"),
            Node::Block(major, minor) => rustix::fs::mknodat(
                CWD,
                &full,
                FileType::BlockDevice,
                Mode::from_raw_mode(0o600),
                rustix::fs::makedev(*major, *minor),
            )
            .expect("mknod b"),
        }
    }
    // Contents again: a placeholder made for a hard link may have been written before its file.
    for (path, node, ..) in specs {
        if let Node::File(content) = node {
            fs_err::write(root.join(path), content).expect("file contents");
        }
    }
    // Owners before modes (chown clears setuid) and before xattrs (chown drops capabilities).
    for (path, node, mode, (uid, gid), xattrs, _) in specs {
        let full = root.join(path);
        std::os::unix::fs::lchown(&full, Some(*uid), Some(*gid)).expect("lchown");
        if !matches!(node, Node::Symlink(_)) {
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(*mode)).expect("chmod");
        }
        for (name, value) in xattrs {
            rustix::fs::lsetxattr(&full, *name, value, XattrFlags::empty()).expect("setxattr");
        }
    }
    for (path, _, _, _, _, mtime) in specs {
        if let Some(time) = mtime {
            set_mtime(&root.join(path), *time);
        }
    }
}

fn set_mtime(path: &Path, (sec, nsec): (i64, u32)) {
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: sec,
            tv_nsec: nsec.into(),
        },
        last_modification: Timespec {
            tv_sec: sec,
            tv_nsec: nsec.into(),
        },
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).expect("utimensat");
}

/// A temp dir holding `root/` (mode 0755, old mtime so only its contents vary).
fn tree(specs: &[Spec]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    fs_err::create_dir(&root).expect("root");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod root");
    build(&root, specs);
    set_mtime(&root, (SDE + 5, 0));
    (dir, root)
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(fs_err::read(path).expect("read tarball")))
}

fn tarball(root: &Path, path: &Path, compression: Compression, sde: Option<i64>) {
    let output = Output::Tarball {
        path: path.to_path_buf(),
        compression,
    };
    write_tarball(&held(root), &output, sde).expect("write_tarball");
}

fn decompress(path: &Path, compression: Compression) -> Vec<u8> {
    let file = fs_err::File::open(path).expect("open");
    let mut out = Vec::new();
    match compression {
        Compression::None => std::io::BufReader::new(file).read_to_end(&mut out),
        Compression::Gzip => flate2::read::GzDecoder::new(file).read_to_end(&mut out),
        Compression::Xz => liblzma::read::XzDecoder::new(file).read_to_end(&mut out),
        Compression::Zstd => zstd::Decoder::new(file)
            .expect("zstd")
            .read_to_end(&mut out),
    }
    .expect("decompress");
    out
}

const ALL: [(Compression, &str); 4] = [
    (Compression::None, "tar"),
    (Compression::Gzip, "tar.gz"),
    (Compression::Xz, "tar.xz"),
    (Compression::Zstd, "tar.zst"),
];

#[test]
fn root_tarball_is_byte_identical_to_gnu_tar_with_mmdebstrap_options() {
    if !have_root("root_tarball_is_byte_identical_to_gnu_tar") || !have_gnu_tar("gnu tar") {
        return;
    }
    let (dir, root) = tree(&sample_tree());
    for sde in [Some(SDE), None] {
        let ours = dir.path().join("ours.tar");
        tarball(&root, &ours, Compression::None, sde);
        let theirs = dir.path().join("gnu.tar");
        let mut tar = Command::new("tar");
        tar.env("LC_ALL", "C").args([
            "--sort=name",
            "--numeric-owner",
            "--one-file-system",
            "--format=pax",
            "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
            "--xattrs",
        ]);
        if let Some(sde) = sde {
            tar.arg(format!("--mtime=@{sde}")).arg("--clamp-mtime");
        }
        let status = tar
            .arg("-cf")
            .arg(&theirs)
            .arg("-C")
            .arg(&root)
            .arg(".")
            .status()
            .expect("run tar");
        assert!(status.success());
        let (a, b) = (
            fs_err::read(&ours).expect("ours"),
            fs_err::read(&theirs).expect("gnu"),
        );
        let first_diff = a.iter().zip(&b).position(|(x, y)| x != y);
        assert!(
            a == b,
            "sde {sde:?}: ours {} bytes, GNU tar {} bytes, first difference at byte {first_diff:?}",
            a.len(),
            b.len()
        );
    }
}

#[test]
fn root_tarball_same_bytes_for_every_destination_and_compression() {
    if !have_root("root_tarball_same_bytes_for_every_destination_and_compression") {
        return;
    }
    let (dir, root) = tree(&sample_tree());
    let plain = dir.path().join("plain.tar");
    tarball(&root, &plain, Compression::None, Some(SDE));
    let plain_bytes = fs_err::read(&plain).expect("plain");
    for (compression, ext) in ALL {
        let first = dir.path().join(format!("one.{ext}"));
        let second = dir.path().join("sub").join(format!("two.{ext}"));
        fs_err::create_dir_all(second.parent().expect("parent")).expect("sub");
        tarball(&root, &first, compression, Some(SDE));
        tarball(&root, &second, compression, Some(SDE));
        assert_eq!(
            sha256(&first),
            sha256(&second),
            "{ext} differs between two writes"
        );
        assert_eq!(
            decompress(&first, compression),
            plain_bytes,
            "{ext} holds another tar"
        );
        let streamed =
            write_tar_to(&held(&root), Vec::new(), compression, Some(SDE)).expect("stream");
        assert_eq!(
            streamed,
            fs_err::read(&first).expect("read"),
            "{ext}: stream and file differ"
        );
    }
    // gzip: no file name flag, mtime 0, Unix.
    let gz = fs_err::read(dir.path().join("one.tar.gz")).expect("gz");
    assert_eq!(gz[3] & 0x08, 0, "FNAME set");
    assert_eq!(&gz[4..8], &[0, 0, 0, 0], "gzip mtime");
    assert_eq!(gz[9], 3);
    // The destination gets ordinary permissions, not a temp file's 0600.
    let mode = fs_err::metadata(dir.path().join("one.tar"))
        .expect("meta")
        .permissions()
        .mode();
    assert_ne!(mode & 0o044, 0, "tarball mode {mode:o}");
}

#[test]
fn root_tarball_members_read_back_with_the_tar_crate() {
    if !have_root("root_tarball_members_read_back_with_the_tar_crate") {
        return;
    }
    let (dir, root) = tree(&sample_tree());
    let path = dir.path().join("t.tar");
    tarball(&root, &path, Compression::None, Some(SDE));
    let bytes = fs_err::read(&path).expect("read");
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut names = Vec::new();
    let mut members = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = String::from_utf8(entry.path_bytes().into_owned()).expect("utf-8 name");
        let mut xattrs = BTreeMap::new();
        if let Some(pax) = entry.pax_extensions().expect("pax") {
            for ext in pax {
                let ext = ext.expect("pax record");
                if let Some(key) = ext.key().expect("key").strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(key.to_string(), ext.value_bytes().to_vec());
                }
            }
        }
        let h = entry.header();
        assert_eq!(h.username_bytes(), Some(&b""[..]), "{name}: user name");
        assert_eq!(h.groupname_bytes(), Some(&b""[..]), "{name}: group name");
        assert!(
            h.mtime().expect("mtime") <= SDE as u64,
            "{name}: mtime not clamped"
        );
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let h = entry.header();
        members.insert(
            name.clone(),
            (
                h.entry_type(),
                h.mode().expect("mode"),
                entry.header().uid().expect("uid"),
                h.gid().expect("gid"),
                h.mtime().expect("mtime"),
                link,
                (
                    h.device_major().expect("major"),
                    h.device_minor().expect("minor"),
                ),
                xattrs,
            ),
        );
        names.push(name);
    }
    let long = format!("./etc/{}", long_name());
    let expected = [
        "./",
        "./a/",
        "./a/f",
        "./a-b/",
        "./a-b/g",
        "./dev/",
        "./dev/fifo",
        "./dev/loop0",
        "./dev/null",
        "./etc/",
        "./etc/big-owner",
        long.as_str(),
        "./etc/user-attr",
        "./usr/",
        "./usr/bin/",
        "./usr/bin/far-link",
        "./usr/bin/ping",
        "./usr/bin/su",
        "./usr/bin/tool",
        "./usr/bin/tool-again",
        "./usr/bin/tool-link",
        "./usr/bin/x-empty",
    ];
    assert_eq!(names, expected);

    use tar::EntryType as T;
    let m = |name: &str| members.get(name).expect(name).clone();
    assert_eq!(m("./").0, T::Directory);
    assert_eq!(m("./").4, SDE as u64, "root dir mtime clamped");
    assert_eq!(m("./a/f").4, OLD.0 as u64, "older mtime kept");
    assert_eq!(m("./a-b/").1, 0o750);
    assert_eq!((m("./a-b/g").2, m("./a-b/g").3), (1000, 1000));
    assert_eq!(
        (m("./etc/big-owner").2, m("./etc/big-owner").3),
        (3_000_000, 4_000_000)
    );
    assert_eq!(m("./dev/null").0, T::Char);
    assert_eq!(m("./dev/null").6, (Some(1), Some(3)));
    assert_eq!(m("./dev/loop0").0, T::Block);
    assert_eq!(m("./dev/loop0").6, (Some(7), Some(0)));
    assert_eq!((m("./dev/loop0").1, m("./dev/loop0").3), (0o660, 6));
    assert_eq!(m("./dev/fifo").0, T::Fifo);
    assert_eq!(m("./usr/bin/su").1, 0o4755, "setuid kept");
    assert_eq!(m("./usr/bin/tool").0, T::Regular);
    assert_eq!(m("./usr/bin/tool-again").0, T::Link);
    assert_eq!(
        m("./usr/bin/tool-again").5.as_deref(),
        Some("./usr/bin/tool")
    );
    assert_eq!(m("./usr/bin/tool-link").0, T::Symlink);
    assert_eq!(m("./usr/bin/tool-link").5.as_deref(), Some("tool"));
    assert!(m("./usr/bin/far-link")
        .5
        .expect("target")
        .ends_with("field/at/all"));
    assert_eq!(
        m("./usr/bin/ping").7.get("security.capability"),
        Some(&CAP_NET_RAW.to_vec())
    );
    assert_eq!(
        m("./etc/user-attr").7.get("user.comment"),
        Some(&b"a=b %".to_vec())
    );
    // The fraction of an old mtime is kept in a pax record.
    assert!(
        bytes
            .windows(b"mtime=1600000000.25\n".len())
            .any(|w| w == b"mtime=1600000000.25\n"),
        "pax mtime record with the fraction"
    );
    assert!(!bytes.windows(6).any(|w| w == b"atime=" || w == b"ctime="));
}

#[test]
fn root_gnu_tar_extracts_the_same_tree() {
    if !have_root("root_gnu_tar_extracts_the_same_tree") || !have_gnu_tar("gnu tar") {
        return;
    }
    let specs = sample_tree();
    let (dir, root) = tree(&specs);
    let path = dir.path().join("t.tar.zst");
    tarball(&root, &path, Compression::Zstd, Some(SDE));
    let plain = dir.path().join("t.tar");
    fs_err::write(&plain, decompress(&path, Compression::Zstd)).expect("plain");
    let out = dir.path().join("extracted");
    fs_err::create_dir(&out).expect("out");
    let status = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&plain)
        .arg("-C")
        .arg(&out)
        .status()
        .expect("tar -x");
    assert!(status.success());
    for (rel, node, ..) in specs.iter().filter(|s| !matches!(s.1, Node::Socket)) {
        let (a, b) = (root.join(rel), out.join(rel));
        let (ma, mb) = (
            fs_err::symlink_metadata(&a).expect("original"),
            fs_err::symlink_metadata(&b).unwrap_or_else(|e| panic!("{rel} not extracted: {e}")),
        );
        assert_eq!(ma.mode(), mb.mode(), "{rel}: mode");
        assert_eq!((ma.uid(), ma.gid()), (mb.uid(), mb.gid()), "{rel}: owner");
        assert_eq!(ma.rdev(), mb.rdev(), "{rel}: device");
        assert_eq!(ma.mtime().min(SDE), mb.mtime(), "{rel}: mtime");
        match node {
            Node::Symlink(_) => {
                assert_eq!(
                    std::fs::read_link(&a).ok(),
                    std::fs::read_link(&b).ok(),
                    "{rel}"
                )
            }
            Node::File(_) => assert_eq!(fs_err::read(&a).ok(), fs_err::read(&b).ok(), "{rel}"),
            _ => {}
        }
    }
    let tool = fs_err::metadata(out.join("usr/bin/tool")).expect("tool");
    let again = fs_err::metadata(out.join("usr/bin/tool-again")).expect("tool-again");
    assert_eq!(tool.ino(), again.ino(), "hard link extracted as one inode");
    let mut cap = [0u8; 64];
    let n = rustix::fs::lgetxattr(
        out.join("usr/bin/ping"),
        "security.capability",
        &mut cap[..],
    )
    .expect("capability extracted");
    assert_eq!(&cap[..n], &CAP_NET_RAW);
}

#[test]
fn root_creation_order_does_not_change_the_bytes() {
    if !have_root("root_creation_order_does_not_change_the_bytes") {
        return;
    }
    let forward = sample_tree();
    let mut backward = forward.clone();
    backward.reverse();
    let (dir_a, root_a) = tree(&forward);
    let (dir_b, root_b) = tree(&backward);
    for (compression, ext) in [ALL[0], ALL[3]] {
        let a = dir_a.path().join(format!("a.{ext}"));
        let b = dir_b.path().join(format!("b.{ext}"));
        tarball(&root_a, &a, compression, Some(SDE));
        tarball(&root_b, &b, compression, Some(SDE));
        assert_eq!(sha256(&a), sha256(&b), "{ext}");
    }
}

/// A root with what a build leaves behind, `seed` varying the volatile parts.
fn build_leftovers(root: &Path, seed: &str) {
    let files: &[(&str, String)] = &[
        ("var/cache/apt/pkgcache.bin", format!("cache {seed}")),
        ("var/cache/apt/srcpkgcache.bin", format!("src cache {seed}")),
        ("var/cache/apt/archives/lock", String::new()),
        (
            "var/cache/apt/archives/base-files_13_amd64.deb",
            format!("deb {seed}"),
        ),
        ("var/cache/apt/archives/partial/x.deb", seed.to_string()),
        ("var/lib/apt/lists/lock", String::new()),
        (
            "var/lib/apt/lists/mirror_dists_trixie_InRelease",
            format!("release {seed}"),
        ),
        ("var/lib/apt/lists/partial/half", seed.to_string()),
        ("var/lib/apt/lists/auxfiles/aux", seed.to_string()),
        ("var/cache/debconf/config.dat", "kept\n".into()),
        ("var/cache/debconf/config.dat-old", format!("old {seed}")),
        ("var/lib/dpkg/status", "Package: base-files\n".into()),
        ("var/lib/dpkg/status-old", format!("old {seed}")),
        ("var/cache/ldconfig/aux-cache", seed.to_string()),
        ("var/log/dpkg.log", format!("{seed} install base-files")),
        (
            "var/log/debstrap-onion.log",
            format!("{seed} $ dpkg --configure -a"),
        ),
        ("var/log/alternatives.log", seed.to_string()),
        ("var/log/apt/term.log", seed.to_string()),
        ("var/log/apt/history.log", seed.to_string()),
        ("var/log/apt/eipp.log.xz", seed.to_string()),
        ("var/log/wtmp", format!("login record {seed}")),
        ("etc/machine-id", format!("{seed:0>32}\n")),
        ("tmp/leftover/file", seed.to_string()),
        ("run/lock/keep", String::new()),
        ("run/leftover.pid", seed.to_string()),
        (
            "usr/share/doc/base-files/copyright",
            "same in every build\n".into(),
        ),
    ];
    for (rel, content) in files {
        let path = root.join(rel);
        fs_err::create_dir_all(path.parent().expect("parent")).expect("dirs");
        fs_err::write(&path, content).expect("write");
    }
    std::fs::set_permissions(
        root.join("etc/machine-id"),
        std::fs::Permissions::from_mode(0o444),
    )
    .expect("chmod");
    std::fs::set_permissions(
        root.join("var/log/wtmp"),
        std::fs::Permissions::from_mode(0o664),
    )
    .expect("chmod");
    std::os::unix::fs::lchown(root.join("var/log/wtmp"), Some(0), Some(43)).expect("chown");
    fs_err::create_dir_all(root.join("var/lib/dbus")).expect("dbus");
    std::os::unix::fs::symlink("/etc/machine-id", root.join("var/lib/dbus/machine-id"))
        .expect("dbus link");
    std::os::unix::fs::symlink("/run", root.join("var/run")).expect("var/run");
    set_mtime(&root.join("usr/share/doc/base-files/copyright"), (OLD.0, 0));
}

fn all_mtimes(root: &Path) -> Vec<(PathBuf, i64)> {
    let mut out = vec![(
        root.to_path_buf(),
        fs_err::symlink_metadata(root).expect("root").mtime(),
    )];
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let meta = fs_err::symlink_metadata(entry.path()).expect("lstat");
            out.push((entry.path(), meta.mtime()));
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    out
}

#[test]
fn root_make_deterministic_removes_volatile_files_and_clamps_mtimes() {
    if !have_root("root_make_deterministic_removes_volatile_files_and_clamps_mtimes") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    build_leftovers(&root, "first");
    // A symlink pointing out of the root must not be followed by the log truncation.
    let outside = dir.path().join("outside.log");
    fs_err::write(&outside, "host data").expect("outside");
    std::os::unix::fs::symlink(&outside, root.join("var/log/escape.log")).expect("escape link");

    make_deterministic(&held(&root), SDE).expect("make_deterministic");

    for gone in [
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/srcpkgcache.bin",
        "var/cache/apt/archives/base-files_13_amd64.deb",
        "var/cache/apt/archives/partial/x.deb",
        "var/lib/apt/lists/mirror_dists_trixie_InRelease",
        "var/lib/apt/lists/partial/half",
        "var/lib/apt/lists/auxfiles",
        "var/cache/debconf/config.dat-old",
        "var/lib/dpkg/status-old",
        "var/cache/ldconfig/aux-cache",
        "var/log/dpkg.log",
        "var/log/debstrap-onion.log",
        "var/log/alternatives.log",
        "var/log/apt/term.log",
        "var/log/apt/history.log",
        "var/log/apt/eipp.log.xz",
        "tmp/leftover",
        "run/leftover.pid",
    ] {
        assert!(
            fs_err::symlink_metadata(root.join(gone)).is_err(),
            "{gone} still there"
        );
    }
    for kept in [
        "var/cache/apt/archives/lock",
        "var/cache/apt/archives/partial",
        "var/lib/apt/lists/lock",
        "var/lib/apt/lists/partial",
        "var/cache/debconf/config.dat",
        "var/lib/dpkg/status",
        "var/log/apt",
        "run/lock/keep",
        "tmp",
        "var/run",
        "var/lib/dbus/machine-id",
    ] {
        assert!(
            fs_err::symlink_metadata(root.join(kept)).is_ok(),
            "{kept} removed"
        );
    }
    let machine_id = fs_err::metadata(root.join("etc/machine-id")).expect("machine-id");
    assert_eq!(machine_id.len(), 0, "machine-id emptied");
    assert_eq!(machine_id.mode() & 0o7777, 0o444, "machine-id mode kept");
    let wtmp = fs_err::metadata(root.join("var/log/wtmp")).expect("wtmp");
    assert_eq!(
        (wtmp.len(), wtmp.mode() & 0o7777, wtmp.gid()),
        (0, 0o664, 43)
    );
    assert_eq!(
        std::fs::read_link(root.join("var/lib/dbus/machine-id")).expect("link"),
        Path::new("/etc/machine-id")
    );
    assert_eq!(
        fs_err::read_to_string(&outside).expect("outside"),
        "host data"
    );
    for (path, mtime) in all_mtimes(&root) {
        assert!(mtime <= SDE, "{} has mtime {mtime} > SDE", path.display());
    }
    let copyright = fs_err::metadata(root.join("usr/share/doc/base-files/copyright")).expect("doc");
    assert_eq!(copyright.mtime(), OLD.0, "older mtimes untouched");
}

#[test]
fn root_fresh_build_at_another_time_gives_the_same_tarball() {
    if !have_root("root_fresh_build_at_another_time_gives_the_same_tarball") {
        return;
    }
    let specs = sample_tree();
    let (dir_a, root_a) = tree(&specs);
    build_leftovers(&root_a, "first build");
    let (dir_b, root_b) = tree(&specs);
    build_leftovers(&root_b, "second build, a day later");
    // Everything in the second build is a day newer.
    for (path, _) in all_mtimes(&root_b) {
        let meta = fs_err::symlink_metadata(&path).expect("lstat");
        if meta.mtime() > SDE {
            set_mtime(&path, (meta.mtime() + 86_400, 123));
        }
    }
    make_deterministic(&held(&root_a), SDE).expect("clean a");
    make_deterministic(&held(&root_b), SDE).expect("clean b");
    for (compression, ext) in ALL {
        let a = dir_a.path().join(format!("a.{ext}"));
        let b = dir_b.path().join(format!("b.{ext}"));
        tarball(&root_a, &a, compression, Some(SDE));
        tarball(&root_b, &b, compression, Some(SDE));
        assert_eq!(sha256(&a), sha256(&b), "{ext}");
    }
}

fn leftover_temps(dir: &Path) -> Vec<PathBuf> {
    fs_err::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.as_bytes().ends_with(b".part"))
        })
        .collect()
}

#[test]
fn unwritable_destination_names_the_path_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    fs_err::create_dir_all(root.join("etc")).expect("root");
    fs_err::write(root.join("etc/hostname"), "onion\n").expect("file");

    // The destination is an existing directory: everything is written, the rename fails.
    let dest = dir.path().join("taken.tar.gz");
    fs_err::create_dir(&dest).expect("dir in the way");
    let output = Output::Tarball {
        path: dest.clone(),
        compression: Compression::Gzip,
    };
    let err = write_tarball(&held(&root), &output, Some(SDE)).expect_err("rename over a directory");
    assert!(matches!(err, OutputError::Persist { .. }), "{err:?}");
    assert!(err.to_string().contains(&*dest.to_string_lossy()), "{err}");
    assert_eq!(leftover_temps(dir.path()), Vec::<PathBuf>::new());

    // The destination's directory does not exist.
    let dest = dir.path().join("missing").join("x.tar");
    let output = Output::Tarball {
        path: dest.clone(),
        compression: Compression::None,
    };
    let err = write_tarball(&held(&root), &output, None).expect_err("no directory");
    assert!(matches!(err, OutputError::CreateTemp { .. }), "{err:?}");
    assert!(err.to_string().contains(&*dest.to_string_lossy()), "{err}");
}

#[test]
fn tarball_inside_the_root_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    fs_err::create_dir_all(root.join("srv")).expect("root");
    let dest = root.join("srv/image.tar");
    let output = Output::Tarball {
        path: dest.clone(),
        compression: Compression::None,
    };
    let err = write_tarball(&held(&root), &output, None).expect_err("inside the root");
    assert!(
        matches!(err, OutputError::DestinationInsideRoot { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&*dest.to_string_lossy()), "{err}");
    assert_eq!(fs_err::read_dir(root.join("srv")).expect("ls").count(), 0);
}

/// Bind-mounts `source` on `target` and unmounts on drop, whatever happens in between.
struct BindMount(PathBuf);

impl BindMount {
    fn new(source: &Path, target: &Path) -> BindMount {
        support::sys::bind(source, target).expect("bind mount");
        BindMount(target.to_path_buf())
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = support::sys::detach(&self.0);
    }
}

#[test]
fn root_mount_inside_the_root_is_refused() {
    if !have_root("root_mount_inside_the_root_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let mount_point = root.join("tmp/proc");
    fs_err::create_dir_all(&mount_point).expect("mount point");
    fs_err::write(root.join("tmp/a-file"), "x").expect("file");
    // The same filesystem bind-mounted: only the mount id tells it apart.
    let source = dir.path().join("host-dir");
    fs_err::create_dir(&source).expect("source");
    fs_err::write(source.join("precious"), "host data").expect("precious");
    let _mount = BindMount::new(&source, &mount_point);

    let dest = dir.path().join("out.tar");
    let output = Output::Tarball {
        path: dest.clone(),
        compression: Compression::None,
    };
    let err = write_tarball(&held(&root), &output, Some(SDE)).expect_err("mount refused");
    assert!(
        matches!(&err, OutputError::MountPoint { path } if *path == mount_point),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&*mount_point.to_string_lossy()),
        "{err}"
    );
    assert!(!dest.exists());
    assert_eq!(leftover_temps(dir.path()), Vec::<PathBuf>::new());

    let err = make_deterministic(&held(&root), SDE).expect_err("cleanup refuses the mount too");
    assert!(
        matches!(&err, OutputError::MountPoint { path } if *path == mount_point),
        "{err:?}"
    );
    assert_eq!(
        fs_err::read_to_string(source.join("precious")).expect("host file survives"),
        "host data"
    );
}

#[test]
fn directory_output_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Output::Directory(dir.path().to_path_buf());
    write_tarball(&held(dir.path()), &output, Some(SDE)).expect("no-op");
    assert_eq!(fs_err::read_dir(dir.path()).expect("ls").count(), 0);
}

/// Member names of an uncompressed tarball, as GNU tar lists them.
fn gnu_tar_names(tar: &[u8], dir: &Path) -> Vec<String> {
    let file = dir.join("listed.tar");
    fs_err::write(&file, tar).expect("write");
    let listed = Command::new("tar")
        .arg("-tf")
        .arg(&file)
        .output()
        .expect("run tar");
    assert!(listed.status.success(), "tar -tf failed");
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn output_reads_and_cleans_the_held_root_though_its_path_now_names_another() {
    if !have_gnu_tar("output_reads_and_cleans_the_held_root_though_its_path_now_names_another") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("root");
    let moved = dir.path().join("moved");
    fs_err::create_dir_all(path.join("var/log")).expect("mkdir");
    fs_err::write(path.join("built"), "ours").expect("write");
    fs_err::write(path.join("var/log/dpkg.log"), "log").expect("write");
    let root = held(&path);
    // Another directory put at the root's path after it was held, as a user who can write its
    // parent would do.
    fs_err::rename(&path, &moved).expect("move the root away");
    fs_err::create_dir_all(path.join("var/log")).expect("mkdir");
    fs_err::write(path.join("planted"), "theirs").expect("write");
    fs_err::write(path.join("var/log/dpkg.log"), "theirs").expect("write");

    make_deterministic(&root, SDE).expect("make_deterministic");
    let tar = write_tar_to(&root, Vec::new(), Compression::None, Some(SDE)).expect("stream");
    let names = gnu_tar_names(&tar, dir.path());
    assert!(names.contains(&"./built".to_owned()), "{names:?}");
    assert!(!names.contains(&"./planted".to_owned()), "{names:?}");
    assert!(
        !moved.join("var/log/dpkg.log").exists(),
        "the held root was cleaned"
    );
    assert_eq!(
        fs_err::read_to_string(path.join("var/log/dpkg.log")).expect("read"),
        "theirs",
        "the directory swapped in was cleaned"
    );
}
