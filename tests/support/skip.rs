//! The suite's one rule for a missing prerequisite (root, a host program, a mirror): under a
//! truthy `CI` the test fails; otherwise it passes without running its checks. Either way one
//! line is appended to the skip record, which `.ci/run` prints after the test command, so a
//! skip is seen in the run's summary rather than only in a passing test's captured stderr.
//!
//! Integration tests reach this through `support::host`; the library's unit tests include this
//! same file by path (`src/lib.rs`), so both follow one rule.

use std::io::Write as _;
use std::path::PathBuf;

/// The variable naming the skip record; unset, it is `test-skips.txt` in the target directory.
pub const SKIPS_VAR: &str = "DEBSTRAP_TEST_SKIPS";

/// Whether `value` of `CI` means "this is CI": anything but empty, `0`, `false`, `no`, `off`.
pub fn truthy(value: &str) -> bool {
    !matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "" | "0" | "false" | "no" | "off"
    )
}

/// Whether this run is CI's, where every prerequisite must be present.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| truthy(&v))
}

/// The skip record: `$DEBSTRAP_TEST_SKIPS`, else `test-skips.txt` in the target directory the
/// test binary runs from (`<target>/<profile>/deps/<binary>`).
pub fn skips_file() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(SKIPS_VAR).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("test-skips.txt"))
}

/// Records that the running test lacks `what`: fails it under CI, else skips it with a line.
pub fn missing(what: &str) {
    let test = std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .map(str::to_owned)
        .or_else(|| std::env::args().next())
        .unwrap_or_else(|| "a test".to_owned());
    let ci = in_ci();
    let verdict = if ci { "FAILED (CI is set)" } else { "skipped" };
    record(&format!("{verdict}: {test}: {what} is missing"));
    assert!(!ci, "CI is set and {what} is missing, so {test} cannot run");
    eprintln!("skipped {test}: {what} is missing");
}

/// Whether the test runs as root; if not, [`missing`] decides between skip and failure.
pub fn require_root() -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        missing("root");
    }
    root
}

/// Appends one line to the skip record; a record that cannot be written is said on stderr.
fn record(line: &str) {
    let Some(path) = skips_file() else {
        eprintln!("{line} (no skip record: the test binary's path is unknown)");
        return;
    };
    // One write of one short line with O_APPEND: concurrent tests do not interleave.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
    if let Err(err) = written {
        eprintln!("{line} (cannot append to {}: {err})", path.display());
    }
}
