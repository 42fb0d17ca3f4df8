//! Signals during a real build (mirror from the host's apt sources), as root: SIGINT and
//! SIGTERM while maintainer scripts run with /proc, /sys and /dev/pts mounted, and while the
//! tarball is written, must exit 130 and leave no TARGET, no build directory and no mount; a
//! second signal ends the build at once. The cache is the one every real-archive test shares.

mod support;

use support::host::shared_cache;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::host::{host_mirror, require_root};
use support::sys::{signal as kill, Signal};

/// A scratch directory on disk. When dropped it ends what a killed build left running in it
/// (processes whose root is inside) and undoes mounts left under it before removing it, so
/// nothing of the host is ever deleted through a mount.
struct Scratch(Option<tempfile::TempDir>);

impl Scratch {
    fn new() -> Scratch {
        Scratch(Some(tempfile::tempdir_in("/var/tmp").expect("temp dir")))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().expect("scratch dir").path()
    }
}

/// Processes whose root directory is under `dir`: what a build ran in its chroot.
fn processes_rooted_in(dir: &Path) -> Vec<i32> {
    let Ok(entries) = fs_err::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|root| root.starts_with(dir))
        })
        .collect()
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some(dir) = self.0.take() else { return };
        for pid in processes_rooted_in(dir.path()) {
            let _ = kill(pid as u32, Signal::KILL);
        }
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

/// A running build, interrupted and waited for if the test ends before it does.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = kill(self.pid(), Signal::KILL);
            let _ = self.0.wait();
        }
    }
}

impl Running {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// What a signalled build did.
struct Outcome {
    code: Option<i32>,
    stderr: String,
    /// Mounts under the scratch directory at the moment the first signal was sent.
    mounted_at_signal: Vec<PathBuf>,
}

/// Starts `build ARGS trixie TARGET MIRROR`, waits for the stderr line containing `when`
/// (and, if `mounted`, for the build's mounts to exist), sends `signals` in order, and waits.
fn signal_during(
    dir: &Scratch,
    mirror: &str,
    args: &[&str],
    target: &Path,
    when: &str,
    mounted: bool,
    signals: &[Signal],
) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
        .env_remove("DEBSTRAP_MIRROR")
        .env_remove("SOURCE_DATE_EPOCH")
        .args(["build", "--cache-dir"])
        .arg(shared_cache())
        .args(args)
        .arg("trixie")
        .arg(target)
        .arg(mirror)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the build");
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr"));
    let running = Running(child);
    let mut stderr = String::new();
    let mut line = String::new();
    let mut reached = false;
    while lines.read_line(&mut line).expect("read stderr") > 0 {
        stderr.push_str(&line);
        if line.contains(when) {
            reached = true;
            break;
        }
        line.clear();
    }
    assert!(reached, "the build never printed {when:?}:\n{stderr}");
    let mut mounted_at_signal = Vec::new();
    if mounted {
        // Configuring mounts /proc, /sys and /dev/pts once it runs maintainer scripts: wait
        // for them (an observable state, not a delay), so the signal finds them in place.
        let deadline = Instant::now() + Duration::from_secs(300);
        while mounted_at_signal.is_empty() && Instant::now() < deadline {
            mounted_at_signal = mounts_seen_by(running.pid() as i32, dir.path());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !mounted_at_signal.is_empty(),
            "the build never mounted anything:\n{stderr}"
        );
    }
    for signal in signals {
        kill(running.pid(), *signal).expect("send the signal");
    }
    lines.read_to_string(&mut stderr).expect("read stderr");
    let mut running = running;
    let status = running.0.wait().expect("wait for the build");
    eprintln!("{stderr}");
    Outcome {
        code: status.code(),
        stderr,
        mounted_at_signal,
    }
}

/// Mount points under `dir` as the threads of process `pid` see them: configure mounts /proc,
/// /sys and /dev/pts in a private mount namespace of its own thread, which the host's
/// mountinfo (and so [`debstrap_onion::stage::mounts_under`]) never shows.
fn mounts_seen_by(pid: i32, dir: &Path) -> Vec<PathBuf> {
    let dir = fs_err::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let Ok(tasks) = fs_err::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut points = Vec::new();
    for task in tasks.flatten() {
        let Ok(info) = fs_err::read_to_string(task.path().join("mountinfo")) else {
            continue;
        };
        for field in info.lines().filter_map(|line| line.split(' ').nth(4)) {
            let point = PathBuf::from(field.replace("\\040", " "));
            if point != dir && point.starts_with(&dir) && !points.contains(&point) {
                points.push(point);
            }
        }
    }
    points
}

/// Asserts a clean interruption: exit 130, the message, and nothing left in `dir`.
fn assert_clean_interruption(dir: &Scratch, outcome: &Outcome) {
    assert_eq!(
        outcome.code,
        Some(130),
        "expected exit 130:\n{}",
        outcome.stderr
    );
    assert!(
        outcome
            .stderr
            .contains("interrupted: mounts undone and partial output removed"),
        "no word of the interruption:\n{}",
        outcome.stderr
    );
    let left: Vec<String> = fs_err::read_dir(dir.path())
        .expect("scratch dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "left beside TARGET: {left:?}");
    let mounts = debstrap_onion::stage::mounts_under(dir.path());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    let rooted = processes_rooted_in(dir.path());
    assert!(
        rooted.is_empty(),
        "processes left in the chroot: {rooted:?}"
    );
}

fn prerequisites() -> Option<String> {
    if !require_root() {
        return None;
    }
    host_mirror()
}

#[test]
fn real_archive_root_sigint_while_maintainer_scripts_run_undoes_the_mounts() {
    let Some(mirror) = prerequisites() else {
        return;
    };
    let dir = Scratch::new();
    let target = dir.path().join("target");
    let outcome = signal_during(
        &dir,
        &mirror,
        &["--no-onion"],
        &target,
        "configuring packages in the chroot",
        true,
        &[Signal::INT],
    );
    assert_eq!(outcome.mounted_at_signal.len(), 3, "proc, sys and dev/pts");
    assert_clean_interruption(&dir, &outcome);
}

#[test]
fn real_archive_root_sigterm_while_maintainer_scripts_run_undoes_the_mounts() {
    let Some(mirror) = prerequisites() else {
        return;
    };
    let dir = Scratch::new();
    let target = dir.path().join("target");
    let outcome = signal_during(
        &dir,
        &mirror,
        &["--no-onion"],
        &target,
        "configuring packages in the chroot",
        true,
        &[Signal::TERM],
    );
    assert!(!outcome.mounted_at_signal.is_empty());
    assert_clean_interruption(&dir, &outcome);
}

/// README: "a second Ctrl-C ends it at once". SIGINT, then SIGTERM (two different signals, so
/// the kernel cannot merge them into one pending signal): the build exits 130 without the
/// orderly cleanup's message. The scratch directory's guard removes what it left.
#[test]
fn real_archive_root_a_second_signal_ends_the_build_at_once() {
    let Some(mirror) = prerequisites() else {
        return;
    };
    let dir = Scratch::new();
    let target = dir.path().join("target");
    let outcome = signal_during(
        &dir,
        &mirror,
        &["--no-onion"],
        &target,
        "configuring packages in the chroot",
        true,
        &[Signal::INT, Signal::TERM],
    );
    assert_eq!(outcome.code, Some(130), "{}", outcome.stderr);
    assert!(
        !outcome.stderr.contains("interrupted: mounts undone"),
        "the build went through its orderly cleanup instead of ending at once:\n{}",
        outcome.stderr
    );
    assert!(!target.exists(), "TARGET appeared");
    let left = debstrap_onion::stage::mounts_under(dir.path());
    eprintln!("mounts left by the immediate exit (the scratch guard undoes them): {left:?}");
}

/// SIGINT while the tarball is written (xz keeps that stage long enough to be caught in it):
/// no tarball, no temporary file beside it, no build directory.
#[test]
fn real_archive_root_sigint_while_the_tarball_is_written_leaves_no_file() {
    let Some(mirror) = prerequisites() else {
        return;
    };
    let dir = Scratch::new();
    let target = dir.path().join("root.tar.xz");
    let outcome = signal_during(
        &dir,
        &mirror,
        &["--no-onion", "--source-date-epoch", "1700000000"],
        &target,
        "writing the output",
        false,
        &[Signal::INT],
    );
    assert_clean_interruption(&dir, &outcome);
}

/// SIGINT once the onion stage has begun (the default build, host files under a test-owned
/// `--host-root` holding a hand-written torrc): exit 130, nothing left beside TARGET, and the
/// host root exactly as it was, torrc bytes included.
#[test]
fn real_archive_root_sigint_during_the_onion_stage_leaves_the_host_root_as_it_was() {
    let Some(mirror) = prerequisites() else {
        return;
    };
    let dir = Scratch::new();
    let host_dir = Scratch::new();
    let host = host_dir.path().join("host");
    fs_err::create_dir_all(host.join("etc/tor")).expect("mkdir");
    fs_err::write(
        host.join("etc/tor/torrc"),
        "# the operator's own\nLog notice syslog\n",
    )
    .expect("torrc");
    fs_err::create_dir_all(host.join("var/lib")).expect("mkdir");
    let before = support::tree::snapshot(&host);
    let target = dir.path().join("target");
    let host_arg = host.to_string_lossy().into_owned();
    let outcome = signal_during(
        &dir,
        &mirror,
        &["--name", "sigint", "--host-root", &host_arg],
        &target,
        "setting up the onion service",
        false,
        &[Signal::INT],
    );
    assert_clean_interruption(&dir, &outcome);
    let diffs = support::tree::differences(&support::tree::snapshot(&host), &before);
    assert!(
        diffs.is_empty(),
        "the host root was left changed: {diffs:#?}"
    );
}
