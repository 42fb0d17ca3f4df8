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
    std::fs::read(key_path(name)).expect("fixture key")
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
        config.arch = "amd64".to_string();
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
        let mut names: Vec<String> = std::fs::read_dir(self.cache().join("debs"))
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
        let data = std::fs::read(fx.cache().join("debs").join(name)).expect("cached deb");
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
        requests
            .iter()
            .any(|p| p.starts_with("/dists/fixture/main/binary-amd64/by-hash/SHA256/")),
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
    let text = std::fs::read_to_string(&path).expect("InRelease");
    std::fs::write(&path, text.replacen("Label: Fixture", "Label: Fixturf", 1)).expect("tamper");
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
    let dir = fx
        .repo()
        .join("dists/fixture/main/binary-amd64/by-hash/SHA256");
    for entry in std::fs::read_dir(&dir).expect("by-hash dir").flatten() {
        let mut data = std::fs::read(entry.path()).expect("index");
        let last = data.len() - 1;
        data[last] ^= 1;
        std::fs::write(entry.path(), data).expect("tamper");
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
    let mut data = std::fs::read(&deb).expect("deb");
    data[100] ^= 0xff;
    std::fs::write(&deb, data).expect("tamper");
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
    std::fs::remove_file(fx.repo().join(sample_packages()[0].filename())).expect("remove deb");
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
    std::fs::remove_file(fx.repo().join("dists/fixture/InRelease")).expect("remove InRelease");
    let report = debstrap_onion::build(&fx.config(StopAfter::PrintPackages), &Silent)
        .expect("detached signature");
    assert_eq!(report.packages.len(), 3);
    let gpg = fx.repo().join("dists/fixture/Release.gpg");
    std::fs::write(
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
    std::fs::rename(
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
