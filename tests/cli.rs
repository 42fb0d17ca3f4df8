//! The command line as a newcomer meets it: `--help` (snapshot), completions and the man page,
//! exit codes and first error lines for usage errors, a missing mirror, not being root and a bad
//! signature, `--print-packages` against the fixture repository, and Ctrl-C during unpacking of
//! a real build leaving no partial output and no mounts.

mod support;

use support::host::shared_cache;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use support::host::{host_mirror, require_program, require_root};
use support::repo::{key_path, sample_packages, RepoSpec, Served};

const BIN: &str = env!("CARGO_BIN_EXE_debstrap-onion");

/// The binary with an environment that does not leak into its output: no mirror or epoch from
/// the caller, a fixed help width (clap wraps at the terminal's, or COLUMNS), no stdin.
fn bin() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("DEBSTRAP_MIRROR")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("DEBSTRAP_LOG")
        .env("COLUMNS", "100")
        .env("LINES", "50")
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("stderr is UTF-8")
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// Asserts a successful run and returns its standard output.
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        stderr(&out)
    );
    stdout(&out)
}

/// A temporary directory that is removed only when nothing is mounted under it: a build that
/// failed to undo its mounts must not have the host's /dev or /proc deleted through them.
struct Scratch(Option<tempfile::TempDir>);

impl Scratch {
    /// On the disk, not a tmpfs /tmp: real builds unpack and chroot here.
    fn new() -> Scratch {
        Scratch(Some(tempfile::tempdir_in("/var/tmp").expect("temp dir")))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().expect("scratch dir").path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some(dir) = self.0.take() else { return };
        for point in debstrap_onion::stage::mounts_under(dir.path()).iter().rev() {
            let _ = support::sys::detach(point);
        }
        if !debstrap_onion::stage::mounts_under(dir.path()).is_empty() {
            eprintln!(
                "left {} in place: mounts remain under it",
                dir.path().display()
            );
            let _ = dir.keep();
        }
    }
}

/// The sample fixture repository (apt, base, libfoo, extra), signed with the test key and
/// served on 127.0.0.1.
struct Fixture {
    served: Served,
}

impl Fixture {
    fn new() -> Fixture {
        let served = Served::start(
            &RepoSpec::fresh(),
            "test-archive.sec.asc",
            &sample_packages(),
        );
        Fixture { served }
    }

    fn target(&self) -> PathBuf {
        self.served.dir.path().join("target")
    }

    /// `build --no-onion --arch NATIVE --keyring TEST-KEY --cache-dir TMP/cache` + `args` +
    /// `fixture TMP/target URL`.
    fn build(&self, args: &[&str]) -> Output {
        run(bin()
            .args([
                "build",
                "--no-onion",
                "--arch",
                &crate::support::native_arch(),
                "--keyring",
            ])
            .arg(key_path("test-archive.pub.asc"))
            .arg("--cache-dir")
            .arg(self.served.dir.path().join("cache"))
            .args(args)
            .arg("fixture")
            .arg(self.target())
            .arg(&self.served.server.url))
    }
}

// --- help, completions, man page -----------------------------------------------------------

#[test]
fn help_matches_the_snapshot() {
    insta::assert_snapshot!("help", ok(bin().arg("--help")));
}

#[test]
fn build_help_matches_the_snapshot() {
    insta::assert_snapshot!("build_help", ok(bin().args(["build", "--help"])));
}

#[test]
fn completions_for_bash_zsh_and_fish_know_build_and_its_options() {
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(bin().args(["completions", shell]));
        // fish spells a long option as `-l variant`.
        let variant = if shell == "fish" {
            "-l variant"
        } else {
            "--variant"
        };
        assert!(
            script.contains("build") && script.contains(variant),
            "{shell} completion lacks build / --variant:\n{script}"
        );
    }
}

#[test]
fn man_page_is_roff_naming_the_build_command() {
    let page = ok(bin().arg("man"));
    assert!(page.contains(".TH"), "no .TH header:\n{page}");
    assert!(page.contains("build"), "no build command:\n{page}");
}

// --- usage and configuration errors (exit 2) ----------------------------------------------

/// Asserts exit status 2 with exactly one `error:` line, the first, which contains `needle`;
/// returns stderr. TARGET (if given) must not have been created.
fn usage_error(out: &Output, needle: &str, target: Option<&Path>) -> String {
    let err = stderr(out);
    assert_eq!(
        code(out),
        Some(2),
        "expected exit 2, got {}:\n{err}",
        out.status
    );
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: ") && first.contains(needle),
        "first line should be `error: ...{needle}...`:\n{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "more than one error line:\n{err}"
    );
    if let Some(target) = target {
        assert!(
            !target.exists(),
            "a usage error created {}",
            target.display()
        );
    }
    err
}

#[test]
fn an_unknown_variant_is_a_usage_error() {
    let dir = Scratch::new();
    let target = dir.path().join("target");
    let out = run(bin()
        .args(["build", "--variant", "tiny", "trixie"])
        .arg(&target)
        .arg("http://127.0.0.1:9/"));
    let err = usage_error(&out, "tiny", Some(&target));
    assert!(
        err.contains("minbase"),
        "the possible values are not listed:\n{err}"
    );
}

#[test]
fn an_include_that_is_not_a_package_name_is_a_usage_error() {
    let dir = Scratch::new();
    let target = dir.path().join("target");
    let out = run(bin()
        .args(["build", "--include", "nginx,Bad_Name", "trixie"])
        .arg(&target)
        .arg("http://127.0.0.1:9/"));
    let err = usage_error(&out, "Bad_Name", Some(&target));
    assert!(err.contains("--include"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn port_zero_is_a_usage_error() {
    let dir = Scratch::new();
    let target = dir.path().join("target");
    let host = dir.path().join("host");
    for option in ["--onion-port", "--local-port"] {
        let out = run(bin()
            .args(["build", option, "0", "--host-root"])
            .arg(&host)
            .arg("trixie")
            .arg(&target)
            .arg("http://127.0.0.1:9/"));
        let err = usage_error(&out, "not a port", Some(&target));
        assert!(err.contains(option), "{err}");
        assert!(!host.exists(), "a usage error created the host root");
    }
}

#[test]
fn an_ftp_mirror_is_a_usage_error() {
    let dir = Scratch::new();
    let target = dir.path().join("target");
    let out = run(bin()
        .args(["build", "trixie"])
        .arg(&target)
        .arg("ftp://127.0.0.1/debian"));
    let err = usage_error(&out, "ftp://127.0.0.1/debian", Some(&target));
    assert!(err.contains("http://"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Mirror discovery reads /etc/apt: a tmpfs over it, in a private mount namespace that only
/// this child lives in, hides the host's sources without writing the host's /etc.
#[test]
fn root_no_mirror_configured_says_how_to_pass_one() {
    if !require_root() || !require_program("unshare") {
        return;
    }
    let dir = Scratch::new();
    let target = dir.path().join("target");
    let out = run(bin_in_namespace(
        "mount -t tmpfs none /etc/apt && exec \"$0\" build --no-onion trixie \"$1\"",
    )
    .arg(BIN)
    .arg(&target));
    let err = usage_error(&out, "--mirror", Some(&target));
    eprintln!("{err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(first.contains("DEBSTRAP_MIRROR"), "{err}");
    assert!(first.contains("MIRROR argument"), "{err}");
    assert!(
        !mount_points().contains(&"/etc/apt".to_string()),
        "the tmpfs over /etc/apt leaked out of the namespace"
    );
}

/// `unshare --mount --propagation private sh -c SCRIPT` with the binary's clean environment.
fn bin_in_namespace(script: &str) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env_remove("DEBSTRAP_MIRROR")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("DEBSTRAP_LOG")
        .stdin(Stdio::null());
    cmd
}

fn mount_points() -> Vec<String> {
    fs_err::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect()
}

/// Run as nobody with `--mode root`, a build is refused before any work: port 9 has no
/// listener, so any attempt to fetch would show as a network error. (Without it, a user's build
/// is rootless: tests/rootless.rs.)
#[test]
fn root_a_root_mode_build_as_a_user_is_refused_before_any_work() {
    if !require_root() || !require_program("setpriv") {
        return;
    }
    let dir = Scratch::new();
    let target = dir.path().join("target");
    let out = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(["build", "--mode", "root", "--no-onion", "trixie"])
        .arg(&target)
        .arg("http://127.0.0.1:9/")
        .current_dir("/")
        .env_remove("DEBSTRAP_MIRROR")
        .stdin(Stdio::null()));
    let err = usage_error(&out, "needs root", Some(&target));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("127.0.0.1"), "it tried the network:\n{err}");
}

// --- build failures -------------------------------------------------------------------------

#[test]
fn root_a_bad_signature_fails_naming_the_inrelease_url() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let path = fx.served.repo().join("dists/fixture/InRelease");
    let text = fs_err::read_to_string(&path).expect("InRelease");
    let tampered = text.replacen("Label: Fixture", "Label: Fixturf", 1);
    assert_ne!(text, tampered, "the fixture InRelease has no Label line");
    fs_err::write(&path, tampered).expect("tamper with InRelease");

    let out = fx.build(&[]);
    let err = stderr(&out);
    eprintln!("{err}");
    assert_eq!(
        code(&out),
        Some(1),
        "expected exit 1, got {}:\n{err}",
        out.status
    );
    let url = format!("{}/dists/fixture/InRelease", fx.served.server.url);
    let first = err
        .lines()
        .find(|l| !l.starts_with("==> "))
        .unwrap_or_default();
    assert!(
        first.starts_with("error: ") && first.contains(&url),
        "the first error line should name {url}:\n{err}"
    );
    assert!(err.contains("caused by: "), "no cause chain:\n{err}");
    assert!(!fx.target().exists(), "a refused build created TARGET");
}

#[test]
fn print_packages_lists_sorted_name_version_lines_and_leaves_target_alone() {
    let fx = Fixture::new();
    let out = fx.build(&["--print-packages"]);
    assert!(out.status.success(), "{}:\n{}", out.status, stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(lines, ["apt 2.9", "base 1.0-1", "libfoo 2.1-1"]);
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
    assert!(!fx.target().exists(), "--print-packages created TARGET");
    assert!(
        fx.served
            .server
            .requests()
            .iter()
            .all(|p| !p.ends_with(".deb")),
        "--print-packages downloaded packages"
    );
}

// --- Ctrl-C -------------------------------------------------------------------------------

/// A running build; if the test fails before it ends, it is interrupted and waited for, so
/// its guards undo its mounts before the scratch directory goes.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            if let Ok(None) = child.try_wait() {
                let _ = support::sys::signal(child.id(), support::sys::Signal::INT);
                let _ = child.wait();
            }
        }
    }
}

/// Files under `dir` (recursively), as paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs_err::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(
                    path.strip_prefix(dir)
                        .unwrap_or(&path)
                        .display()
                        .to_string(),
                );
            }
        }
    }
    found.sort();
    found
}

/// A hostile mirror that never answers one request, met by SIGINT while it holds: at the
/// InRelease, at a Packages index and at a .deb, the build ends at once (a held request does
/// not delay the signal) with exit 130, and leaves no TARGET, no build directory, nothing
/// half-downloaded in the cache.
#[test]
fn root_sigint_while_the_mirror_holds_a_request_ends_the_build_leaving_nothing() {
    if !require_root() {
        return;
    }
    // Real .debs (the sample packages are index entries only), one required.
    let serve = || {
        let deb = support::deb::DebBuilder::new("base", "1.0", &crate::support::native_arch())
            .dir("./", 0o755)
            .dir("./usr", 0o755)
            .file("./usr/base", 0o644, b"base");
        Fixture {
            served: Served::start(
                &RepoSpec::fresh(),
                "test-archive.sec.asc",
                &[support::repo::FakeDeb::new(
                    "base",
                    "1.0",
                    &[("Priority", "required")],
                    deb.build(),
                )],
            ),
        }
    };
    // Which requests a build makes, from a build that is let finish.
    let probe = serve();
    let out = probe.build(&["--variant", "extract", "--include", "base"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let requests = probe.served.server.requests();
    let first = |pred: &dyn Fn(&str) -> bool| {
        requests
            .iter()
            .find(|p| pred(p))
            .unwrap_or_else(|| panic!("no such request in {requests:?}"))
            .clone()
    };
    let held_paths = [
        first(&|p| p.ends_with("/InRelease")),
        first(&|p| p.contains("/binary-")),
        first(&|p| p.ends_with(".deb")),
    ];
    for held in held_paths {
        let fx = serve();
        fx.served.server.fault(&held, support::server::Fault::Hold);
        let child = bin()
            .args([
                "build",
                "--no-onion",
                "--variant",
                "extract",
                "--include",
                "base",
            ])
            .args(["--arch", &crate::support::native_arch(), "--keyring"])
            .arg(key_path("test-archive.pub.asc"))
            .arg("--cache-dir")
            .arg(fx.served.dir.path().join("cache"))
            .arg("fixture")
            .arg(fx.target())
            .arg(&fx.served.server.url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the build");
        let mut running = Running(Some(child));
        let child = running.0.as_mut().expect("child");
        assert!(
            fx.served
                .server
                .wait_for_request(&held, std::time::Duration::from_secs(60)),
            "the build never asked for {held}"
        );
        let signalled = std::time::Instant::now();
        support::sys::signal(child.id(), support::sys::Signal::INT).expect("SIGINT");
        let mut err = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err)
            .expect("read stderr");
        let status = child.wait().expect("wait");
        let took = signalled.elapsed();
        assert_eq!(status.code(), Some(130), "held at {held}:\n{err}");
        // The read timeout is 60 s: a build that waited for it would take that long.
        assert!(
            took < std::time::Duration::from_secs(10),
            "held at {held}: the build took {took:?} to stop"
        );
        assert!(!fx.target().exists(), "held at {held}: TARGET left");
        let left: Vec<String> = fs_err::read_dir(fx.served.dir.path())
            .expect("read the scratch dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".target"))
            .collect();
        assert!(left.is_empty(), "held at {held}: left {left:?}");
        // Only verified files, under their hashes: no temporary or partial one.
        let cached = files_under(&fx.served.dir.path().join("cache"));
        assert!(
            cached
                .iter()
                .all(|f| !f.rsplit('/').next().unwrap_or(f).starts_with('.')),
            "held at {held}: partial files in the cache: {cached:?}"
        );
        fx.served.server.release(&held);
    }
}

/// SIGINT as soon as the build says it is unpacking: exit 130, "interrupted", and neither
/// TARGET, nor the build directory beside it, nor a mount under the scratch directory is left.
#[test]
fn real_archive_root_ctrl_c_during_unpack_exits_130_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let Some(mirror) = host_mirror() else {
        return;
    };
    let dir = Scratch::new();
    let target = dir.path().join("target");
    let child = bin()
        .args(["build", "--no-onion", "--cache-dir"])
        .arg(shared_cache())
        .arg("trixie")
        .arg(&target)
        .arg(&mirror)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the build");
    let mut running = Running(Some(child));
    let child = running.0.as_mut().expect("child");
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr"));

    let mut seen = String::new();
    let mut signalled = false;
    let mut line = String::new();
    while lines.read_line(&mut line).expect("read stderr") > 0 {
        seen.push_str(&line);
        if line.contains("unpacking packages") {
            support::sys::signal(child.id(), support::sys::Signal::INT).expect("send SIGINT");
            signalled = true;
            break;
        }
        line.clear();
    }
    assert!(signalled, "the build never reached unpacking:\n{seen}");
    lines.read_to_string(&mut seen).expect("read stderr");
    let status = child.wait().expect("wait for the build");
    eprintln!("{seen}");

    assert_eq!(status.code(), Some(130), "expected exit 130:\n{seen}");
    assert!(
        seen.contains("interrupted"),
        "no word of the interruption:\n{seen}"
    );
    assert!(
        !seen.contains("packages unpacked") && !seen.contains("configuring"),
        "the signal landed after unpacking had finished:\n{seen}"
    );
    assert!(!target.exists(), "TARGET was left behind");
    let leftovers: Vec<String> = fs_err::read_dir(dir.path())
        .expect("read scratch dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".target.build-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "build directories left: {leftovers:?}"
    );
    let mounts = debstrap_onion::stage::mounts_under(dir.path());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
}
