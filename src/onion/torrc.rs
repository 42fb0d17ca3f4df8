//! The host's torrc entry: takes NAME and the ports, gives HOST_ROOT/etc/tor/torrc with one
//! marked block for NAME (replaced on every run; other content and other NAMEs' blocks kept).

use std::path::{Path, PathBuf};

use super::files;
use super::host::HostChanges;
use super::hsdir::service_dir;
use super::OnionError;

/// The host's torrc, as seen from `/`.
pub const TORRC: &str = "/etc/tor/torrc";

/// Why a torrc cannot be updated safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TorrcProblem {
    #[error("line {line}: {marker:?} has no matching END line")]
    UnclosedBlock { line: usize, marker: String },
    #[error("line {line}: {marker:?} has no matching BEGIN line")]
    StrayEnd { line: usize, marker: String },
    #[error(
        "line {line}: {text:?} already configures this service directory outside a \
         debstrap-onion block; remove it (the block written for it replaces it)"
    )]
    Duplicate { line: usize, text: String },
    #[error("the file is not UTF-8")]
    NotUtf8,
}

fn begin_marker(name: &str) -> String {
    format!("# BEGIN debstrap-onion {name}")
}

fn end_marker(name: &str) -> String {
    format!("# END debstrap-onion {name}")
}

/// The marked block for NAME, sending the onion port to `target` (`unix:PATH` or
/// `127.0.0.1:PORT`).
pub fn block(name: &str, onion_port: u16, target: &str) -> String {
    format!(
        "{begin}\n\
         # Onion service of the chroot {name}; debstrap-onion rewrites this block on every build.\n\
         HiddenServiceDir {dir}/\n\
         HiddenServicePort {onion_port} {target}\n\
         {end}\n",
        begin = begin_marker(name),
        dir = service_dir(name).display(),
        end = end_marker(name),
    )
}

/// `text` with NAME's block replaced by `block` (in place of the first one), or appended.
pub fn update(text: &str, name: &str, block: &str) -> Result<String, TorrcProblem> {
    let begin = begin_marker(name);
    let end = end_marker(name);
    let dir = service_dir(name);
    let dir = dir.to_string_lossy();
    let mut out = String::with_capacity(text.len() + block.len() + 1);
    let mut inserted = false;
    let mut open: Option<usize> = None;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        if open.is_some() {
            if trimmed == end {
                open = None;
            }
            continue;
        }
        if trimmed == begin {
            open = Some(number);
            if !inserted {
                out.push_str(block);
                inserted = true;
            }
            continue;
        }
        if trimmed == end {
            return Err(TorrcProblem::StrayEnd {
                line: number,
                marker: end,
            });
        }
        if configures_dir(trimmed, &dir) {
            return Err(TorrcProblem::Duplicate {
                line: number,
                text: trimmed.to_string(),
            });
        }
        out.push_str(line);
    }
    if let Some(line) = open {
        return Err(TorrcProblem::UnclosedBlock {
            line,
            marker: begin,
        });
    }
    if !inserted {
        if !out.is_empty() {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            if !out.ends_with("\n\n") {
                out.push('\n');
            }
        }
        out.push_str(block);
    }
    Ok(out)
}

/// `text` without NAME's block (`None` when it has none): every other byte is kept, except the
/// blank line [`update`] puts before a block it appends (dropped when the block ends the file or
/// is followed by another blank line, as an appended block is).
pub fn without(text: &str, name: &str) -> Result<Option<String>, TorrcProblem> {
    let begin = begin_marker(name);
    let end = end_marker(name);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut keep = vec![true; lines.len()];
    let mut found = false;
    let mut index = 0;
    while index < lines.len() {
        let trimmed = lines[index].trim();
        if trimmed == end {
            return Err(TorrcProblem::StrayEnd {
                line: index + 1,
                marker: end,
            });
        }
        if trimmed != begin {
            index += 1;
            continue;
        }
        found = true;
        let start = index;
        let close = lines[start..]
            .iter()
            .position(|line| line.trim() == end)
            .map(|offset| start + offset)
            .ok_or(TorrcProblem::UnclosedBlock {
                line: start + 1,
                marker: begin.clone(),
            })?;
        keep[start..=close].iter_mut().for_each(|k| *k = false);
        let followed_by_blank = lines.get(close + 1).is_none_or(|l| l.trim().is_empty());
        if start > 0 && keep[start - 1] && lines[start - 1].trim().is_empty() && followed_by_blank {
            keep[start - 1] = false;
        } else if start == 0 && lines.get(close + 1).is_some() && followed_by_blank {
            // The first block of a file was written without a separator; the next one has it.
            keep[close + 1] = false;
        }
        index = close + 1;
    }
    if !found {
        return Ok(None);
    }
    Ok(Some(
        lines
            .iter()
            .zip(keep)
            .filter(|(_, keep)| *keep)
            .map(|(line, _)| *line)
            .collect(),
    ))
}

/// Removes NAME's block from HOST_ROOT/etc/tor/torrc in one rename, keeping the file's mode and
/// owner; returns whether there was one. The caller holds the host lock.
pub(crate) fn remove(host_root: &Path, name: &str) -> Result<bool, OnionError> {
    let path = torrc_path(host_root)?;
    let write_error = |source| OnionError::WriteTorrc {
        path: path.clone(),
        source,
    };
    let Some(bytes) = files::read_optional(&path).map_err(write_error)? else {
        return Ok(false);
    };
    let text = String::from_utf8(bytes).map_err(|_| OnionError::Torrc {
        path: path.clone(),
        problem: TorrcProblem::NotUtf8,
    })?;
    let Some(new) = without(&text, name).map_err(|problem| OnionError::Torrc {
        path: path.clone(),
        problem,
    })?
    else {
        return Ok(false);
    };
    files::replace_keeping_perms(&path, new.as_bytes(), 0o644).map_err(write_error)?;
    Ok(true)
}

/// Whether the torrc at HOST_ROOT has a block for NAME.
pub(crate) fn has_block(host_root: &Path, name: &str) -> bool {
    let path = host_root.join(TORRC.trim_start_matches('/'));
    fs_err::read_to_string(path).is_ok_and(|text| {
        let begin = begin_marker(name);
        text.lines().any(|line| line.trim() == begin)
    })
}

/// Whether a torrc line is `HiddenServiceDir DIR` (tor's keywords are case-insensitive).
fn configures_dir(line: &str, dir: &str) -> bool {
    let mut words = line.split_whitespace();
    let keyword = words.next().unwrap_or_default();
    let value = words.next().unwrap_or_default();
    keyword.eq_ignore_ascii_case("HiddenServiceDir")
        && value.trim_end_matches('/') == dir.trim_end_matches('/')
}

/// Debian's defaults file, read by its tor before torrc (`User debian-tor`, ...).
pub const TOR_DEFAULTS: &str = "/usr/share/tor/tor-service-defaults-torrc";

fn torrc_path(host_root: &Path) -> Result<PathBuf, OnionError> {
    let path = host_root.join(TORRC.trim_start_matches('/'));
    if let Ok(meta) = fs_err::symlink_metadata(&path) {
        if meta.file_type().is_symlink() {
            return Err(OnionError::SymlinkRefused { path });
        }
    }
    Ok(path)
}

/// The torrc's text now (`None` when absent) and with NAME's block.
fn updated(
    path: &Path,
    name: &str,
    onion_port: u16,
    target: &str,
) -> Result<(Option<String>, String), OnionError> {
    let old = files::read_optional(path).map_err(|source| OnionError::WriteTorrc {
        path: path.to_path_buf(),
        source,
    })?;
    let old = old
        .map(|bytes| {
            String::from_utf8(bytes).map_err(|_| OnionError::Torrc {
                path: path.to_path_buf(),
                problem: TorrcProblem::NotUtf8,
            })
        })
        .transpose()?;
    let new = update(
        old.as_deref().unwrap_or(""),
        name,
        &block(name, onion_port, target),
    )
    .map_err(|problem| OnionError::Torrc {
        path: path.to_path_buf(),
        problem,
    })?;
    Ok((old, new))
}

/// Checks, changing nothing, that NAME's block can go into HOST_ROOT/etc/tor/torrc.
pub(crate) fn check(
    host_root: &Path,
    name: &str,
    onion_port: u16,
    target: &str,
) -> Result<(), OnionError> {
    updated(&torrc_path(host_root)?, name, onion_port, target).map(drop)
}

/// Writes NAME's block into HOST_ROOT/etc/tor/torrc (created if absent), in one rename, and
/// only when its text changes; when tor is installed the new file must first pass
/// `tor --verify-config` with Debian's defaults. The caller holds the host lock (see
/// [`super::host::lock`]), so two builds never lose each other's block.
pub(crate) fn write(
    host_root: &Path,
    name: &str,
    (onion_port, target): (u16, &str),
    changes: &mut HostChanges,
) -> Result<PathBuf, OnionError> {
    let path = torrc_path(host_root)?;
    let write_error = |source| OnionError::WriteTorrc {
        path: path.clone(),
        source,
    };
    let dir = path.parent().unwrap_or(host_root).to_path_buf();
    changes.before_write(host_root, &dir).map_err(write_error)?;
    files::create_dir_all_mode(&dir, 0o755).map_err(write_error)?;
    let (old, new) = updated(&path, name, onion_port, target)?;
    if old.as_deref() != Some(new.as_str()) {
        verify_with_tor(&dir, &path, &rebased_for_check(&new, host_root))?;
        changes
            .before_write(host_root, &path)
            .map_err(write_error)?;
        files::replace_keeping_perms(&path, new.as_bytes(), 0o644).map_err(write_error)?;
    }
    Ok(path)
}

/// The torrc text tor checks. A rootless build cannot read the host's /var/lib/tor (another
/// user's, beyond its namespace), so there each HiddenServiceDir that exists under `host_root`
/// (the one it wrote) is checked there instead: tor still sees the key directory it will use.
fn rebased_for_check(text: &str, host_root: &Path) -> String {
    if !crate::userns::inside() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let rebased = line
            .strip_prefix("HiddenServiceDir ")
            .map(|dir| host_root.join(dir.trim().trim_start_matches('/')))
            .filter(|dir| dir.is_dir());
        match rebased {
            Some(dir) => out.push_str(&format!("HiddenServiceDir {}/\n", dir.display())),
            None => out.push_str(line),
        }
    }
    out
}

/// Runs `tor --verify-config` on `text` (as a file beside the torrc) when tor and Debian's
/// defaults file are installed; a refusal is an error showing tor's words.
fn verify_with_tor(dir: &Path, path: &Path, text: &str) -> Result<(), OnionError> {
    let Some(tor) = find_program("tor") else {
        tracing::info!(
            "tor is not installed: the new torrc is not checked with tor --verify-config"
        );
        return Ok(());
    };
    if fs_err::symlink_metadata(TOR_DEFAULTS).is_err() {
        tracing::info!("{TOR_DEFAULTS} is missing: the new torrc is not checked by tor");
        return Ok(());
    }
    let write_error = |source| OnionError::WriteTorrc {
        path: path.to_path_buf(),
        source,
    };
    let mut candidate = tempfile::Builder::new()
        .prefix(".torrc.debstrap-onion.")
        .tempfile_in(dir)
        .map_err(write_error)?;
    std::io::Write::write_all(&mut candidate, text.as_bytes()).map_err(write_error)?;
    // Rootless, the key directory is the caller's, not debian-tor's as Debian's defaults
    // (`User debian-tor`) make tor demand, and the host's DataDirectory is out of reach: the
    // check reads a copy of the defaults without the User line and with a data directory of
    // its own.
    let data_dir = if crate::userns::inside() {
        Some(
            tempfile::Builder::new()
                .prefix(".tor-data.debstrap-onion.")
                .tempdir_in(dir)
                .map_err(write_error)?,
        )
    } else {
        None
    };
    let defaults_copy = if let Some(data_dir) = &data_dir {
        let defaults = fs_err::read_to_string(TOR_DEFAULTS).map_err(write_error)?;
        let kept: String = defaults
            .split_inclusive('\n')
            .filter(|line| !line.trim_start().starts_with("User "))
            .map(|line| {
                if line.trim_start().starts_with("DataDirectory ") {
                    format!("DataDirectory {}\n", data_dir.path().display())
                } else {
                    line.to_owned()
                }
            })
            .collect();
        let mut copy = tempfile::Builder::new()
            .prefix(".tor-defaults.debstrap-onion.")
            .tempfile_in(dir)
            .map_err(write_error)?;
        std::io::Write::write_all(&mut copy, kept.as_bytes()).map_err(write_error)?;
        Some(copy)
    } else {
        None
    };
    let defaults = defaults_copy
        .as_ref()
        .map_or(Path::new(TOR_DEFAULTS), |copy| copy.path());
    let command = format!(
        "tor --verify-config --defaults-torrc {} -f {}",
        defaults.display(),
        candidate.path().display()
    );
    let output = super::host::run_host(
        &command,
        std::process::Command::new(tor)
            .args(["--verify-config", "--defaults-torrc"])
            .arg(defaults)
            .arg("-f")
            .arg(candidate.path()),
    )?;
    if output.status.success() {
        return Ok(());
    }
    let mut said = String::from_utf8_lossy(&output.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&output.stderr));
    let tail: Vec<&str> = said.lines().rev().take(5).collect();
    Err(OnionError::TorrcRejected {
        path: path.to_path_buf(),
        output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

/// `tor --verify-config` with Debian's defaults on the torrc at `path`: `Ok`, or tor's last
/// words; `None` when tor or the defaults file is not installed.
pub(crate) fn verify_file(path: &Path) -> Option<Result<(), String>> {
    let tor = find_program("tor")?;
    fs_err::symlink_metadata(TOR_DEFAULTS).ok()?;
    let output = std::process::Command::new(tor)
        .args(["--verify-config", "--defaults-torrc", TOR_DEFAULTS, "-f"])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output();
    Some(match output {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => {
            let said = String::from_utf8_lossy(&out.stdout);
            Err(said.lines().last().unwrap_or_default().to_string())
        }
        Err(e) => Err(e.to_string()),
    })
}

/// `program` on PATH, if there.
fn find_program(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_LIKE: &str = "## Configuration file for a typical Tor user\n\
        #SocksPort 9050\n\
        #HiddenServiceDir /var/lib/tor/hidden_service/\n\
        Log notice file /var/log/tor/notices.log\n";

    #[test]
    fn block_names_the_service_dir_and_ports() {
        insta::assert_snapshot!(block("onion", 80, "127.0.0.1:2001"), @r"
        # BEGIN debstrap-onion onion
        # Onion service of the chroot onion; debstrap-onion rewrites this block on every build.
        HiddenServiceDir /var/lib/tor/onion/
        HiddenServicePort 80 127.0.0.1:2001
        # END debstrap-onion onion
        ");
    }

    #[test]
    fn two_runs_leave_one_block_and_keep_other_content() {
        let once =
            update(DEBIAN_LIKE, "onion", &block("onion", 80, "127.0.0.1:2001")).expect("first");
        let twice = update(&once, "onion", &block("onion", 80, "127.0.0.1:2001")).expect("second");
        assert_eq!(once, twice);
        assert!(once.starts_with(DEBIAN_LIKE));
        assert_eq!(once.matches("# BEGIN debstrap-onion onion").count(), 1);
    }

    #[test]
    fn rerun_with_new_ports_replaces_the_block_in_place() {
        let text = format!(
            "a\n{}b\n",
            block("onion", 80, "127.0.0.1:2001") // block, then other content after it
        );
        let updated =
            update(&text, "onion", &block("onion", 8080, "127.0.0.1:2002")).expect("update");
        assert_eq!(
            updated,
            format!("a\n{}b\n", block("onion", 8080, "127.0.0.1:2002"))
        );
    }

    #[test]
    fn two_names_coexist() {
        let one = update("", "one", &block("one", 80, "127.0.0.1:2001")).expect("one");
        let both = update(&one, "two", &block("two", 80, "127.0.0.1:2002")).expect("two");
        let again = update(&both, "one", &block("one", 80, "127.0.0.1:2001")).expect("one again");
        assert_eq!(both, again);
        assert!(both.contains("HiddenServiceDir /var/lib/tor/one/"));
        assert!(both.contains("HiddenServiceDir /var/lib/tor/two/"));
    }

    #[test]
    fn removing_a_block_gives_back_the_text_before_it() {
        let b = |name| block(name, 80, "unix:/srv/chroot/x/run/onion/nginx.sock");
        for original in [DEBIAN_LIKE, "", "Log notice syslog"] {
            let with = update(original, "onion", &b("onion")).expect("update");
            let back = without(&with, "onion").expect("remove").expect("found");
            let expected = if original.is_empty() || original.ends_with('\n') {
                original.to_string()
            } else {
                format!("{original}\n")
            };
            assert_eq!(back, expected);
            // Between two other blocks, only this one goes.
            let three = update(&with, "two", &b("two")).expect("two");
            let three = update(&three, "onion", &b("onion")).expect("again");
            let rest = without(&three, "onion").expect("remove").expect("found");
            assert_eq!(rest, update(original, "two", &b("two")).expect("two only"));
        }
        assert_eq!(without(DEBIAN_LIKE, "onion"), Ok(None));
    }

    #[test]
    fn file_without_final_newline_gets_a_separator() {
        let updated = update("Log notice syslog", "onion", "BLOCK\n").expect("update");
        assert_eq!(updated, "Log notice syslog\n\nBLOCK\n");
    }

    #[test]
    fn broken_markers_and_duplicates_are_refused() {
        let b = block("onion", 80, "127.0.0.1:2001");
        let unclosed = b.replace("# END debstrap-onion onion\n", "");
        assert!(matches!(
            update(&unclosed, "onion", &b),
            Err(TorrcProblem::UnclosedBlock { line: 1, .. })
        ));
        assert!(matches!(
            update("# END debstrap-onion onion\n", "onion", &b),
            Err(TorrcProblem::StrayEnd { line: 1, .. })
        ));
        assert!(matches!(
            update("hiddenservicedir /var/lib/tor/onion\n", "onion", &b),
            Err(TorrcProblem::Duplicate { line: 1, .. })
        ));
        // Another name's directory, and comments, are not duplicates.
        update(
            "HiddenServiceDir /var/lib/tor/onion2/\n#HiddenServiceDir /var/lib/tor/onion/\n",
            "onion",
            &b,
        )
        .expect("no conflict");
    }
}
