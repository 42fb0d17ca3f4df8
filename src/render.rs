//! Terminal rendering: progress bars on a terminal (plain lines otherwise), the build's report,
//! and errors with what cleanup did.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use debstrap_onion::config::{BuildConfig, Output, StopAfter};
use debstrap_onion::progress::{Counter, Reporter, Stage};
use debstrap_onion::userns;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::EXIT_INTERRUPTED;

/// Prints what a build produced.
pub(crate) fn print_report(
    config: &BuildConfig,
    report: &debstrap_onion::BuildReport,
    progress: &Progress,
) {
    if config.stop_after == StopAfter::PrintPackages {
        for (name, version) in &report.packages {
            println!("{name} {version}");
        }
        return;
    }
    // The onion report is the build's result, printed even with --quiet; it goes to stderr
    // when the tarball itself is on stdout.
    if let Some(onion) = &report.onion {
        if matches!(config.output, Output::Stdout { .. }) {
            eprintln!("{onion}");
        } else {
            println!("{onion}");
        }
    }
    if userns::inside() {
        for line in rootless_notes(config, report) {
            eprintln!("{line}");
        }
    }
    if progress.quiet {
        return;
    }
    let total: Duration = report.timings.iter().map(|(_, d)| *d).sum();
    let stages: Vec<String> = report
        .timings
        .iter()
        .map(|(stage, d)| format!("{} {:.1}s", stage.name(), d.as_secs_f64()))
        .collect();
    eprintln!(
        "done in {:.1}s ({}): {} packages",
        total.as_secs_f64(),
        stages.join(", "),
        report.packages.len()
    );
    if let Some(target) = &report.target {
        eprintln!("output: {}", target.display());
    }
}

/// What the user of a rootless build does next: the files belong to their subordinate ids, and
/// host-side onion files wait under --host-root for an admin.
fn rootless_notes(config: &BuildConfig, report: &debstrap_onion::BuildReport) -> Vec<String> {
    let mut lines = Vec::new();
    if let (Output::Directory(dir), Some(_)) = (&config.output, &report.target) {
        let dir = dir.display();
        lines.push(format!(
            "rootless: {dir} belongs to your subordinate ids; enter it with `unshare --map-auto \
             --map-root-user --mount --pid --fork chroot {dir} /bin/bash`, pack or remove it \
             the same way (`unshare --map-auto --map-root-user rm -rf {dir}`)"
        ));
    }
    if let (Some(onion), Some(host_root)) = (&report.onion, &config.onion.host_root) {
        let (name, host) = (&config.name, host_root.display());
        lines.push(format!(
            "rootless: this host was not changed; to publish {} here, as root: append the \
             `debstrap-onion {name}` block of {host}/etc/tor/torrc to /etc/tor/torrc, copy \
             {host}/var/lib/tor/{name} to /var/lib/tor/{name} (then `chown -R \
             debian-tor:debian-tor /var/lib/tor/{name}`), copy {host}/etc/schroot and \
             {host}/etc/systemd/system into /etc, and reload tor",
            onion.address
        ));
    }
    lines
}

/// Prints the error's first line, then its causes, and returns `code`.
pub(crate) fn fail(progress: &Progress, err: &anyhow::Error, code: u8) -> ExitCode {
    progress.clear();
    let mut chain = err.chain();
    if let Some(first) = chain.next() {
        eprintln!("error: {first}");
    }
    for cause in chain {
        eprintln!("  caused by: {cause}");
    }
    let cleanup = cleanup_lines(
        code == EXIT_INTERRUPTED,
        &debstrap_onion::cancel::leftovers(),
        &debstrap_onion::cancel::moved(),
    );
    for line in cleanup {
        eprintln!("{line}");
    }
    ExitCode::from(code)
}

/// What cleanup did, after any failure: removal is claimed only on an interrupt where nothing
/// was left behind; whatever was left (partial output, host files not restored, a build
/// directory someone moved) is named on every path.
fn cleanup_lines(interrupted: bool, left: &[PathBuf], moved: &[PathBuf]) -> Vec<String> {
    let mut lines = Vec::new();
    for path in moved {
        lines.push(format!(
            "the build directory was moved away from {} during the build: it was not removed, \
             and what is at that path now is not this build's; find the moved directory and \
             remove it by hand",
            path.display()
        ));
    }
    if !left.is_empty() {
        let shown: Vec<String> = left.iter().map(|p| p.display().to_string()).collect();
        lines.push(format!(
            "{}: cleanup incomplete, NOT removed or NOT restored: {} (check and clean up by hand)",
            if interrupted { "interrupted" } else { "failed" },
            shown.join(", ")
        ));
    } else if interrupted && moved.is_empty() {
        lines.push("interrupted: mounts undone and partial output removed".to_string());
    }
    lines
}

/// Renders the pipeline's progress: bars on a terminal, plain lines otherwise.
pub(crate) struct Progress {
    multi: MultiProgress,
    bars: Mutex<Vec<(Counter, ProgressBar)>>,
    last_stage: Mutex<Option<Stage>>,
    terminal: bool,
    pub(crate) quiet: bool,
    /// mmdebstrap's verbosity level, for hooks: 0 quiet, 1 normal, 2 verbose, 3 debug.
    pub(crate) verbosity: u8,
}

impl Progress {
    pub(crate) fn new(quiet: bool, verbose: u8) -> Progress {
        use tracing_subscriber::prelude::*;
        let terminal = std::io::stderr().is_terminal() && !quiet;
        let multi = MultiProgress::with_draw_target(if terminal {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let level = match (quiet, verbose) {
            (true, _) => "error",
            (_, 0) => "warn",
            (_, 1) => "info",
            _ => "debug",
        };
        let filter =
            tracing_subscriber::EnvFilter::try_from_env("DEBSTRAP_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(format!("debstrap_onion={level},warn"))
            });
        let writer = LogWriter {
            multi: multi.clone(),
            terminal,
        };
        tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .without_time()
                    .with_ansi(terminal)
                    .with_writer(move || writer.clone()),
            )
            .init();
        Progress {
            multi,
            bars: Mutex::new(Vec::new()),
            last_stage: Mutex::new(None),
            terminal,
            quiet,
            verbosity: if quiet { 0 } else { 1 + verbose.min(2) },
        }
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        if self.terminal {
            let _ = self.multi.println(text);
        } else {
            eprintln!("{text}");
        }
    }

    pub(crate) fn clear(&self) {
        for (_, bar) in self.bars.lock().expect("progress lock").drain(..) {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }

    fn bar(&self, counter: Counter) -> Option<ProgressBar> {
        let bars = self.bars.lock().expect("progress lock");
        bars.iter()
            .find(|(c, _)| *c == counter)
            .map(|(_, bar)| bar.clone())
    }
}

impl Reporter for Progress {
    fn stage(&self, stage: Stage) {
        let mut last = self.last_stage.lock().expect("progress lock");
        if *last != Some(stage) {
            *last = Some(stage);
            self.line(&format!("==> {}", stage_title(stage)));
        }
    }

    fn start(&self, counter: Counter, total: u64) {
        let style = match counter {
            Counter::DownloadBytes => "  {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            Counter::Unpacked => "  {bar:30} {pos}/{len} packages unpacked",
            Counter::Configured => "  {bar:30} {pos}/{len} packages configured",
        };
        // Off a terminal the bar is hidden but still counts, for the summary line.
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(ProgressStyle::with_template(style).expect("the template is valid"));
        self.bars
            .lock()
            .expect("progress lock")
            .push((counter, bar));
    }

    fn advance(&self, counter: Counter, n: u64) {
        if let Some(bar) = self.bar(counter) {
            bar.inc(n);
        }
    }

    fn finish(&self, counter: Counter) {
        let mut bars = self.bars.lock().expect("progress lock");
        if let Some(i) = bars.iter().position(|(c, _)| *c == counter) {
            let (_, bar) = bars.remove(i);
            let summary = match counter {
                Counter::DownloadBytes => format!(
                    "  {} fetched or verified in the cache",
                    indicatif::HumanBytes(bar.position())
                ),
                Counter::Unpacked => format!("  {} packages unpacked", bar.position()),
                Counter::Configured => format!("  {} packages configured", bar.position()),
            };
            bar.finish_and_clear();
            drop(bars);
            self.line(&summary);
        }
    }
}

fn stage_title(stage: Stage) -> &'static str {
    match stage {
        Stage::Index => "verifying the Release and fetching Packages indices",
        Stage::Resolve => "resolving the package set",
        Stage::Download => "downloading packages",
        Stage::Unpack => "unpacking packages",
        Stage::Configure => "configuring packages in the chroot",
        Stage::Onion => "setting up the onion service",
        Stage::Output => "writing the output",
    }
}

/// Sends log lines through the progress bars so they do not tear them.
#[derive(Clone)]
struct LogWriter {
    multi: MultiProgress,
    terminal: bool,
}

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.terminal {
            let text = String::from_utf8_lossy(buf);
            self.multi.println(text.trim_end()).map(|()| buf.len())
        } else {
            std::io::stderr().write(buf)
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_is_claimed_only_when_nothing_was_left() {
        let left = [PathBuf::from("/srv/.target.build-x")];
        let moved = [PathBuf::from("/srv/.target.build-y")];
        assert_eq!(
            cleanup_lines(true, &[], &[]),
            ["interrupted: mounts undone and partial output removed"]
        );
        // Nothing is claimed after other failures; what was left is named there too.
        assert!(cleanup_lines(false, &[], &[]).is_empty());
        for interrupted in [true, false] {
            let lines = cleanup_lines(interrupted, &left, &[]).join("\n");
            assert!(lines.contains("NOT removed") && lines.contains("/srv/.target.build-x"));
            assert!(!lines.contains("partial output removed"), "{lines}");
            let lines = cleanup_lines(interrupted, &[], &moved).join("\n");
            assert!(
                lines.contains("moved away from /srv/.target.build-y"),
                "{lines}"
            );
            assert!(!lines.contains("partial output removed"), "{lines}");
        }
    }
}
