//! The unpack stage against .debs built by the tests: formats, file types, merged /usr, dpkg's
//! database, and hostile archives that must not write outside the root. Every test here needs
//! root (owners, device nodes, linking by descriptor), hence `root` in their names.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use debstrap_onion::fetch::{CachedDeb, Sha256Digest};
use debstrap_onion::progress::{Counter, Reporter, Stage};
use debstrap_onion::unpack::{unpack, UnpackError, UnpackRequest, Unpacked};
use debstrap_onion::Silent;
use support::deb::{Compression, DebBuilder};

/// Whether the test may run: root is required; in CI its absence is a failure.
fn have_root() -> bool {
    support::host::require_root()
}

/// A temp dir holding `debs/`, the root (not created beforehand) and an `outside/` sibling
/// with one sentinel file that hostile archives try to reach.
struct Fixture {
    tmp: tempfile::TempDir,
    debs: PathBuf,
    root: PathBuf,
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().expect("temp dir");
        let debs = tmp.path().join("debs");
        let outside = tmp.path().join("outside");
        fs_err::create_dir(&debs).expect("debs dir");
        fs_err::create_dir(&outside).expect("outside dir");
        fs_err::write(outside.join("sentinel"), "untouched").expect("sentinel");
        let root = tmp.path().join("root");
        Fixture {
            tmp,
            debs,
            root,
            outside,
        }
    }

    fn write(&self, builders: &[DebBuilder]) -> Vec<CachedDeb> {
        builders.iter().map(|b| b.write(&self.debs)).collect()
    }

    fn unpack_debs(&self, debs: &[CachedDeb]) -> Result<Unpacked, UnpackError> {
        unpack(
            &UnpackRequest {
                root: &self.root,
                debs,
                arch: &crate::support::native_arch(),
            },
            &Silent,
        )
    }

    fn unpack(&self, builders: &[DebBuilder]) -> Result<Unpacked, UnpackError> {
        self.unpack_debs(&self.write(builders))
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn read(&self, rel: &str) -> String {
        fs_err::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    fn lmeta(&self, rel: &str) -> std::fs::Metadata {
        fs_err::symlink_metadata(self.path(rel)).unwrap_or_else(|e| panic!("lstat {rel}: {e}"))
    }

    /// Nothing but the sentinel is in `outside/`, unchanged and not linked elsewhere, and the
    /// temp dir holds nothing but what the fixture made.
    fn assert_outside_untouched(&self) {
        let names: BTreeSet<String> = fs_err::read_dir(&self.outside)
            .expect("list outside")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, BTreeSet::from(["sentinel".to_owned()]));
        let sentinel = self.outside.join("sentinel");
        assert_eq!(
            fs_err::read_to_string(&sentinel).expect("sentinel"),
            "untouched"
        );
        assert_eq!(fs_err::metadata(&sentinel).expect("sentinel").nlink(), 1);
        let top: BTreeSet<String> = fs_err::read_dir(self.tmp.path())
            .expect("list temp dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            top.is_subset(&BTreeSet::from([
                "debs".into(),
                "outside".into(),
                "root".into()
            ])),
            "unexpected entries beside the root: {top:?}"
        );
    }
}

fn pkg(name: &str) -> DebBuilder {
    DebBuilder::new(name, "1.0-1", &crate::support::native_arch())
}

fn error_line(e: &UnpackError) -> String {
    let mut line = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}

// ---------------------------------------------------------------------------------------------
// Formats and file types

#[test]
fn root_every_compression_unpacks() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let compressions = [
        ("none", Compression::None),
        ("gz", Compression::Gzip),
        ("xz", Compression::Xz),
        ("zst", Compression::Zstd),
    ];
    let builders: Vec<DebBuilder> = compressions
        .iter()
        .map(|(label, c)| {
            pkg(&format!("pkg-{label}"))
                .compression(*c)
                .dir("./", 0o755)
                .dir("./usr/", 0o755)
                .dir("./usr/share/", 0o755)
                .file(&format!("./usr/share/{label}.txt"), 0o644, label.as_bytes())
        })
        .collect();
    let unpacked = f.unpack(&builders).expect("unpack");
    assert_eq!(unpacked.packages.len(), 4);
    for (label, _) in compressions {
        assert_eq!(f.read(&format!("usr/share/{label}.txt")), label);
    }
}

#[test]
fn root_regular_files_keep_contents_mode_owner_and_mtime() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    f.unpack(&[pkg("a")
        .dir("./etc/", 0o755)
        .file("./etc/secret", 0o640, b"s3cret")
        .owned_by(1234, 5678)
        .mtime(1_600_000_000)])
        .expect("unpack");
    let m = f.lmeta("etc/secret");
    assert_eq!(f.read("etc/secret"), "s3cret");
    assert_eq!(m.permissions().mode() & 0o7777, 0o640);
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    assert_eq!(m.mtime(), 1_600_000_000);
}

#[test]
fn root_setuid_and_setgid_survive_the_owner_change() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    f.unpack(&[pkg("su")
        .dir("./usr/", 0o755)
        .dir("./usr/bin/", 0o755)
        .file("./usr/bin/su", 0o4755, b"#!/bin/sh\n")
        .file("./usr/bin/wall", 0o2755, b"#!/bin/sh\n")
        .owned_by(0, 5)])
        .expect("unpack");
    let su = f.lmeta("usr/bin/su");
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
    let wall = f.lmeta("usr/bin/wall");
    assert_eq!(wall.permissions().mode() & 0o7777, 0o2755);
    assert_eq!(wall.gid(), 5);
}

#[test]
fn root_hard_links_share_one_inode() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    f.unpack(&[pkg("perl")
        .dir("./usr/", 0o755)
        .dir("./usr/bin/", 0o755)
        .file("./usr/bin/perl", 0o755, b"perl")
        .hardlink("./usr/bin/perl5.40", "./usr/bin/perl")])
        .expect("unpack");
    let a = f.lmeta("usr/bin/perl");
    let b = f.lmeta("usr/bin/perl5.40");
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
}

#[test]
fn root_symlinks_keep_their_targets_and_absolute_ones_resolve_inside_the_root() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    f.unpack(&[pkg("base")
        .dir("./run/", 0o755)
        .dir("./var/", 0o755)
        .symlink("./var/run", "/run")
        .owned_by(0, 0)
        .mtime(1_500_000_000)
        .file("./var/run/utmp", 0o664, b"inside")])
        .expect("unpack");
    assert_eq!(
        std::fs::read_link(f.path("var/run")).expect("readlink"),
        Path::new("/run")
    );
    assert_eq!(f.lmeta("var/run").mtime(), 1_500_000_000);
    // The file written through the absolute symlink is in the root's /run, not the host's.
    assert_eq!(f.read("run/utmp"), "inside");
    f.assert_outside_untouched();
}

#[test]
fn root_a_directory_symlink_satisfies_a_later_directory_entry() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let a = pkg("a")
        .dir("./usr/", 0o755)
        .dir("./usr/share/", 0o755)
        .dir("./usr/share/real/", 0o755)
        .symlink("./usr/share/alias", "real");
    let b = pkg("b")
        .dir("./usr/", 0o755)
        .dir("./usr/share/", 0o755)
        .dir("./usr/share/alias/", 0o700)
        .file("./usr/share/alias/file", 0o644, b"through the link");
    // b after a in request order; the claim rules make the thread timing irrelevant, but a's
    // symlink must exist before b's directory entry is seen, so unpack them one at a time.
    let debs = f.write(&[a, b]);
    f.unpack_debs(&debs[..1]).expect("unpack a");
    unpack(
        &UnpackRequest {
            root: &f.root,
            debs: &debs[1..],
            arch: &crate::support::native_arch(),
        },
        &Silent,
    )
    .expect("unpack b");
    assert!(f.lmeta("usr/share/alias").file_type().is_symlink());
    assert_eq!(f.read("usr/share/real/file"), "through the link");
    assert_eq!(
        f.lmeta("usr/share/real").permissions().mode() & 0o7777,
        0o755
    );
}

#[test]
fn root_devices_and_fifos_are_made_with_their_modes() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    f.unpack(&[pkg("devs")
        .dir("./dev/", 0o755)
        .char_device("./dev/null", 0o666, 1, 3)
        .fifo("./dev/initctl", 0o600)])
        .expect("unpack");
    let null = f.lmeta("dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(null.permissions().mode() & 0o7777, 0o666);
    let fifo = f.lmeta("dev/initctl");
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.permissions().mode() & 0o7777, 0o600);
}

// ---------------------------------------------------------------------------------------------
// Merged /usr and shared paths

#[test]
fn root_files_under_bin_land_in_usr_bin_and_the_links_stay() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    f.unpack(&[pkg("coreutils")
        .dir("./", 0o755)
        .dir("./bin/", 0o755)
        .file("./bin/ls", 0o755, b"ls")
        .dir("./lib64/", 0o755)
        .file("./lib64/ld.so", 0o755, b"ld")
        .dir("./usr/", 0o755)
        .dir("./usr/sbin/", 0o755)
        .file("./usr/sbin/chroot", 0o755, b"chroot")])
        .expect("unpack");
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        assert!(
            f.lmeta(link).file_type().is_symlink(),
            "{link} is a symlink"
        );
        assert_eq!(
            std::fs::read_link(f.path(link)).expect("readlink"),
            Path::new(target)
        );
        assert!(f.lmeta(target).is_dir());
    }
    assert_eq!(f.read("usr/bin/ls"), "ls");
    assert_eq!(f.read("usr/lib64/ld.so"), "ld");
    assert_eq!(f.read("sbin/chroot"), "chroot");
    // dpkg's list keeps the names the package used.
    let list = f.read("var/lib/dpkg/info/coreutils.list");
    assert!(list.lines().any(|l| l == "/bin/ls"), "{list}");
}

#[test]
fn root_a_package_shipping_the_merged_usr_links_keeps_them() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    // trixie's base-files ships the links itself; another package ships into /lib.
    f.unpack(&[
        pkg("base-files")
            .dir("./", 0o755)
            .symlink("./bin", "usr/bin")
            .mtime(1_234_567_890)
            .symlink("./lib", "usr/lib")
            .dir("./usr/", 0o755)
            .dir("./usr/bin/", 0o755)
            .dir("./usr/lib/", 0o755),
        pkg("libfoo")
            .dir("./lib/", 0o755)
            .dir(
                &format!("./lib/{}/", crate::support::multiarch_tuple()),
                0o755,
            )
            .file(
                &format!("./lib/{}/libfoo.so.1", crate::support::multiarch_tuple()),
                0o644,
                b"foo",
            ),
    ])
    .expect("unpack");
    assert!(f.lmeta("bin").file_type().is_symlink());
    assert_eq!(f.lmeta("bin").mtime(), 1_234_567_890);
    assert!(f.lmeta("lib").file_type().is_symlink());
    assert_eq!(
        f.read(&format!(
            "usr/lib/{}/libfoo.so.1",
            crate::support::multiarch_tuple()
        )),
        "foo"
    );
}

#[test]
fn root_a_file_shipped_by_two_packages_is_refused_naming_both_and_the_path() {
    if !have_root() {
        return;
    }
    // The second case reaches one file by two names, through the merged-/usr link.
    for (path_a, path_b, shown) in [
        ("./etc/shared", "./etc/shared", "etc/shared"),
        ("./bin/tool", "./usr/bin/tool", "bin/tool"),
    ] {
        let f = Fixture::new();
        let make = |name: &str, path: &str| {
            pkg(name)
                .dir("./etc/", 0o755)
                .dir("./usr/", 0o755)
                .dir("./usr/bin/", 0o755)
                .file(path, 0o644, name.as_bytes())
        };
        let err = f
            .unpack(&[make("one", path_a), make("two", path_b)])
            .expect_err("a file in two packages");
        let line = error_line(&err);
        assert!(matches!(&err, UnpackError::Overwrite { .. }), "{line}");
        assert!(line.contains("one") && line.contains("two"), "{line}");
        assert!(line.contains(shown) && line.contains("Replaces"), "{line}");
        assert!(!f.root.exists(), "the half-unpacked root is removed");
    }
}

#[test]
fn root_a_file_shipped_twice_goes_to_the_package_that_replaces_the_other() {
    if !have_root() {
        return;
    }
    let old = pkg("old")
        .dir("./etc/", 0o755)
        .file("./etc/shared", 0o644, b"old");
    let new = |replaces: &str| {
        pkg("new")
            .field("Replaces", replaces)
            .dir("./etc/", 0o755)
            .file("./etc/shared", 0o644, b"new")
    };
    // Request order does not decide: Replaces does.
    for reversed in [false, true] {
        let f = Fixture::new();
        let mut builders = vec![old.clone(), new("old (<< 2)")];
        if reversed {
            builders.reverse();
        }
        f.unpack(&builders).expect("Replaces allows it");
        assert_eq!(f.read("etc/shared"), "new");
        // As dpkg records it: the file belongs to the replacing package only.
        let list = |name: &str| f.read(&format!("var/lib/dpkg/info/{name}.list"));
        assert!(
            list("new").lines().any(|l| l == "/etc/shared"),
            "{}",
            list("new")
        );
        assert!(
            !list("old").lines().any(|l| l == "/etc/shared"),
            "{}",
            list("old")
        );
    }
    // A Replaces whose version does not cover the other package allows nothing.
    let f = Fixture::new();
    let err = f
        .unpack(&[old.clone(), new("old (<< 1.0-1)")])
        .expect_err("the version is not replaced");
    assert!(
        matches!(&err, UnpackError::Overwrite { .. }),
        "{}",
        error_line(&err)
    );
}

#[test]
fn root_a_directory_keeps_the_metadata_of_the_first_package_shipping_it() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    f.unpack(&[
        pkg("first")
            .dir("./srv/", 0o750)
            .owned_by(0, 7)
            .mtime(1_000_000_000),
        pkg("second")
            .dir("./srv/", 0o700)
            .owned_by(0, 0)
            .mtime(1_100_000_000),
    ])
    .expect("unpack");
    let m = f.lmeta("srv");
    assert_eq!(m.permissions().mode() & 0o7777, 0o750);
    assert_eq!(m.gid(), 7);
    assert_eq!(m.mtime(), 1_000_000_000);
}

#[test]
fn root_a_directory_where_another_package_has_a_file_is_an_error_naming_both() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let err = f
        .unpack(&[
            pkg("filer")
                .dir("./opt/", 0o755)
                .file("./opt/thing", 0o644, b"file"),
            pkg("dirrer")
                .dir("./opt/", 0o755)
                .dir("./opt/thing/", 0o755),
        ])
        .expect_err("file vs directory");
    let line = error_line(&err);
    assert!(line.contains("filer") && line.contains("dirrer"), "{line}");
    assert!(line.contains("opt/thing"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// dpkg's database

#[test]
fn root_status_list_md5sums_conffiles_and_scripts_are_written() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let unpacked = f
        .unpack(&[
            pkg("zeta")
                .field("Essential", "yes")
                .field("Depends", "alpha")
                .control_member("postinst", 0o755, b"#!/bin/sh\nexit 0\n")
                .control_member("preinst", 0o755, b"#!/bin/sh\nexit 0\n")
                .control_member("conffiles", 0o644, b"/etc/zeta.conf\n")
                .control_member(
                    "md5sums",
                    0o644,
                    b"0123456789abcdef0123456789abcdef  usr/bin/zeta\n",
                )
                .control_member("triggers", 0o644, b"interest-noawait /usr/lib/zeta\n")
                .dir("./", 0o755)
                .dir("./etc/", 0o755)
                .file("./etc/zeta.conf", 0o644, b"conf")
                .dir("./usr/", 0o755)
                .dir("./usr/bin/", 0o755)
                .file("./usr/bin/zeta", 0o755, b"zeta"),
            pkg("alpha").dir("./usr/", 0o755),
        ])
        .expect("unpack");

    let status = f.read("var/lib/dpkg/status");
    let zeta_at = status.find("Package: zeta").expect("zeta stanza");
    assert!(
        status.find("Package: alpha").expect("alpha stanza") < zeta_at,
        "sorted by name"
    );
    let zeta = &status[zeta_at..];
    assert!(
        zeta.starts_with(&format!(
            "Package: zeta\nStatus: install ok unpacked\nVersion: 1.0-1\nArchitecture: {}\n",
            crate::support::native_arch()
        )),
        "{zeta}"
    );
    assert!(zeta.contains("Essential: yes\nDepends: alpha\nConffiles:\n /etc/zeta.conf 3a8e4c06e471595f6eb262bb9b5582d9\nDescription: test package\n"), "{zeta}");

    assert_eq!(
        f.read("var/lib/dpkg/info/zeta.list"),
        "/.\n/etc\n/etc/zeta.conf\n/usr\n/usr/bin\n/usr/bin/zeta\n"
    );
    assert_eq!(
        f.read("var/lib/dpkg/info/zeta.md5sums"),
        "0123456789abcdef0123456789abcdef  usr/bin/zeta\n",
        "the package's own md5sums are kept as shipped"
    );
    assert_eq!(
        f.read("var/lib/dpkg/info/zeta.conffiles"),
        "/etc/zeta.conf\n"
    );
    assert_eq!(
        f.read("var/lib/dpkg/info/zeta.triggers"),
        "interest-noawait /usr/lib/zeta\n"
    );
    for script in ["postinst", "preinst"] {
        let m = f.lmeta(&format!("var/lib/dpkg/info/zeta.{script}"));
        assert_eq!(m.permissions().mode() & 0o7777, 0o755, "{script}");
    }
    assert!(!f.path("var/lib/dpkg/info/zeta.control").exists());
    assert_eq!(f.read("var/lib/dpkg/available"), "");
    assert_eq!(f.read("var/lib/dpkg/diversions"), "");
    assert!(
        !f.path("var/lib/dpkg/arch").exists(),
        "dpkg knows its native architecture; debootstrap writes no arch file"
    );
    assert_eq!(
        f.read("var/lib/dpkg/info/format"),
        "1\n",
        "the multiarch layout"
    );
    for dir in ["info", "updates", "triggers", "alternatives", "parts"] {
        assert!(f.lmeta(&format!("var/lib/dpkg/{dir}")).is_dir(), "{dir}");
    }
    assert!(!f.path("var/lib/dpkg/statoverride").exists());

    let names: Vec<&str> = unpacked.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["alpha", "zeta"]);
    let zeta = &unpacked.packages[1];
    assert!(zeta.essential);
    assert_eq!(zeta.priority.as_deref(), Some("optional"));
    assert_eq!(zeta.scripts, ["postinst", "preinst"]);
    assert_eq!(zeta.db_name(), "zeta");
}

#[test]
fn root_md5sums_are_computed_when_the_package_ships_none() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    f.unpack(&[pkg("nosums")
        .dir("./usr/", 0o755)
        .dir("./usr/share/", 0o755)
        .file("./usr/share/hello", 0o644, b"hello\n")
        .hardlink("./usr/share/hello2", "./usr/share/hello")
        .symlink("./usr/share/hello3", "hello")])
        .expect("unpack");
    assert_eq!(
        f.read("var/lib/dpkg/info/nosums.md5sums"),
        "b1946ac92492d2347c6235b4d2611184  usr/share/hello\n\
         b1946ac92492d2347c6235b4d2611184  usr/share/hello2\n"
    );
}

#[test]
fn root_multi_arch_same_packages_are_named_with_their_arch() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let unpacked = f
        .unpack(&[pkg("libz1")
            .field("Multi-Arch", "same")
            .control_member("shlibs", 0o644, b"libz 1 libz1\n")
            .dir("./usr/", 0o755)])
        .expect("unpack");
    let arch = crate::support::native_arch();
    assert_eq!(unpacked.packages[0].db_name(), format!("libz1:{arch}"));
    assert!(f
        .path(&format!("var/lib/dpkg/info/libz1:{arch}.list"))
        .exists());
    assert_eq!(
        f.read(&format!("var/lib/dpkg/info/libz1:{arch}.shlibs")),
        "libz 1 libz1\n"
    );
    assert!(!f.path("var/lib/dpkg/info/libz1.list").exists());
    assert!(f
        .read("var/lib/dpkg/status")
        .contains("Package: libz1\nStatus: install ok unpacked\n"));
}

#[test]
fn root_the_reporter_counts_every_package() {
    if !have_root() {
        return;
    }
    #[derive(Default)]
    struct Count {
        total: AtomicU64,
        done: AtomicU64,
        finished: AtomicU64,
    }
    impl Reporter for Count {
        fn stage(&self, _: Stage) {}
        fn start(&self, c: Counter, total: u64) {
            assert_eq!(c, Counter::Unpacked);
            self.total.store(total, Ordering::SeqCst);
        }
        fn advance(&self, _: Counter, n: u64) {
            self.done.fetch_add(n, Ordering::SeqCst);
        }
        fn finish(&self, _: Counter) {
            self.finished.fetch_add(1, Ordering::SeqCst);
        }
    }
    let f = Fixture::new();
    let debs = f.write(&[
        pkg("a").dir("./a/", 0o755),
        pkg("b").dir("./b/", 0o755),
        pkg("c"),
    ]);
    let count = Count::default();
    unpack(
        &UnpackRequest {
            root: &f.root,
            debs: &debs,
            arch: &crate::support::native_arch(),
        },
        &count,
    )
    .expect("unpack");
    assert_eq!(count.total.load(Ordering::SeqCst), 3);
    assert_eq!(count.done.load(Ordering::SeqCst), 3);
    assert_eq!(count.finished.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// Hostile and malformed archives: a clean error naming the package, nothing outside the root

#[test]
fn root_hostile_dot_dot_names_are_refused() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let err = f
        .unpack(&[pkg("evil").file("../outside/pwned", 0o644, b"x")])
        .expect_err("`..` refused");
    let line = error_line(&err);
    assert!(
        line.contains("evil") && line.contains("../outside/pwned"),
        "{line}"
    );
    f.assert_outside_untouched();
    assert!(
        !f.root.exists(),
        "the root this unpack created is removed on failure"
    );
}

#[test]
fn root_hostile_absolute_names_land_inside_the_root() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let name = format!("{}/pwned", f.outside.display());
    f.unpack(&[pkg("abs").file(&name, 0o644, b"inside")])
        .expect("absolute names are taken relative to the root");
    let inside = f.root.join(name.trim_start_matches('/'));
    assert_eq!(fs_err::read_to_string(inside).expect("inside"), "inside");
    f.assert_outside_untouched();
}

#[test]
fn root_hostile_symlink_then_file_through_it_in_one_package() {
    if !have_root() {
        return;
    }
    // Followed on the host, `../` climbs to `/` and the rest names `outside/` itself, so an
    // unconfined unpack would write `pwned` where the check looks.
    let relative: fn(&Fixture) -> String =
        |f| format!("{}{}", "../".repeat(16), f.outside.display());
    for target in [f_outside_abs as fn(&Fixture) -> String, relative] {
        let f = Fixture::new();
        let result = f.unpack(&[pkg("evil").symlink("./escape", &target(&f)).file(
            "./escape/pwned",
            0o644,
            b"x",
        )]);
        // First where an escape would land, so an unpack that follows the link shows it here.
        f.assert_outside_untouched();
        let err = result.expect_err("the symlink resolves inside the root, where nothing is");
        assert!(error_line(&err).contains("evil"), "{}", error_line(&err));
    }
}

fn f_outside_abs(f: &Fixture) -> String {
    f.outside.display().to_string()
}

#[test]
fn root_hostile_symlink_then_file_through_it_across_two_packages() {
    if !have_root() {
        return;
    }
    for reversed in [false, true] {
        let f = Fixture::new();
        let planter = pkg("planter").symlink("./escape", &f_outside_abs(&f));
        let writer = pkg("writer")
            .dir("./escape/", 0o755)
            .file("./escape/pwned", 0o644, b"x")
            .file("./escape/sentinel", 0o644, b"overwritten");
        let mut builders = vec![planter, writer];
        if reversed {
            builders.reverse();
        }
        let result = f.unpack(&builders);
        // Whichever ran first, the other conflicts with it or resolves inside the root.
        if let Err(e) = &result {
            let line = error_line(e);
            assert!(
                line.contains("planter") || line.contains("writer"),
                "{line}"
            );
        }
        f.assert_outside_untouched();
    }
}

#[test]
fn root_hostile_symlink_planted_earlier_and_written_through_later() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let debs = f.write(&[
        pkg("planter").symlink("./escape", &f_outside_abs(&f)),
        pkg("writer")
            .dir("./escape/", 0o755)
            .file("./escape/sentinel", 0o644, b"overwritten"),
    ]);
    f.unpack_debs(&debs[..1])
        .expect("a dangling symlink is fine by itself");
    let err = unpack(
        &UnpackRequest {
            root: &f.root,
            debs: &debs[1..],
            arch: &crate::support::native_arch(),
        },
        &Silent,
    )
    .expect_err("writing through it is not");
    assert!(error_line(&err).contains("writer"), "{}", error_line(&err));
    f.assert_outside_untouched();
}

#[test]
fn root_hostile_hard_links_to_outside_are_refused() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let abs = format!("{}/sentinel", f.outside.display());
    let err = f
        .unpack(&[pkg("linker").hardlink("./stolen", &abs)])
        .expect_err("the target resolves inside the root, where nothing is");
    assert!(error_line(&err).contains("linker"), "{}", error_line(&err));
    f.assert_outside_untouched();

    let f = Fixture::new();
    let err = f
        .unpack(&[pkg("linker").hardlink("./stolen", "../outside/sentinel")])
        .expect_err("`..` in a link target is refused");
    assert!(error_line(&err).contains("`..`"), "{}", error_line(&err));
    f.assert_outside_untouched();

    // Through a symlink planted in the same package.
    let f = Fixture::new();
    let err = f
        .unpack(&[pkg("linker")
            .symlink("./out", &f_outside_abs(&f))
            .hardlink("./stolen", "./out/sentinel")])
        .expect_err("the symlink resolves inside the root");
    assert!(error_line(&err).contains("linker"), "{}", error_line(&err));
    f.assert_outside_untouched();
}

#[test]
fn root_truncated_ar_is_an_error() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let builder = pkg("cut")
        .dir("./usr/", 0o755)
        .file("./usr/big", 0o644, &[7u8; 100_000]);
    let bytes = builder.build();
    for cut in [4, 70, bytes.len() / 2, bytes.len() - 10] {
        let deb = builder.write_bytes(&f.debs, &bytes[..cut]);
        let err = f.unpack_debs(&[deb]).expect_err("truncated");
        assert!(
            error_line(&err).starts_with("cut: "),
            "{}",
            error_line(&err)
        );
        f.assert_outside_untouched();
    }
}

#[test]
fn root_a_bad_tar_header_is_an_error() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let err = f
        .unpack(&[pkg("bad")
            .dir("./usr/", 0o755)
            .tamper_data_tar(|tar| tar[148] ^= 0x01)])
        .expect_err("checksum mismatch");
    let line = error_line(&err);
    assert!(line.contains("bad") && line.contains("data.tar"), "{line}");
    f.assert_outside_untouched();
}

#[test]
fn root_an_unknown_compression_is_an_error_naming_the_member() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let err = f
        .unpack(&[pkg("bz").data_compression(Compression::Other(".bz2"))])
        .expect_err("bzip2 is not read");
    let line = error_line(&err);
    assert!(line.contains("bz: member data.tar.bz2"), "{line}");
}

#[test]
fn root_a_wrong_format_version_is_refused() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let err = f
        .unpack(&[pkg("future").debian_binary("3.0\n")])
        .expect_err("format 3.0");
    assert!(error_line(&err).contains("\"3.0\""), "{}", error_line(&err));
}

#[test]
fn root_the_deb_must_be_the_package_the_index_promised() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let real = pkg("real");
    let deb = real.write_as(&f.debs, &real.build(), |p| p.version = "2.0-1".to_owned());
    let err = f.unpack_debs(&[deb]).expect_err("version mismatch");
    assert!(
        error_line(&err).contains("index promised real 2.0-1"),
        "{}",
        error_line(&err)
    );
}

// ---------------------------------------------------------------------------------------------
// The real archive

/// Runs a command, returning its stdout; panics with its stderr if it fails.
fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The trixie minbase set, downloaded with debootstrap (a host tool here only to get the
/// .debs), unpacked; dpkg in the root must list every package and find every file intact.
#[test]
fn real_archive_trixie_minbase_unpacks_and_dpkg_verifies_as_root() {
    let mirror = debstrap_onion::config::discover_mirror(None, None, Path::new("/etc/apt"));
    let debootstrap = Path::new("/usr/sbin/debootstrap").exists();
    let missing = match (&mirror, debootstrap, rustix::process::geteuid().is_root()) {
        (Err(e), _, _) => Some(format!("a Debian mirror in the host's apt sources ({e})")),
        (_, false, _) => Some("debootstrap (to download the .debs)".to_owned()),
        (_, _, false) => Some("root".to_owned()),
        _ => None,
    };
    if let Some(what) = missing {
        support::host::missing(&what);
        return;
    }
    let mirror = mirror.expect("checked above");
    let tmp = tempfile::tempdir().expect("temp dir");
    let download = tmp.path().join("download");
    run(std::process::Command::new("debootstrap")
        .args(["--download-only", "--variant=minbase", "trixie"])
        .arg(&download)
        .arg(&mirror));
    let archives = download.join("var/cache/apt/archives");
    let mut debs: Vec<CachedDeb> = fs_err::read_dir(&archives)
        .expect("downloaded .debs")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .map(|path| {
            let stem = path
                .file_stem()
                .expect("name")
                .to_string_lossy()
                .replace("%3a", ":");
            let mut parts = stem.splitn(3, '_');
            let name = parts.next().expect("name").to_owned();
            let version = parts.next().expect("version").to_owned();
            let arch = parts.next().expect("arch").to_owned();
            let data = fs_err::read(&path).expect("read .deb");
            let mut package = DebBuilder::new(&name, &version, &arch).package(data.len() as u64);
            package.priority = None;
            package.sha256 = Sha256Digest::of(&data);
            CachedDeb::verify_local(package, &path).expect("the .deb matches its own hash")
        })
        .collect();
    debs.sort_by(|a, b| a.package().name.cmp(&b.package().name));
    assert!(debs.len() > 50, "a minbase set has dozens of packages");

    let root = tmp.path().join("root");
    let started = Instant::now();
    let unpacked = unpack(
        &UnpackRequest {
            root: &root,
            debs: &debs,
            arch: &crate::support::native_arch(),
        },
        &Silent,
    )
    .unwrap_or_else(|e| panic!("{}", error_line(&e)));
    let ours = started.elapsed();
    assert_eq!(unpacked.packages.len(), debs.len());

    let listed = run(std::process::Command::new("chroot").arg(&root).args([
        "dpkg-query",
        "-W",
        "-f",
        "${Package}\n",
    ]));
    let listed: BTreeSet<&str> = listed.lines().collect();
    let expected: BTreeSet<&str> = debs.iter().map(|d| d.package().name.as_str()).collect();
    assert_eq!(listed, expected);
    let verify = run(std::process::Command::new("chroot")
        .arg(&root)
        .args(["dpkg", "--verify"]));
    assert_eq!(verify, "", "dpkg --verify found differences");

    // The same .debs with dpkg-deb and tar, one after another, for the comparison.
    if Path::new("/usr/bin/dpkg-deb").exists() {
        let plain = tmp.path().join("plain");
        fs_err::create_dir(&plain).expect("plain dir");
        let started = Instant::now();
        for deb in &debs {
            run(std::process::Command::new("sh").arg("-c").arg(format!(
                "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}'",
                deb.path().display(),
                plain.display()
            )));
        }
        eprintln!(
            "unpack of {} .debs: {:.2}s; dpkg-deb --fsys-tarfile | tar -x: {:.2}s",
            debs.len(),
            ours.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The bytes unpacked are the bytes verified, and no package grows without bound

#[test]
fn root_a_deb_renamed_over_after_its_check_is_never_read() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let plain = |contents: &[u8]| {
        pkg("swapped")
            .compression(Compression::None)
            .file("./etc/swapped", 0o644, contents)
    };
    let deb = plain(b"verified").write(&f.debs);
    // What someone who can write the cache directory does between the check and the unpack:
    // the name now leads to their file, but the build holds the descriptor it verified.
    let staged = f.debs.join("staged");
    fs_err::write(&staged, plain(b"attacker").build()).expect("write the swap");
    fs_err::rename(&staged, deb.path()).expect("swap");
    f.unpack_debs(std::slice::from_ref(&deb))
        .expect("the verified bytes unpack");
    assert_eq!(
        fs_err::read(f.root.join("etc/swapped")).expect("unpacked file"),
        b"verified"
    );
}

#[test]
fn root_a_deb_rewritten_in_place_after_its_check_is_refused_and_nothing_is_left() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let plain = |contents: &[u8]| {
        pkg("swapped")
            .compression(Compression::None)
            .file("./etc/swapped", 0o644, contents)
    };
    let deb = plain(b"verified").write(&f.debs);
    let evil = plain(b"attacker").build();
    assert_eq!(
        evil.len() as u64,
        deb.package().size,
        "the same size, so only the hash can tell"
    );
    // The same file, rewritten through its name: the descriptor sees the new bytes, the hash
    // taken while unpacking does not match.
    fs_err::write(deb.path(), &evil).expect("rewrite in place");
    let err = f
        .unpack_debs(std::slice::from_ref(&deb))
        .expect_err("refused");
    let line = error_line(&err);
    assert!(
        line.contains("swapped") && line.contains("changed after it was verified"),
        "{line}"
    );
    assert!(line.contains(&deb.path().display().to_string()), "{line}");
    assert!(!f.root.exists(), "the partial root was left");
}

#[test]
fn root_control_members_past_the_total_cap_are_refused() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    // Each member is under the per-file cap; together they are past the total one.
    let part = vec![b'#'; (debstrap_onion::unpack::MAX_CONTROL_TOTAL / 3 + 1) as usize];
    let err = f
        .unpack(&[pkg("fat")
            .compression(Compression::Gzip)
            .control_member("a", 0o644, &part)
            .control_member("b", 0o644, &part)
            .control_member("c", 0o644, &part)])
        .expect_err("refused");
    let line = error_line(&err);
    assert!(
        line.contains("fat") && line.contains("control members together"),
        "{line}"
    );
    assert!(!f.root.exists());
}

#[test]
fn root_a_package_of_more_files_than_free_inodes_stops_before_they_run_out() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    // 3000 files of 4 KiB: about 14 MB of tar, far within the bytes, past the 2048 inodes.
    let mut many = pkg("many").compression(Compression::Gzip);
    for i in 0..3000 {
        many = many.file(&format!("./usr/share/f{i:04}"), 0o644, &[b'x'; 4096]);
    }
    let deb = many.write(&f.debs);
    let small = f.tmp.path().join("small");
    fs_err::create_dir(&small).expect("mount point");
    let root = small.join("root");
    // As above: a private mount namespace, so the kernel removes the file system.
    let (result, left) = std::thread::spawn(move || {
        crate::support::sys::enter_private_mount_namespace();
        crate::support::sys::mount_tmpfs(
            &small,
            crate::support::sys::MountFlags::empty(),
            Some("size=64m,nr_inodes=2048"),
        )
        .expect("tmpfs");
        let result = unpack(
            &UnpackRequest {
                root: &root,
                debs: &[deb],
                arch: &crate::support::native_arch(),
            },
            &Silent,
        );
        (result.map(drop), root.exists())
    })
    .join()
    .expect("no panic");
    let err = result.expect_err("refused");
    let line = error_line(&err);
    assert!(
        line.contains("many") && line.contains("inodes free"),
        "{line}"
    );
    assert!(!left, "the partial root was left");
}

#[test]
fn root_a_package_larger_than_the_free_space_stops_before_the_disk_is_full() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let huge = pkg("huge").compression(Compression::Gzip).file(
        "./usr/share/huge",
        0o644,
        &vec![0u8; 96 << 20],
    );
    let deb = huge.write(&f.debs);
    let small = f.tmp.path().join("small");
    fs_err::create_dir(&small).expect("mount point");
    let root = small.join("root");
    // The small file system lives in this thread's own mount namespace, so the kernel removes
    // it whatever happens to the test; the unpack reaches it through the root's descriptor.
    let (result, left, free) = std::thread::spawn(move || {
        crate::support::sys::enter_private_mount_namespace();
        crate::support::sys::mount_tmpfs(
            &small,
            crate::support::sys::MountFlags::empty(),
            Some("size=48m"),
        )
        .expect("tmpfs");
        let result = unpack(
            &UnpackRequest {
                root: &root,
                debs: &[deb],
                arch: &crate::support::native_arch(),
            },
            &Silent,
        );
        let stat = rustix::fs::statvfs(&small).expect("statvfs");
        let free = stat.f_bavail * stat.f_frsize;
        (result.map(drop), root.exists(), free)
    })
    .join()
    .expect("no panic");
    let err = result.expect_err("refused");
    let line = error_line(&err);
    assert!(
        line.contains("huge") && line.contains("bytes free"),
        "{line}"
    );
    assert!(!left, "the partial root was left");
    assert!(
        free > 40 << 20,
        "the partial files were not removed: {free} bytes free"
    );
}

// ---------------------------------------------------------------------------------------------
// Headers the tar and ar crates would read whole into memory are refused first

/// Puts a tar entry of type `kind` and `size` bytes (filled with 'a') before the archive.
fn prepend_tar_extension(tar: &mut Vec<u8>, kind: tar::EntryType, size: u64) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_cksum();
    let mut front = h.as_bytes().to_vec();
    front.resize(512 + (size as usize).next_multiple_of(512), b'a');
    front.extend_from_slice(tar);
    *tar = front;
}

#[test]
fn root_a_gnu_long_name_past_one_mib_is_refused_naming_package_and_member() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let err = f
        .unpack(&[pkg("longname")
            .file("./etc/x", 0o644, b"x")
            .tamper_data_tar(|tar| {
                prepend_tar_extension(tar, tar::EntryType::GNULongName, (1 << 20) + 1)
            })])
        .expect_err("refused");
    let line = error_line(&err);
    assert!(
        line.contains("longname: member data.tar") && line.contains("'L' entry of 1048577 bytes"),
        "{line}"
    );
    f.assert_outside_untouched();
}

#[test]
fn root_a_pax_header_past_one_mib_is_refused_but_one_within_is_read() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let err = f
        .unpack(&[pkg("pax")
            .file("./etc/x", 0o644, b"x")
            .tamper_data_tar(|tar| {
                prepend_tar_extension(tar, tar::EntryType::XGlobalHeader, 2 << 20)
            })])
        .expect_err("refused");
    let line = error_line(&err);
    assert!(
        line.contains("pax: member data.tar") && line.contains("'g' entry of 2097152 bytes"),
        "{line}"
    );

    // A pax header whose size record makes the next entry longer than its header says: the
    // walk follows it, so the file's data is not taken for a header.
    let f = Fixture::new();
    f.unpack(&[pkg("paxsize").tamper_data_tar(|tar| {
        let mut data = vec![0u8; 4096];
        // Looks like a huge long-name header, but is file data.
        data[156] = b'L';
        data[124..135].copy_from_slice(b"77777777777");
        let record = format!("{} size=4096\n", "size=4096\n".len() + 3);
        let mut pax = tar::Header::new_ustar();
        pax.set_entry_type(tar::EntryType::XHeader);
        pax.set_size(record.len() as u64);
        pax.set_cksum();
        let mut file = tar::Header::new_gnu();
        file.set_entry_type(tar::EntryType::Regular);
        file.set_path("./big").unwrap();
        file.set_mode(0o644);
        file.set_uid(0);
        file.set_gid(0);
        file.set_mtime(0);
        file.set_size(0);
        file.set_cksum();
        let mut out = pax.as_bytes().to_vec();
        out.extend_from_slice(record.as_bytes());
        out.resize(1024, 0);
        out.extend_from_slice(file.as_bytes());
        out.extend_from_slice(&data);
        out.extend_from_slice(tar);
        *tar = out;
    })])
    .expect("a pax size within the limit is followed");
    assert_eq!(
        fs_err::metadata(f.root.join("big"))
            .expect("unpacked")
            .len(),
        4096
    );
}

/// `bytes` (a .deb) with an ar member `name` of `size` bytes inserted after debian-binary.
fn insert_ar_member(bytes: &[u8], name: &str, size: usize) -> Vec<u8> {
    let header = format!(
        "{name:<16}{:<12}{:<6}{:<6}{:<8}{size:<10}`\n",
        0, 0, 0, 100644
    );
    assert_eq!(header.len(), 60);
    // "!<arch>\n", debian-binary's header and its 4 bytes.
    let at = 8 + 60 + 4;
    assert_eq!(&bytes[at - 4..at], b"2.0\n");
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend(std::iter::repeat_n(b'_', size + size % 2));
    out.extend_from_slice(&bytes[at..]);
    out
}

#[test]
fn root_ar_name_tables_and_bsd_long_names_are_refused_naming_package_and_member() {
    if !have_root() {
        return;
    }
    for (name, size) in [("//", 20), ("#1/20", 40)] {
        let f = Fixture::new();
        let builder = pkg("arnames").file("./etc/x", 0o644, b"x");
        let deb = builder.write_bytes(&f.debs, &insert_ar_member(&builder.build(), name, size));
        let err = f
            .unpack_debs(std::slice::from_ref(&deb))
            .expect_err("refused");
        let line = error_line(&err);
        assert!(
            line.contains("arnames") && line.contains(&format!("member name {name:?}")),
            "{line}"
        );
        assert!(!f.root.exists(), "the partial root was left");
    }
}

#[test]
fn root_a_deb_stopped_by_a_limit_is_not_read_to_its_end() {
    if !have_root() {
        return;
    }
    let f = Fixture::new();
    let builder = pkg("stopped")
        .file("./etc/x", 0o644, b"x")
        .tamper_data_tar(|tar| prepend_tar_extension(tar, tar::EntryType::GNULongName, 2 << 20));
    let deb = builder.write(&f.debs);
    // The last byte changes after the check, far past where the limit stops reading: only a
    // pass that hashes the whole file would see it.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(deb.path())
        .expect("open the cached .deb");
    std::os::unix::fs::FileExt::write_at(&file, b"!", deb.package().size - 1)
        .expect("change the last byte");
    let err = f
        .unpack_debs(std::slice::from_ref(&deb))
        .expect_err("refused");
    assert!(
        matches!(err, UnpackError::Limit { .. }),
        "{}",
        error_line(&err)
    );
    assert!(!f.root.exists(), "the partial root was left");
}

#[test]
fn root_one_multi_arch_same_package_for_two_architectures_shares_its_common_files() {
    if !have_root() {
        return;
    }
    let native = crate::support::native_arch();
    let foreign = if native == "i386" { "amd64" } else { "i386" };
    let build = |arch: &str, multi_arch: &str| {
        DebBuilder::new("libz1", "1.0-1", arch)
            .field("Multi-Arch", multi_arch)
            .dir("./usr/", 0o755)
            .dir("./usr/share/", 0o755)
            .dir("./usr/share/doc/", 0o755)
            .dir("./usr/share/doc/libz1/", 0o755)
            .file("./usr/share/doc/libz1/copyright", 0o644, b"same bytes")
            .dir("./usr/lib/", 0o755)
            .dir(&format!("./usr/lib/{arch}/"), 0o755)
            .file(
                &format!("./usr/lib/{arch}/libz.so.1"),
                0o644,
                arch.as_bytes(),
            )
    };
    let f = Fixture::new();
    f.unpack(&[build(&native, "same"), build(foreign, "same")])
        .expect("Multi-Arch: same instances share a path");
    assert_eq!(f.read("usr/share/doc/libz1/copyright"), "same bytes");
    for arch in [native.as_str(), foreign] {
        let list = f.read(&format!("var/lib/dpkg/info/libz1:{arch}.list"));
        assert!(
            list.lines().any(|l| l == "/usr/share/doc/libz1/copyright"),
            "libz1:{arch} lists the shared file:\n{list}"
        );
        assert_eq!(f.read(&format!("usr/lib/{arch}/libz.so.1")), arch);
    }

    // Without Multi-Arch: same the two are different claims on one path, refused as dpkg does.
    let f = Fixture::new();
    let err = f
        .unpack(&[build(&native, "foreign"), build(foreign, "foreign")])
        .expect_err("not Multi-Arch: same");
    assert!(matches!(&err, UnpackError::Overwrite { .. }), "{err}");
}

/// dpkg keeps a path that two architectures' instances of a Multi-Arch: same package both ship
/// only when the copies are the same: identical files, links and hard links are shared; a
/// file with other bytes (of the same size), a link to another target or another kind of
/// entry is refused whichever instance comes first, naming both instances and the path, and
/// no root is left.
#[test]
fn root_multi_arch_same_instances_must_ship_identical_shared_files() {
    if !have_root() {
        return;
    }
    let native = crate::support::native_arch();
    let foreign = if native == "i386" { "amd64" } else { "i386" };
    let build = |arch: &str, edit: &dyn Fn(DebBuilder) -> DebBuilder| {
        let deb = DebBuilder::new("libz1", "1.0-1", arch)
            .field("Multi-Arch", "same")
            .dir("./usr/", 0o755)
            .dir("./usr/share/", 0o755)
            .dir("./usr/share/doc/", 0o755)
            .dir("./usr/share/doc/libz1/", 0o755)
            .dir("./usr/lib/", 0o755)
            .dir(&format!("./usr/lib/{arch}/"), 0o755)
            .file(
                &format!("./usr/lib/{arch}/libz.so.1"),
                0o644,
                arch.as_bytes(),
            );
        edit(deb)
    };
    let identical = |deb: DebBuilder| {
        deb.file("./usr/share/doc/libz1/copyright", 0o644, b"same bytes")
            .hardlink(
                "./usr/share/doc/libz1/copyright.hard",
                "./usr/share/doc/libz1/copyright",
            )
            .symlink("./usr/share/doc/libz1/README", "copyright")
    };
    let f = Fixture::new();
    f.unpack(&[build(&native, &identical), build(foreign, &identical)])
        .expect("identical shared files are accepted");
    assert_eq!(f.read("usr/share/doc/libz1/copyright"), "same bytes");
    assert_eq!(f.read("usr/share/doc/libz1/copyright.hard"), "same bytes");
    assert_eq!(
        fs_err::read_link(f.path("usr/share/doc/libz1/README")).expect("readlink"),
        Path::new("copyright")
    );
    for arch in [native.as_str(), foreign] {
        let list = f.read(&format!("var/lib/dpkg/info/libz1:{arch}.list"));
        for shared in ["copyright", "copyright.hard", "README"] {
            assert!(
                list.lines()
                    .any(|l| l == format!("/usr/share/doc/libz1/{shared}")),
                "libz1:{arch} lists {shared}:\n{list}"
            );
        }
    }

    type Edit = fn(DebBuilder) -> DebBuilder;
    let hostile: [(&str, Edit, Edit, &str, &str); 4] = [
        (
            "other bytes, same size",
            |d| d.file("./usr/share/doc/libz1/copyright", 0o644, b"same bytes"),
            |d| d.file("./usr/share/doc/libz1/copyright", 0o644, b"SAME BYTES"),
            "/usr/share/doc/libz1/copyright",
            "different contents",
        ),
        (
            "another link target",
            |d| d.symlink("./usr/share/doc/libz1/README", "copyright"),
            |d| d.symlink("./usr/share/doc/libz1/README", "/etc/shadow"),
            "/usr/share/doc/libz1/README",
            "different link targets",
        ),
        (
            "a link where the other has a file",
            |d| d.file("./usr/share/doc/libz1/README", 0o644, b"text"),
            |d| d.symlink("./usr/share/doc/libz1/README", "/etc/shadow"),
            "/usr/share/doc/libz1/README",
            "a file in one, a symlink in the other",
        ),
        (
            "a hard link to another file",
            |d| {
                d.file("./usr/share/doc/libz1/a", 0o644, b"a")
                    .file("./usr/share/doc/libz1/b", 0o644, b"b")
                    .hardlink("./usr/share/doc/libz1/c", "./usr/share/doc/libz1/a")
            },
            |d| {
                d.file("./usr/share/doc/libz1/a", 0o644, b"a")
                    .file("./usr/share/doc/libz1/b", 0o644, b"b")
                    .hardlink("./usr/share/doc/libz1/c", "./usr/share/doc/libz1/b")
            },
            "/usr/share/doc/libz1/c",
            "different link targets",
        ),
    ];
    for (case, first, second, path, difference) in hostile {
        for (a, b) in [(native.as_str(), foreign), (foreign, native.as_str())] {
            let f = Fixture::new();
            let err = f
                .unpack(&[build(a, &first), build(b, &second)])
                .expect_err(case);
            let line = error_line(&err);
            assert!(
                matches!(err, UnpackError::SharedDiffers { .. })
                    && line.starts_with(&format!(
                        "libz1:{a} and libz1:{b} (Multi-Arch: same) both ship {path}, with \
                         {difference}: dpkg refuses"
                    )),
                "{case}, {a} first: {line}"
            );
            assert!(!f.root.exists(), "{case}: the partial root was left");
            assert_eq!(
                fs_err::read_to_string(f.outside.join("sentinel")).expect("sentinel"),
                "untouched"
            );
        }
    }
}
