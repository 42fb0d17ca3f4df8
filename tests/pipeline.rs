//! The whole pipeline on an offline fixture repository of real (tiny) .debs: a hostile package
//! stops the build with one error naming it, and nothing is left at TARGET, beside it or
//! outside it.

mod support;

use debstrap_onion::config::{BuildConfig, Output, StopAfter, Variant};
use debstrap_onion::Silent;
use support::deb::DebBuilder;
use support::repo::{key_path, FakeDeb, RepoSpec, Served};

fn fake(deb: &DebBuilder, name: &str) -> FakeDeb {
    FakeDeb::new(name, "1.0", &[("Priority", "required")], deb.build())
}

#[test]
fn root_a_package_escaping_through_its_own_symlink_fails_the_build_and_leaves_nothing() {
    if !support::host::require_root() {
        return;
    }
    // The escape aims at the very directory the test inspects afterwards: followed on the
    // host, `../` climbs to `/` and the rest is `outside`'s absolute path, so an unconfined
    // build would write `planted` there; resolved inside the root it leads nowhere.
    let scratch = tempfile::tempdir().expect("temp dir");
    let outside = scratch.path().join("outside");
    fs_err::create_dir(&outside).expect("outside dir");
    let escape = format!("{}{}", "../".repeat(16), outside.display());
    let good = DebBuilder::new("good", "1.0", &crate::support::native_arch()).file(
        "./usr/share/good/file",
        0o644,
        b"fine",
    );
    let evil = DebBuilder::new("evil", "1.0", &crate::support::native_arch())
        .symlink("./usr/share/evil-link", &escape)
        .file("./usr/share/evil-link/planted", 0o644, b"escaped");
    let apt = DebBuilder::new("apt", "1.0", &crate::support::native_arch()).file(
        "./usr/bin/apt",
        0o755,
        b"#!/bin/sh\n",
    );
    let served = Served::start(
        &RepoSpec::fresh(),
        "test-archive.sec.asc",
        &[fake(&good, "good"), fake(&evil, "evil"), fake(&apt, "apt")],
    );
    let parent = served.dir.path().join("builds");
    fs_err::create_dir(&parent).expect("builds dir");
    let target = parent.join("target");

    let mut config = BuildConfig::new("fixture", served.server.url.clone());
    config.keyrings = vec![key_path("test-archive.pub.asc")];
    config.cache_dir = served.dir.path().join("cache");
    config.output = Output::Directory(target.clone());
    config.variant = Variant::Extract;
    config.include = vec!["good".into(), "evil".into(), "apt".into()];
    config.stop_after = StopAfter::Complete;
    config.publish_onion = false;
    config.arch = crate::support::native_arch();

    let result = debstrap_onion::build(&config, &Silent);
    // First where an escape would land, so a build that follows the link shows it here.
    let escaped: Vec<_> = fs_err::read_dir(&outside)
        .expect("outside dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        escaped.is_empty(),
        "the package wrote outside the root: {escaped:?}"
    );
    let err = result.expect_err("a hostile package fails the build");
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(" / ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    assert!(text.contains("evil"), "the error names the package: {text}");
    assert!(!target.exists(), "a failed build left TARGET");
    let beside: Vec<_> = fs_err::read_dir(&parent)
        .expect("builds dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        beside.is_empty(),
        "a failed build left {beside:?} beside TARGET"
    );
}

/// Records how many packages were unpacked, for a test to wait on.
#[derive(Default)]
struct UnpackCount {
    count: std::sync::Mutex<u64>,
    changed: std::sync::Condvar,
}

impl debstrap_onion::Reporter for UnpackCount {
    fn stage(&self, _: debstrap_onion::progress::Stage) {}
    fn start(&self, _: debstrap_onion::progress::Counter, _: u64) {}
    fn advance(&self, counter: debstrap_onion::progress::Counter, n: u64) {
        if counter == debstrap_onion::progress::Counter::Unpacked {
            *self.count.lock().expect("count lock") += n;
            self.changed.notify_all();
        }
    }
    fn finish(&self, _: debstrap_onion::progress::Counter) {}
}

#[test]
fn root_packages_unpack_while_another_download_is_still_held() {
    if !support::host::require_root() {
        return;
    }
    let big = DebBuilder::new("big", "1.0", &crate::support::native_arch()).file(
        "./usr/share/big",
        0o644,
        &[7u8; 200_000],
    );
    let small = DebBuilder::new("small", "1.0", &crate::support::native_arch()).file(
        "./usr/share/small",
        0o644,
        b"s",
    );
    let apt = DebBuilder::new("apt", "1.0", &crate::support::native_arch()).file(
        "./usr/bin/apt",
        0o755,
        b"#!/bin/sh\n",
    );
    let debs = [fake(&big, "big"), fake(&small, "small"), fake(&apt, "apt")];
    let served = Served::start(&RepoSpec::fresh(), "test-archive.sec.asc", &debs);
    let held = format!("/{}", debs[1].filename());
    served.server.fault(&held, support::server::Fault::Hold);

    let mut config = BuildConfig::new("fixture", served.server.url.clone());
    config.keyrings = vec![key_path("test-archive.pub.asc")];
    config.cache_dir = served.dir.path().join("cache");
    config.output = Output::Directory(served.dir.path().join("target"));
    config.variant = Variant::Extract;
    config.include = vec!["big".into(), "small".into(), "apt".into()];
    config.publish_onion = false;
    config.arch = crate::support::native_arch();

    let reporter = UnpackCount::default();
    std::thread::scope(|scope| {
        let build = scope.spawn(|| debstrap_onion::build(&config, &reporter));
        // While `small` is held by the server, the other packages must unpack.
        let count = reporter.count.lock().expect("count lock");
        let (count, timeout) = reporter
            .changed
            .wait_timeout_while(count, std::time::Duration::from_secs(60), |c| *c < 2)
            .expect("count lock");
        let unpacked_while_held = *count;
        drop(count);
        served.server.release(&held);
        build
            .join()
            .expect("no panic")
            .expect("the build succeeds once released");
        assert!(
            !timeout.timed_out() && unpacked_while_held >= 2,
            "only {unpacked_while_held} packages unpacked while one download was held"
        );
    });
    assert!(served.dir.path().join("target/usr/share/small").exists());
}

/// An architecture this host cannot run natively (for the binfmt_misc tests).
fn foreign_arch() -> &'static str {
    if support::native_arch() == "s390x" {
        "riscv64"
    } else {
        "s390x"
    }
}

/// A binfmt_misc listing owned by the test: enabled, with only a handler for programs that are
/// not ELF (as a host's `jar` one is), so no handler runs `foreign_arch()`.
fn binfmt_without_handler() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    fs_err::write(dir.path().join("status"), "enabled\n").expect("status");
    fs_err::write(dir.path().join("register"), "").expect("register");
    fs_err::write(
        dir.path().join("jar"),
        "enabled\ninterpreter /usr/bin/jexec\nflags: \noffset 0\nmagic 504b0304\n",
    )
    .expect("jar");
    dir
}

#[test]
fn a_foreign_architecture_without_an_interpreter_fails_before_any_download() {
    let served = Served::start(&RepoSpec::fresh(), "test-archive.sec.asc", &[]);
    let binfmt = binfmt_without_handler();
    let target = served.dir.path().join("root");
    let mut config = BuildConfig::new("fixture", served.server.url.clone());
    config.keyrings = vec![key_path("test-archive.pub.asc")];
    config.cache_dir = served.dir.path().join("cache");
    config.output = Output::Directory(target.clone());
    config.publish_onion = false;
    config.arch = foreign_arch().to_string();
    config.binfmt_dir = binfmt.path().to_path_buf();

    let err = debstrap_onion::build(&config, &Silent)
        .expect_err("no interpreter")
        .to_string();
    let qemu = if foreign_arch() == "s390x" {
        "qemu-s390x"
    } else {
        "qemu-riscv64"
    };
    assert!(
        err.contains("qemu-user-static")
            && err.contains(&format!("`update-binfmts --enable {qemu}`"))
            && err.contains(foreign_arch())
            && !err.contains('\n'),
        "{err}"
    );
    assert_eq!(
        served.server.requests(),
        Vec::<String>::new(),
        "nothing fetched"
    );
    assert!(!target.exists());

    // binfmt_misc not mounted: the error says how to mount it.
    let unmounted = tempfile::tempdir().expect("temp dir");
    config.binfmt_dir = unmounted.path().to_path_buf();
    let err = debstrap_onion::build(&config, &Silent)
        .expect_err("not mounted")
        .to_string();
    assert!(err.contains("mount -t binfmt_misc binfmt_misc"), "{err}");
    assert_eq!(
        served.server.requests(),
        Vec::<String>::new(),
        "nothing fetched"
    );
}

#[test]
fn an_architecture_the_archive_lacks_is_refused_with_the_archives_list() {
    let served = Served::start(&RepoSpec::fresh(), "test-archive.sec.asc", &[]);
    let mut config = BuildConfig::new("fixture", served.server.url.clone());
    config.keyrings = vec![key_path("test-archive.pub.asc")];
    config.cache_dir = served.dir.path().join("cache");
    config.stop_after = StopAfter::PrintPackages;
    config.publish_onion = false;
    config.arch = foreign_arch().to_string();

    let err = debstrap_onion::build(&config, &Silent)
        .expect_err("not in the archive")
        .to_string();
    assert!(
        err.contains(&format!(
            "the archive has no {} packages; its architectures are {};",
            foreign_arch(),
            support::native_arch()
        )),
        "{err}"
    );
    let requests = served.server.requests();
    assert!(
        requests.iter().all(|p| p.ends_with("Release")),
        "only the Release was fetched: {requests:?}"
    );
}
