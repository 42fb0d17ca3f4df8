//! How the fetch path reaches the archive, offline: a `file://` mirror, `http_proxy` and
//! `no_proxy` through a proxy of our own on 127.0.0.1, retries after a 5xx, a reset in the
//! middle of a body and a stalled body, the Packages.gz and plain Packages fallbacks, a
//! repository without by-hash, and a corrupt cache entry replaced. None needs root.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use debstrap_onion::config::{BuildConfig, Output, StopAfter, Variant};
use debstrap_onion::fetch::Sha256Digest;
use debstrap_onion::Silent;
use support::front::{Front, Trouble};
use support::repo::{key_path, sample_packages, RepoSpec, Served};

/// The fixture repository, its server, and a cache and TARGET in the same temp dir.
struct Fixture {
    served: Served,
}

impl Fixture {
    fn new(spec: RepoSpec) -> Fixture {
        Fixture {
            served: Served::start(&spec, "test-archive.sec.asc", &sample_packages()),
        }
    }

    fn cache(&self) -> PathBuf {
        self.served.dir.path().join("cache")
    }

    fn config(&self, mirror: &str, stop_after: StopAfter) -> BuildConfig {
        let mut config = BuildConfig::new("fixture", mirror.to_string());
        config.keyrings = vec![key_path("test-archive.pub.asc")];
        config.cache_dir = self.cache();
        config.output = Output::Directory(self.served.dir.path().join("target"));
        config.variant = Variant::Minbase;
        config.arch = crate::support::native_arch();
        config.stop_after = stop_after;
        config.publish_onion = false;
        config
    }

    /// Every cached .deb is named by the SHA256 of its bytes; returns the names, sorted.
    fn verified_cache(&self) -> Vec<String> {
        let mut names: Vec<String> = fs_err::read_dir(self.cache().join("debs"))
            .expect("cache dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in &names {
            let data = fs_err::read(self.cache().join("debs").join(name)).expect("cached deb");
            assert_eq!(format!("{}.deb", Sha256Digest::of(&data)), *name);
        }
        names
    }

    /// The cache names of the minbase set (apt, base, libfoo), from the packages themselves.
    fn expected_cache(&self) -> Vec<String> {
        let mut names: Vec<String> = sample_packages()
            .iter()
            .filter(|p| p.name != "extra")
            .map(|p| format!("{}.deb", Sha256Digest::of(&p.bytes)))
            .collect();
        names.sort();
        names
    }

    /// Rewrites Release keeping only the index lines `keep` accepts, deletes the index files
    /// it no longer lists, and signs it again (InRelease and Release.gpg).
    fn drop_indices(&self, keep: impl Fn(&str) -> bool) {
        let dists = self.served.repo().join("dists/fixture");
        let release = fs_err::read_to_string(dists.join("Release")).expect("Release");
        let mut kept = String::new();
        for line in release.lines() {
            let index = line
                .starts_with(' ')
                .then(|| line.split_whitespace().nth(2));
            match index.flatten() {
                Some(path) if !keep(path) => {
                    fs_err::remove_file(dists.join(path)).expect("remove index");
                }
                _ => {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
        }
        let secret = fs_err::read(key_path("test-archive.sec.asc")).expect("key");
        fs_err::write(dists.join("Release"), &kept).expect("Release");
        fs_err::write(
            dists.join("InRelease"),
            support::sign::clearsign(&secret, kept.as_bytes()),
        )
        .expect("InRelease");
        fs_err::write(
            dists.join("Release.gpg"),
            support::sign::detached_sign(&secret, kept.as_bytes()),
        )
        .expect("Release.gpg");
    }

    fn requests(&self) -> Vec<String> {
        self.served.server.requests()
    }
}

fn without_by_hash() -> RepoSpec {
    RepoSpec {
        by_hash: false,
        ..RepoSpec::fresh()
    }
}

fn deb_path(name: &str) -> String {
    let deb = sample_packages()
        .into_iter()
        .find(|p| p.name == name)
        .expect("a sample package");
    format!("/{}", deb.filename())
}

/// The URL path of the fixture's Packages indices (for the host's architecture).
fn index_dir() -> String {
    format!(
        "/dists/fixture/main/binary-{}/",
        crate::support::native_arch()
    )
}

#[test]
fn a_file_mirror_gives_the_same_verified_debs_without_any_http() {
    let fx = Fixture::new(RepoSpec::fresh());
    let mirror = format!("file://{}", fx.served.repo().display());
    let report = debstrap_onion::build(&fx.config(&mirror, StopAfter::DownloadOnly), &Silent)
        .expect("a file:// mirror works");
    assert_eq!(report.packages.len(), 3, "{:?}", report.packages);
    assert_eq!(fx.verified_cache(), fx.expected_cache());
    assert!(
        fx.requests().is_empty(),
        "HTTP was used: {:?}",
        fx.requests()
    );
}

#[test]
fn a_file_mirror_refuses_a_deb_changed_on_disk() {
    let fx = Fixture::new(RepoSpec::fresh());
    let path = fx
        .served
        .repo()
        .join(deb_path("libfoo").trim_start_matches('/'));
    let mut bytes = fs_err::read(&path).expect("deb");
    bytes[100] ^= 1;
    fs_err::write(&path, bytes).expect("tamper");
    let mirror = format!("file://{}", fx.served.repo().display());
    let err = debstrap_onion::build(&fx.config(&mirror, StopAfter::DownloadOnly), &Silent)
        .expect_err("a changed deb is refused on file:// too");
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text = format!("{text} / {cause}");
        source = cause.source();
    }
    assert!(
        text.contains("libfoo") && text.contains("file://"),
        "{text}"
    );
    let cached: Vec<PathBuf> = fs_err::read_dir(fx.cache().join("debs"))
        .map(|d| d.map(|e| e.expect("entry").path()).collect())
        .unwrap_or_default();
    assert!(
        cached
            .iter()
            .all(|p| fs_err::read(p).expect("cached") != fs_err::read(&path).expect("deb")),
        "the changed deb reached the cache"
    );
}

#[test]
fn server_errors_then_success_are_retried() {
    let fx = Fixture::new(RepoSpec::fresh());
    let front = Front::start(&fx.served.server.url);
    front.trouble("/dists/fixture/InRelease", Trouble::Status(503), 2);
    front.trouble(&deb_path("base"), Trouble::Status(500), 1);
    debstrap_onion::build(&fx.config(&front.url, StopAfter::DownloadOnly), &Silent)
        .expect("the retries succeed");
    assert_eq!(fx.verified_cache(), fx.expected_cache());
    assert_eq!(front.count("/dists/fixture/InRelease"), 3);
    assert_eq!(front.count(&deb_path("base")), 2);
}

#[test]
fn a_connection_reset_in_the_middle_of_a_body_is_retried() {
    let fx = Fixture::new(RepoSpec::fresh());
    let front = Front::start(&fx.served.server.url);
    // libfoo is 70 kB: the reset comes after 1 kB of it.
    front.trouble(&deb_path("libfoo"), Trouble::CutAfter(1000), 1);
    debstrap_onion::build(&fx.config(&front.url, StopAfter::DownloadOnly), &Silent)
        .expect("the retry succeeds");
    assert_eq!(fx.verified_cache(), fx.expected_cache());
    assert_eq!(front.count(&deb_path("libfoo")), 2);
    let partial: Vec<String> = fs_err::read_dir(fx.cache().join("debs"))
        .expect("cache")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".partial"))
        .collect();
    assert!(partial.is_empty(), "{partial:?}");

    // The same for the Packages index (by hash, as .xz): cut after 10 bytes, then whole.
    let fx = Fixture::new(RepoSpec::fresh());
    let front = Front::start(&fx.served.server.url);
    let xz = fs_err::read(fx.served.repo().join(format!(
        "dists/fixture/main/binary-{}/Packages.xz",
        crate::support::native_arch()
    )))
    .expect("Packages.xz");
    let index = format!("{}by-hash/SHA256/{}", index_dir(), Sha256Digest::of(&xz));
    front.trouble(&index, Trouble::CutAfter(10), 1);
    let report = debstrap_onion::build(&fx.config(&front.url, StopAfter::PrintPackages), &Silent)
        .expect("the index retry succeeds");
    assert_eq!(report.packages.len(), 3);
    assert_eq!(front.count(&index), 2, "the cut, then the retry");
}

/// The client's read timeout (60 s) bounds how long a silent server is waited for; then the
/// download is retried and succeeds.
#[test]
fn a_download_that_stalls_is_retried_after_the_read_timeout() {
    let fx = Fixture::new(RepoSpec::fresh());
    let front = Front::start(&fx.served.server.url);
    front.trouble(&deb_path("libfoo"), Trouble::StallAfter(1000), 1);
    let started = std::time::Instant::now();
    debstrap_onion::build(&fx.config(&front.url, StopAfter::DownloadOnly), &Silent)
        .expect("the retry succeeds");
    assert_eq!(fx.verified_cache(), fx.expected_cache());
    assert_eq!(front.count(&deb_path("libfoo")), 2);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(150),
        "the stall was waited for {:?}",
        started.elapsed()
    );
}

#[test]
fn without_by_hash_the_xz_index_is_fetched_by_its_name() {
    let fx = Fixture::new(without_by_hash());
    let mirror = fx.served.server.url.clone();
    let report = debstrap_onion::build(&fx.config(&mirror, StopAfter::PrintPackages), &Silent)
        .expect("no by-hash");
    assert_eq!(report.packages.len(), 3);
    let indices: Vec<String> = fx
        .requests()
        .into_iter()
        .filter(|p| p.starts_with(&index_dir()))
        .collect();
    assert_eq!(indices, [format!("{}Packages.xz", index_dir())]);
}

#[test]
fn without_an_xz_index_packages_gz_is_used() {
    let fx = Fixture::new(without_by_hash());
    fx.drop_indices(|path| !path.ends_with(".xz"));
    let mirror = fx.served.server.url.clone();
    let report = debstrap_onion::build(&fx.config(&mirror, StopAfter::PrintPackages), &Silent)
        .expect("Packages.gz");
    assert_eq!(report.packages.len(), 3);
    let indices: Vec<String> = fx
        .requests()
        .into_iter()
        .filter(|p| p.starts_with(&index_dir()))
        .collect();
    assert_eq!(indices, [format!("{}Packages.gz", index_dir())]);
}

#[test]
fn with_only_a_plain_index_packages_is_used() {
    let fx = Fixture::new(RepoSpec::fresh());
    fx.drop_indices(|path| path.ends_with("/Packages"));
    let mirror = fx.served.server.url.clone();
    let report = debstrap_onion::build(&fx.config(&mirror, StopAfter::PrintPackages), &Silent)
        .expect("plain Packages");
    assert_eq!(report.packages.len(), 3);
    let indices: Vec<String> = fx
        .requests()
        .into_iter()
        .filter(|p| p.starts_with(&index_dir()))
        .collect();
    assert_eq!(indices.len(), 1, "{indices:?}");
    // By hash (the fixture announces Acquire-By-Hash): the plain file's own digest.
    let plain = fs_err::read(fx.served.repo().join(format!(
        "dists/fixture/main/binary-{}/Packages",
        crate::support::native_arch()
    )))
    .expect("Packages");
    assert_eq!(
        indices[0],
        format!("{}by-hash/SHA256/{}", index_dir(), Sha256Digest::of(&plain))
    );
}

#[test]
fn a_corrupt_cache_entry_is_fetched_again_and_replaced() {
    let fx = Fixture::new(RepoSpec::fresh());
    let mirror = fx.served.server.url.clone();
    let config = fx.config(&mirror, StopAfter::DownloadOnly);
    debstrap_onion::build(&config, &Silent).expect("first download");
    let libfoo = sample_packages()
        .into_iter()
        .find(|p| p.name == "libfoo")
        .expect("libfoo");
    let cached = fx
        .cache()
        .join("debs")
        .join(format!("{}.deb", Sha256Digest::of(&libfoo.bytes)));
    let mut bytes = fs_err::read(&cached).expect("cached libfoo");
    bytes[500] ^= 0xff;
    fs_err::write(&cached, &bytes).expect("corrupt the cache entry");

    debstrap_onion::build(&config, &Silent).expect("second download");
    assert!(
        fs_err::read(&cached).expect("cached libfoo") == libfoo.bytes,
        "the corrupt entry was not replaced"
    );
    let fetched = |path: &str| fx.requests().iter().filter(|p| *p == path).count();
    assert_eq!(
        fetched(&deb_path("libfoo")),
        2,
        "libfoo was not fetched again"
    );
    assert_eq!(
        fetched(&deb_path("base")),
        1,
        "an intact entry was fetched again"
    );
    assert_eq!(fx.verified_cache(), fx.expected_cache());
}

// --- proxies, through the command line (the proxy variables are read from the environment) --

const BIN: &str = env!("CARGO_BIN_EXE_debstrap-onion");

/// `build --download-only` of the fixture with only the proxy variables given in `env`.
fn download_with_env(fx: &Fixture, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
        "DEBSTRAP_MIRROR",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied())
        .args([
            "build",
            "--download-only",
            "--no-onion",
            "--arch",
            &crate::support::native_arch(),
            "--keyring",
        ])
        .arg(key_path("test-archive.pub.asc"))
        .arg("--cache-dir")
        .arg(fx.cache())
        .arg("fixture")
        .arg(fx.served.dir.path().join("target"))
        .arg(&fx.served.server.url)
        .stdin(Stdio::null())
        .output()
        .expect("run debstrap-onion")
}

#[test]
fn http_proxy_carries_every_request() {
    let fx = Fixture::new(RepoSpec::fresh());
    // The proxy's own backend is unused: proxied requests name their host.
    let proxy = Front::start("http://127.0.0.1:9");
    let out = download_with_env(&fx, &[("http_proxy", &proxy.url)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fx.verified_cache(), fx.expected_cache());
    let seen = proxy.seen();
    let origin = fx.served.server.url.clone();
    assert!(
        seen.iter()
            .any(|s| s.target == format!("{origin}/dists/fixture/InRelease")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| s.target == format!("{origin}{}", deb_path("libfoo"))),
        "{seen:?}"
    );
    // Everything the archive served went through the proxy, in absolute form.
    let served = fx.requests();
    assert_eq!(served.len(), seen.len(), "{served:?} vs {seen:?}");
    assert!(
        seen.iter().all(|s| s.target.starts_with(&origin)),
        "{seen:?}"
    );
}

#[test]
fn no_proxy_bypasses_the_proxy_for_the_hosts_it_names() {
    let fx = Fixture::new(RepoSpec::fresh());
    let proxy = Front::start("http://127.0.0.1:9");
    let out = download_with_env(
        &fx,
        &[("http_proxy", &proxy.url), ("no_proxy", "127.0.0.1")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fx.verified_cache(), fx.expected_cache());
    assert!(proxy.seen().is_empty(), "{:?}", proxy.seen());
    assert!(!fx.requests().is_empty());
}
