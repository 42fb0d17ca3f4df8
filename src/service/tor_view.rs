//! What a running tor has loaded: takes HOST_ROOT; gives the onion service directories of the
//! configuration tor runs with now (not the torrc on disk, which may be newer), read through the
//! control socket Debian's tor opens by default (`ControlSocket /run/tor/control` with cookie
//! authentication in /usr/share/tor/tor-service-defaults-torrc), so nothing of ours has to be
//! set up in tor for it.

use std::io::{BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Debian's tor control socket, as seen from `/`.
pub const CONTROL_SOCKET: &str = "/run/tor/control";
/// Debian's tor control cookie, as seen from `/`.
pub const COOKIE_FILE: &str = "/run/tor/control.authcookie";

/// Tor's side of the services, for `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorView {
    /// Nothing answers on HOST_ROOT's control socket (and, for `/`, no tor process runs).
    NotRunning,
    /// Tor runs with these `HiddenServiceDir`s loaded (trailing `/` removed).
    Loaded(Vec<PathBuf>),
    /// Tor runs, but its loaded configuration could not be read: why.
    Unreadable(String),
}

impl TorView {
    /// Whether tor has NAME's directory loaded; `None` when that cannot be known.
    pub fn has(&self, dir: &Path) -> Option<bool> {
        match self {
            TorView::Loaded(dirs) => Some(dirs.iter().any(|d| same_dir(d, dir))),
            TorView::NotRunning | TorView::Unreadable(_) => None,
        }
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let trim = |p: &Path| p.to_string_lossy().trim_end_matches('/').to_string();
    trim(a) == trim(b)
}

/// Asks the tor whose control socket is HOST_ROOT/run/tor/control for the onion services it
/// has loaded (`GETCONF HiddenServiceOptions`), authenticating with the cookie beside it.
pub fn view(host_root: &Path, host_tor_runs: impl FnOnce() -> bool) -> TorView {
    let socket = host_root.join(CONTROL_SOCKET.trim_start_matches('/'));
    let stream = match UnixStream::connect(&socket) {
        Ok(stream) => stream,
        Err(err) => {
            return if host_tor_runs() {
                TorView::Unreadable(format!("no control socket at {}: {err}", socket.display()))
            } else {
                TorView::NotRunning
            };
        }
    };
    let cookie = host_root.join(COOKIE_FILE.trim_start_matches('/'));
    match loaded_dirs(stream, &cookie) {
        Ok(dirs) => TorView::Loaded(dirs),
        Err(why) => TorView::Unreadable(why),
    }
}

fn loaded_dirs(stream: UnixStream, cookie: &Path) -> Result<Vec<PathBuf>, String> {
    let timeout = Some(Duration::from_secs(5));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let cookie = fs_err::read(cookie).map_err(|e| e.to_string())?;
    let hex: String = cookie.iter().map(|b| format!("{b:02x}")).collect();
    let mut ask = |command: &str| -> Result<Vec<String>, String> {
        writer
            .write_all(format!("{command}\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        reply(&mut reader)
    };
    ask(&format!("AUTHENTICATE {hex}"))?;
    let lines = ask("GETCONF HiddenServiceOptions")?;
    let _ = ask("QUIT");
    Ok(lines
        .iter()
        .filter_map(|line| line.strip_prefix("HiddenServiceDir="))
        .map(|value| {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            PathBuf::from(value.trim_end_matches('/'))
        })
        .collect())
}

/// One reply of the control protocol: its lines without the `250-`/`250 ` prefix, or tor's
/// error line.
fn reply(reader: &mut impl std::io::BufRead) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("tor closed the control connection".to_string());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let (code, rest) = line.split_at(line.len().min(3));
        if code != "250" {
            return Err(format!("tor answered {line:?}"));
        }
        let mut chars = rest.chars();
        let separator = chars.next();
        lines.push(chars.as_str().to_string());
        if separator == Some(' ') {
            return Ok(lines);
        }
    }
}

impl std::fmt::Display for TorView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TorView::NotRunning => write!(f, "tor not running"),
            TorView::Loaded(dirs) => write!(f, "tor runs with {} onion services", dirs.len()),
            TorView::Unreadable(why) => write!(f, "tor runs; its configuration is unknown ({why})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_reads_a_multi_line_answer_and_refuses_an_error() {
        let text = "250-HiddenServiceDir=/var/lib/tor/a/\r\n250-HiddenServicePort=80 unix:/x\r\n\
                    250 HiddenServiceDir=\"/var/lib/tor/b\"\r\n";
        let lines = reply(&mut text.as_bytes()).expect("reply");
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "HiddenServiceDir=/var/lib/tor/a/");
        let err = reply(&mut "515 Authentication failed\r\n".as_bytes()).expect_err("error");
        assert!(err.contains("515"), "{err}");
        let view = TorView::Loaded(vec![PathBuf::from("/var/lib/tor/a")]);
        assert_eq!(view.has(Path::new("/var/lib/tor/a/")), Some(true));
        assert_eq!(view.has(Path::new("/var/lib/tor/ab")), Some(false));
        assert_eq!(TorView::NotRunning.has(Path::new("/var/lib/tor/a")), None);
    }
}
