//! Offline tests of the verified fetch path: a small signed repository served on 127.0.0.1,
//! tampered with in the ways an attacker or a broken mirror would, each refusal naming what
//! failed and writing nothing to TARGET.

mod support;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use debstrap_onion::config::{BuildConfig, Output, StopAfter, Variant};
use debstrap_onion::{Error, Silent};
use support::repo::{key_path, sample_packages, RepoSpec, Served};
use support::server::Fault;

fn key(name: &str) -> Vec<u8> {
    fs_err::read(key_path(name)).expect("fixture key")
}

struct Fixture {
    served: Served,
}

impl Fixture {
    fn with(spec: RepoSpec, secret: &str) -> Fixture {
        Fixture {
            served: Served::start(&spec, secret, &sample_packages()),
        }
    }

    fn good() -> Fixture {
        Fixture::with(RepoSpec::fresh(), "test-archive.sec.asc")
    }

    fn repo(&self) -> PathBuf {
        self.served.repo()
    }

    fn target(&self) -> PathBuf {
        self.served.dir.path().join("target")
    }

    fn cache(&self) -> PathBuf {
        self.served.dir.path().join("cache")
    }

    fn config(&self, stop_after: StopAfter) -> BuildConfig {
        let mut config = BuildConfig::new("fixture", self.served.server.url.clone());
        config.keyrings = vec![key_path("test-archive.pub.asc")];
        config.cache_dir = self.cache();
        config.output = Output::Directory(self.target());
        config.variant = Variant::Minbase;
        config.arch = crate::support::native_arch();
        config.stop_after = stop_after;
        config.publish_onion = false;
        config
    }

    /// Runs a build that must fail; asserts TARGET was not created.
    fn refused(&self, config: &BuildConfig) -> String {
        let err = debstrap_onion::build(config, &Silent).expect_err("the build must be refused");
        assert!(!self.target().exists(), "a refused build created TARGET");
        error_text(&err)
    }

    fn cached_debs(&self) -> Vec<String> {
        let mut names: Vec<String> = fs_err::read_dir(self.cache().join("debs"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

fn error_text(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(" / ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[test]
fn good_repository_resolves_the_minbase_set() {
    let fx = Fixture::good();
    let report = debstrap_onion::build(&fx.config(StopAfter::PrintPackages), &Silent)
        .expect("good repository");
    let names: Vec<(&str, &str)> = report
        .packages
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        names,
        [("apt", "2.9"), ("base", "1.0-1"), ("libfoo", "2.1-1")]
    );
    assert!(!fx.target().exists(), "--print-packages touched TARGET");
    assert!(
        fx.served
            .server
            .requests()
            .iter()
            .all(|p| !p.ends_with(".deb")),
        "--print-packages fetched .debs"
    );
}

#[test]
fn download_only_fills_the_cache_with_verified_debs_and_a_warm_run_fetches_none() {
    let fx = Fixture::good();
    debstrap_onion::build(&fx.config(StopAfter::DownloadOnly), &Silent).expect("download");
    let debs = fx.cached_debs();
    assert_eq!(debs.len(), 3, "{debs:?}");
    for name in &debs {
        let data = fs_err::read(fx.cache().join("debs").join(name)).expect("cached deb");
        assert_eq!(
            format!("{}.deb", debstrap_onion::fetch::Sha256Digest::of(&data)),
            *name
        );
    }
    assert!(!fx.target().exists());
    let before = fx.served.server.requests().len();
    debstrap_onion::build(&fx.config(StopAfter::DownloadOnly), &Silent).expect("warm download");
    let warm: Vec<String> = fx.served.server.requests()[before..].to_vec();
    assert_eq!(
        warm,
        ["/dists/fixture/InRelease"],
        "a warm run should fetch only InRelease"
    );
}

#[test]
fn packages_index_is_fetched_by_hash_as_xz() {
    let fx = Fixture::good();
    debstrap_onion::build(&fx.config(StopAfter::PrintPackages), &Silent).expect("good repository");
    let requests = fx.served.server.requests();
    assert!(
        requests.iter().any(|p| p.starts_with(&format!(
            "/dists/fixture/main/binary-{}/by-hash/SHA256/",
            crate::support::native_arch()
        ))),
        "{requests:?}"
    );
    assert!(
        !requests
            .iter()
            .any(|p| p.ends_with("/Packages") || p.ends_with("/Packages.gz")),
        "{requests:?}"
    );
}

#[test]
fn one_changed_byte_in_inrelease_is_refused() {
    let fx = Fixture::good();
    let path = fx.repo().join("dists/fixture/InRelease");
    let text = fs_err::read_to_string(&path).expect("InRelease");
    fs_err::write(&path, text.replacen("Label: Fixture", "Label: Fixturf", 1)).expect("tamper");
    let err = fx.refused(&fx.config(StopAfter::DownloadOnly));
    assert!(err.contains("/dists/fixture/InRelease"), "{err}");
    assert!(fx.cached_debs().is_empty());
    assert!(
        !fx.served
            .server
            .requests()
            .iter()
            .any(|p| p.ends_with("/Release") || p.ends_with("Release.gpg")),
        "fell back to Release after a bad InRelease signature"
    );
}

#[test]
fn a_repository_signed_by_an_untrusted_key_is_refused() {
    let fx = Fixture::with(RepoSpec::fresh(), "untrusted.sec.asc");
    let err = fx.refused(&fx.config(StopAfter::PrintPackages));
    assert!(err.contains("/dists/fixture/InRelease"), "{err}");
    assert!(
        err.contains("--keyring"),
        "the error should say how to trust a key: {err}"
    );
}

#[test]
fn an_expired_valid_until_is_refused_unless_ignored() {
    let mut spec = RepoSpec::fresh();
    spec.date = SystemTime::now() - Duration::from_secs(30 * 86400);
    spec.valid_until = Some(SystemTime::now() - Duration::from_secs(86400));
    let fx = Fixture::with(spec, "test-archive.sec.asc");
    let err = fx.refused(&fx.config(StopAfter::PrintPackages));
    assert!(
        err.contains("Valid-Until") && err.contains("--ignore-valid-until"),
        "{err}"
    );
    let mut config = fx.config(StopAfter::PrintPackages);
    config.ignore_valid_until = true;
    debstrap_onion::build(&config, &Silent).expect("accepted with --ignore-valid-until");
}

#[test]
fn a_packages_file_changed_after_signing_is_refused() {
    let fx = Fixture::good();
    let dir = fx.repo().join(format!(
        "dists/fixture/main/binary-{}/by-hash/SHA256",
        crate::support::native_arch()
    ));
    for entry in fs_err::read_dir(&dir).expect("by-hash dir").flatten() {
        let mut data = fs_err::read(entry.path()).expect("index");
        let last = data.len() - 1;
        data[last] ^= 1;
        fs_err::write(entry.path(), data).expect("tamper");
    }
    let err = fx.refused(&fx.config(StopAfter::DownloadOnly));
    assert!(
        err.contains("by-hash/SHA256/") && err.contains("SHA256 mismatch"),
        "{err}"
    );
    assert!(fx.cached_debs().is_empty());
}

#[test]
fn a_deb_with_the_wrong_hash_is_refused_and_never_cached() {
    let fx = Fixture::good();
    let deb = fx.repo().join(sample_packages()[2].filename());
    let mut data = fs_err::read(&deb).expect("deb");
    data[100] ^= 0xff;
    fs_err::write(&deb, data).expect("tamper");
    let err = fx.refused(&fx.config(StopAfter::Complete));
    assert!(
        err.contains(&sample_packages()[2].filename()) && err.contains("SHA256 mismatch"),
        "{err}"
    );
    let cached = fx.cached_debs();
    assert!(
        cached.iter().all(|n| !n.starts_with(".partial")),
        "a partial download was left: {cached:?}"
    );
    assert!(
        cached.len() <= 2,
        "only the good debs may be cached: {cached:?}"
    );
}

#[test]
fn a_missing_deb_is_reported_at_once_with_its_url() {
    let fx = Fixture::good();
    fs_err::remove_file(fx.repo().join(sample_packages()[0].filename())).expect("remove deb");
    let err = fx.refused(&fx.config(StopAfter::DownloadOnly));
    assert!(
        err.contains(&sample_packages()[0].filename()) && err.contains("404"),
        "{err}"
    );
    let tries = fx
        .served
        .server
        .requests()
        .iter()
        .filter(|p| p.ends_with(&sample_packages()[0].filename()))
        .count();
    assert_eq!(tries, 1, "a 404 must not be retried");
}

#[test]
fn a_dropped_connection_is_retried_and_the_build_succeeds() {
    let fx = Fixture::good();
    let path = format!("/{}", sample_packages()[2].filename());
    fx.served.server.fault(&path, Fault::Drop(1));
    fx.served
        .server
        .fault("/dists/fixture/InRelease", Fault::Drop(1));
    debstrap_onion::build(&fx.config(StopAfter::DownloadOnly), &Silent).expect("retry succeeds");
    assert_eq!(fx.cached_debs().len(), 3);
    let tries = fx
        .served
        .server
        .requests()
        .iter()
        .filter(|p| **p == path)
        .count();
    assert_eq!(tries, 2, "one dropped connection, one retry");
}

#[test]
fn a_server_error_that_persists_fails_after_bounded_retries() {
    let fx = Fixture::good();
    fx.served
        .server
        .fault("/dists/fixture/InRelease", Fault::Status(503));
    let err = fx.refused(&fx.config(StopAfter::PrintPackages));
    assert!(
        err.contains("/dists/fixture/InRelease") && err.contains("503"),
        "{err}"
    );
    let tries = fx
        .served
        .server
        .requests()
        .iter()
        .filter(|p| p.ends_with("InRelease"))
        .count();
    assert!(
        (2..=5).contains(&tries),
        "expected a few retries, saw {tries}"
    );
}

#[test]
fn release_and_release_gpg_are_used_when_there_is_no_inrelease() {
    let fx = Fixture::good();
    fs_err::remove_file(fx.repo().join("dists/fixture/InRelease")).expect("remove InRelease");
    let report = debstrap_onion::build(&fx.config(StopAfter::PrintPackages), &Silent)
        .expect("detached signature");
    assert_eq!(report.packages.len(), 3);
    let gpg = fx.repo().join("dists/fixture/Release.gpg");
    fs_err::write(
        &gpg,
        support::sign::detached_sign(&key("untrusted.sec.asc"), b"other"),
    )
    .expect("bad sig");
    let err = fx.refused(&fx.config(StopAfter::PrintPackages));
    assert!(err.contains("/dists/fixture/Release"), "{err}");
}

#[test]
fn a_suite_that_does_not_match_is_refused() {
    let fx = Fixture::good();
    let mut config = fx.config(StopAfter::PrintPackages);
    config.suite = "fixture".to_string();
    fs_err::rename(
        fx.repo().join("dists/fixture"),
        fx.repo().join("dists/other"),
    )
    .expect("rename");
    config.suite = "other".to_string();
    let err = fx.refused(&config);
    assert!(err.contains("other") && err.contains("fixture"), "{err}");
}

#[test]
fn two_builds_sharing_one_cache_at_the_same_time_both_succeed() {
    let fx = Fixture::good();
    let config = fx.config(StopAfter::DownloadOnly);
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| debstrap_onion::build(&config, &Silent)))
            .collect();
        for run in runs {
            run.join().expect("no panic").expect("both builds succeed");
        }
    });
    let cached = fx.cached_debs();
    assert_eq!(cached.len(), 3, "{cached:?}");
    assert!(
        cached.iter().all(|n| !n.starts_with(".partial")),
        "{cached:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// A hostile mirror: every answer is bounded in size and time, and refused with its URL

impl Fixture {
    /// Every file under the cache, as paths relative to it.
    fn cache_files(&self) -> Vec<String> {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            for entry in fs_err::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&path, base, out);
                } else {
                    let rel = path.strip_prefix(base).expect("under the cache");
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.cache(), &self.cache(), &mut files);
        files.sort();
        files
    }

    /// The URL path of the Packages.xz the Release lists (fetched by hash).
    fn packages_xz_path(&self) -> String {
        let data = fs_err::read(self.repo().join(format!(
            "dists/fixture/main/binary-{}/Packages.xz",
            crate::support::native_arch()
        )))
        .expect("Packages.xz");
        format!(
            "/dists/fixture/main/binary-{}/by-hash/SHA256/{}",
            crate::support::native_arch(),
            debstrap_onion::fetch::Sha256Digest::of(&data)
        )
    }

    fn deb_path(&self, n: usize) -> String {
        format!("/{}", sample_packages()[n].filename())
    }

    /// Indexes the fixture with `fetcher`, then downloads the package `name` alone.
    fn download_one(
        &self,
        fetcher: &debstrap_onion::fetch::Fetcher,
        name: &str,
    ) -> Result<Vec<debstrap_onion::fetch::CachedDeb>, debstrap_onion::fetch::FetchError> {
        let keyring = self.keyring();
        let components = ["main".to_string()];
        let rt = runtime();
        let (_, index) = rt
            .block_on(debstrap_onion::fetch::index(
                fetcher,
                debstrap_onion::fetch::IndexRequest {
                    mirror: &self.served.server.url,
                    suite: "fixture",
                    components: &components,
                    arch: &crate::support::native_arch(),
                    foreign_archs: &[],
                    keyring: &keyring,
                    ignore_valid_until: false,
                    cache_dir: &self.cache(),
                },
            ))
            .expect("index");
        let packages: Vec<_> = (0..index.len())
            .filter(|&i| index.get(i).name == name)
            .map(|i| index.package(i).expect("a package of the index"))
            .collect();
        rt.block_on(debstrap_onion::fetch::download(
            fetcher,
            debstrap_onion::fetch::DownloadRequest {
                mirror: &self.served.server.url,
                packages: &packages,
                cache_dir: &self.cache(),
                reporter: &Silent,
                on_ready: &|_, _| {},
            },
        ))
    }

    fn keyring(&self) -> debstrap_onion::fetch::Keyring {
        debstrap_onion::fetch::Keyring::from_files(&[key_path("test-archive.pub.asc")])
            .expect("test keyring")
    }
}

/// A fetcher whose every request must end within `deadline` (reads may pause 30 s).
fn impatient(deadline: Duration) -> debstrap_onion::fetch::Fetcher {
    debstrap_onion::fetch::Fetcher::with_limits(debstrap_onion::fetch::Limits {
        deadline,
        min_rate: 1 << 20,
        read_timeout: Duration::from_secs(30),
    })
    .expect("client")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The only line of an error's own message (its causes follow on their own lines).
fn first_line(err: &Error) -> String {
    let line = err.to_string();
    assert!(!line.contains('\n'), "not one line: {line}");
    line
}

#[test]
fn an_endless_inrelease_is_cut_at_the_cap() {
    let fx = Fixture::good();
    fx.served
        .server
        .fault("/dists/fixture/InRelease", Fault::Endless);
    let err =
        debstrap_onion::build(&fx.config(StopAfter::DownloadOnly), &Silent).expect_err("refused");
    let line = first_line(&err);
    let cap = debstrap_onion::fetch::MAX_RELEASE.to_string();
    assert!(
        line.contains("/dists/fixture/InRelease") && line.contains(&cap),
        "{line}"
    );
    assert!(!fx.target().exists());
    assert_eq!(fx.cache_files(), Vec::<String>::new());
}

#[test]
fn an_inrelease_whose_content_length_is_past_the_cap_is_refused() {
    let fx = Fixture::good();
    // Only the announcement is past the cap; the body is the real, short InRelease, so a
    // client that read it would get further (to a truncated-body error).
    fx.served.server.fault(
        "/dists/fixture/InRelease",
        Fault::Announce(debstrap_onion::fetch::MAX_RELEASE + 1),
    );
    let err = fx.refused(&fx.config(StopAfter::PrintPackages));
    let cap = debstrap_onion::fetch::MAX_RELEASE.to_string();
    assert!(
        err.contains("/dists/fixture/InRelease") && err.contains(&cap),
        "{err}"
    );
    assert_eq!(
        fx.served.server.requests().len(),
        1,
        "refused at once, not retried"
    );
}

#[test]
fn an_endless_release_gpg_is_cut_at_the_signature_cap() {
    let fx = Fixture::good();
    fs_err::remove_file(fx.repo().join("dists/fixture/InRelease")).expect("remove InRelease");
    fx.served
        .server
        .fault("/dists/fixture/Release.gpg", Fault::Endless);
    let err = fx.refused(&fx.config(StopAfter::PrintPackages));
    let cap = debstrap_onion::fetch::MAX_SIGNATURE.to_string();
    assert!(
        err.contains("/dists/fixture/Release.gpg") && err.contains(&cap),
        "{err}"
    );
    assert_eq!(fx.cache_files(), Vec::<String>::new());
}

#[test]
fn a_packages_index_one_byte_longer_than_signed_is_refused_and_not_cached() {
    for announce in [true, false] {
        let fx = Fixture::good();
        let path = fx.packages_xz_path();
        fx.served
            .server
            .fault(&path, Fault::Oversized { extra: 1, announce });
        let err = debstrap_onion::build(&fx.config(StopAfter::DownloadOnly), &Silent)
            .expect_err("refused");
        let line = first_line(&err);
        assert!(
            line.contains(&path) && line.contains("size mismatch"),
            "{line}"
        );
        assert!(!fx.target().exists());
        assert_eq!(
            fx.cache_files(),
            Vec::<String>::new(),
            "announce: {announce}"
        );
    }
}

#[test]
fn an_endless_packages_index_stops_just_past_its_signed_size() {
    let fx = Fixture::good();
    let path = fx.packages_xz_path();
    let size = fs_err::metadata(fx.repo().join(format!(
        "dists/fixture/main/binary-{}/Packages.xz",
        crate::support::native_arch()
    )))
    .expect("Packages.xz")
    .len();
    fx.served.server.fault(&path, Fault::Endless);
    let err = fx.refused(&fx.config(StopAfter::PrintPackages));
    assert!(
        err.contains(&path) && err.contains(&format!("size mismatch: expected {size} bytes")),
        "{err}"
    );
    // Streamed and stopped with the piece that went past the size, not at a cap or deadline.
    let got: u64 = err
        .split("got ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .expect("the size that arrived");
    assert!(got > size && got <= size + (256 << 10), "{err}");
    assert_eq!(fx.cache_files(), Vec::<String>::new());
}

#[test]
fn a_deb_one_byte_longer_than_signed_is_refused_and_not_cached() {
    for announce in [true, false] {
        let fx = Fixture::good();
        let path = fx.deb_path(2);
        fx.served
            .server
            .fault(&path, Fault::Oversized { extra: 1, announce });
        let err =
            debstrap_onion::build(&fx.config(StopAfter::Complete), &Silent).expect_err("refused");
        let line = first_line(&err);
        assert!(
            line.contains(&path) && line.contains("size mismatch"),
            "{line}"
        );
        assert!(!fx.target().exists());
        let size = sample_packages()[2].bytes.len();
        assert!(line.contains(&format!("got {}", size + 1)), "{line}");
        let debs = fx.cached_debs();
        assert!(
            debs.len() <= 2 && debs.iter().all(|n| !n.starts_with('.')),
            "{debs:?}"
        );
    }
}

#[test]
fn an_endless_deb_stops_just_past_its_signed_size() {
    let fx = Fixture::good();
    let path = fx.deb_path(0);
    fx.served.server.fault(&path, Fault::Endless);
    // The deadline is only the backstop: the size must stop it long before.
    let err = fx
        .download_one(&impatient(Duration::from_secs(20)), "apt")
        .expect_err("refused")
        .to_string();
    let size = sample_packages()[0].bytes.len();
    assert!(
        err.contains(&path) && err.contains(&format!("size mismatch: expected {size} bytes")),
        "{err}"
    );
    // Stopped with the piece that went past the size, not later.
    let got: usize = err
        .split("got ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .expect("the size that arrived");
    assert!(got > size && got <= size + (256 << 10), "{err}");
    assert!(fx.cached_debs().is_empty(), "{:?}", fx.cached_debs());
}

#[test]
fn an_absurd_signed_deb_size_is_refused_before_it_is_fetched() {
    let mut spec = RepoSpec::fresh();
    spec.edit_packages =
        Some(|packages| packages.replacen("Size: 500\n", "Size: 99999999999\n", 1));
    let fx = Fixture::with(spec, "test-archive.sec.asc");
    let err = fx.refused(&fx.config(StopAfter::DownloadOnly));
    let path = fx.deb_path(0);
    assert!(
        err.contains(&path) && err.contains("99999999999") && err.contains("limit"),
        "{err}"
    );
    assert!(
        !fx.served.server.requests().contains(&path),
        "the .deb was requested"
    );
}

#[test]
fn a_deb_signed_at_exactly_the_size_limit_is_requested() {
    // The limit itself is allowed: the download starts, and the short body is a size mismatch.
    let mut spec = RepoSpec::fresh();
    spec.edit_packages = Some(|packages| {
        let at_limit = format!("Size: {}\n", debstrap_onion::fetch::MAX_DEB);
        packages.replacen("Size: 500\n", &at_limit, 1)
    });
    let fx = Fixture::with(spec, "test-archive.sec.asc");
    let err = fx.refused(&fx.config(StopAfter::DownloadOnly));
    let path = fx.deb_path(0);
    assert!(
        fx.served.server.requests().contains(&path),
        "the .deb was not requested: {err}"
    );
    assert!(err.contains("size mismatch"), "{err}");
}

#[test]
fn an_absurd_signed_index_size_is_an_error_not_an_allocation() {
    let mut spec = RepoSpec::fresh();
    spec.edit_release = Some(|release| {
        release
            .lines()
            .map(|line| {
                let index = format!("main/binary-{}/Packages", crate::support::native_arch());
                if line.ends_with(&index) {
                    let digest = line.split_whitespace().next().expect("digest");
                    format!(" {digest} 99999999999999999 {index}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect()
    });
    let fx = Fixture::with(spec, "test-archive.sec.asc");
    let err = fx.refused(&fx.config(StopAfter::PrintPackages));
    assert!(
        err.contains("99999999999999999") && err.contains("limit"),
        "{err}"
    );
    assert!(err.contains("by-hash/SHA256/"), "{err}");
}

#[test]
fn a_server_that_drips_one_byte_a_second_meets_the_deadline() {
    let fx = Fixture::good();
    fx.served
        .server
        .fault("/dists/fixture/InRelease", Fault::Drip);
    let keyring = fx.keyring();
    let components = ["main".to_string()];
    let started = std::time::Instant::now();
    let result = runtime().block_on(debstrap_onion::fetch::index(
        &impatient(Duration::from_secs(2)),
        debstrap_onion::fetch::IndexRequest {
            mirror: &fx.served.server.url,
            suite: "fixture",
            components: &components,
            arch: &crate::support::native_arch(),
            foreign_archs: &[],
            keyring: &keyring,
            ignore_valid_until: false,
            cache_dir: &fx.cache(),
        },
    ));
    let elapsed = started.elapsed();
    let err = result.expect_err("the deadline ends it").to_string();
    assert!(
        err.contains("/dists/fixture/InRelease") && err.contains("within 2 s"),
        "{err}"
    );
    // Not retried: one deadline, not four, and far less than the body would take.
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert_eq!(fx.cache_files(), Vec::<String>::new());
}

#[test]
fn a_deb_dripped_one_byte_a_second_meets_the_deadline_and_leaves_no_partial_file() {
    let fx = Fixture::good();
    let path = fx.deb_path(0);
    fx.served.server.fault(&path, Fault::Drip);
    let err = fx
        .download_one(&impatient(Duration::from_secs(2)), "apt")
        .expect_err("the deadline ends it")
        .to_string();
    assert!(err.contains(&path) && err.contains("within 2 s"), "{err}");
    assert!(fx.cached_debs().is_empty(), "{:?}", fx.cached_debs());
}

#[test]
fn a_redirect_to_a_local_file_is_refused() {
    let fx = Fixture::good();
    fx.served.server.fault(
        "/dists/fixture/InRelease",
        Fault::Redirect("file:///etc/passwd".to_string()),
    );
    let err =
        debstrap_onion::build(&fx.config(StopAfter::PrintPackages), &Silent).expect_err("refused");
    let line = first_line(&err);
    assert!(
        line.contains("/dists/fixture/InRelease")
            && line.contains("redirect to file:///etc/passwd refused"),
        "{line}"
    );
    assert!(!error_text(&err).contains("root:"), "{line}");
    let tries = fx.served.server.requests().len();
    assert_eq!(tries, 1, "a refused redirect is not retried");
}

#[test]
fn a_redirect_loop_is_cut_after_a_few_hops() {
    let fx = Fixture::good();
    fx.served.server.fault(
        "/dists/fixture/InRelease",
        Fault::Redirect("/dists/fixture/InRelease".to_string()),
    );
    let err = fx.refused(&fx.config(StopAfter::PrintPackages));
    assert!(
        err.contains("/dists/fixture/InRelease") && err.contains("redirect refused"),
        "{err}"
    );
    let hops = fx
        .served
        .server
        .requests()
        .iter()
        .filter(|p| p.ends_with("/InRelease"))
        .count();
    assert_eq!(
        hops,
        debstrap_onion::fetch::MAX_REDIRECTS + 1,
        "one request and at most MAX_REDIRECTS redirects, never retried"
    );
}

#[test]
fn a_redirect_to_http_on_the_same_mirror_is_followed() {
    let fx = Fixture::good();
    let moved = fx.repo().join("moved");
    fs_err::create_dir(&moved).expect("moved dir");
    std::fs::copy(
        fx.repo().join("dists/fixture/InRelease"),
        moved.join("InRelease"),
    )
    .expect("copy");
    fx.served.server.fault(
        "/dists/fixture/InRelease",
        Fault::Redirect(format!("{}/moved/InRelease", fx.served.server.url)),
    );
    debstrap_onion::build(&fx.config(StopAfter::PrintPackages), &Silent).expect("followed");
    assert!(fx
        .served
        .server
        .requests()
        .contains(&"/moved/InRelease".to_string()));
}

// ---------------------------------------------------------------------------------------------
// The cache: read by descriptor, and as root trusted only when nobody else can write it

#[test]
fn a_cached_deb_replaced_by_a_symlink_is_refused() {
    let fx = Fixture::good();
    debstrap_onion::build(&fx.config(StopAfter::DownloadOnly), &Silent).expect("download");
    let name = fx.cached_debs()[0].clone();
    let cached = fx.cache().join("debs").join(&name);
    let elsewhere = fx.served.dir.path().join("elsewhere.deb");
    fs_err::rename(&cached, &elsewhere).expect("move");
    std::os::unix::fs::symlink(&elsewhere, &cached).expect("symlink");
    let err = fx.refused(&fx.config(StopAfter::DownloadOnly));
    assert!(
        err.contains(&name) && err.contains("symbolic link"),
        "{err}"
    );
}

#[test]
fn as_root_a_cache_another_user_owns_or_can_write_is_refused() {
    if !support::host::require_root() {
        return;
    }
    let fx = Fixture::good();
    debstrap_onion::build(&fx.config(StopAfter::DownloadOnly), &Silent).expect("download");
    let cache = fx.cache();
    let chown = |path: &std::path::Path, uid: u32| {
        std::os::unix::fs::chown(path, Some(uid), None).expect("chown");
    };
    let chmod = |path: &std::path::Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };

    chown(&cache, 65534);
    let err = fx.refused(&fx.config(StopAfter::DownloadOnly));
    assert!(
        err.contains(&cache.display().to_string()) && err.contains("owned by uid 65534"),
        "{err}"
    );
    chown(&cache, 0);

    chmod(&cache.join("debs"), 0o777);
    let err = fx.refused(&fx.config(StopAfter::DownloadOnly));
    assert!(
        err.contains("debs") && err.contains("group or others may write"),
        "{err}"
    );
    chmod(&cache.join("debs"), 0o755);

    let file = cache.join("debs").join(&fx.cached_debs()[0]);
    chown(&file, 65534);
    let err = fx.refused(&fx.config(StopAfter::DownloadOnly));
    assert!(
        err.contains(&fx.cached_debs()[0]) && err.contains("owned by uid 65534"),
        "{err}"
    );
    chown(&file, 0);
    debstrap_onion::build(&fx.config(StopAfter::DownloadOnly), &Silent).expect("safe again");
}

#[test]
fn peak_memory_while_a_hostile_server_sends_an_endless_inrelease_stays_small() {
    if !support::host::require_program("time") {
        return;
    }
    let fx = Fixture::good();
    fx.served
        .server
        .fault("/dists/fixture/InRelease", Fault::Endless);
    let report = fx.served.dir.path().join("rss");
    let out = std::process::Command::new("time")
        .arg("-o")
        .arg(&report)
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_debstrap-onion"))
        .args(["build", "--no-onion", "--print-packages", "--keyring"])
        .arg(key_path("test-archive.pub.asc"))
        .arg("--cache-dir")
        .arg(fx.cache())
        .arg("fixture")
        .arg(fx.target())
        .arg(&fx.served.server.url)
        .output()
        .expect("run GNU time");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("/dists/fixture/InRelease"), "{stderr}");
    let kib: u64 = fs_err::read_to_string(&report)
        .expect("time's report")
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("max RSS in KiB");
    eprintln!("peak RSS with an endless InRelease: {} MiB", kib / 1024);
    assert!(kib < 64 * 1024, "peak RSS {kib} KiB");
}
