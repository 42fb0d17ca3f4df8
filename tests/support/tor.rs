//! Real tor, offline: started with DisableNetwork 1 and SocksPort 0 on a copy of an onion key
//! directory, it rewrites `hostname` from the key, which a test compares with ours.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::host::missing;

/// Kills and reaps a child process when dropped, so a failing test leaves no tor behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The tor binary (also looked for in /usr/sbin), or `None` outside CI when it is missing.
pub fn tor_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
            .map(|dir| dir.join("tor"))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        missing("the tor binary (apt-get install tor)");
    }
    found
}

/// The `hostname` real tor writes for the secret and public key files in `key_dir`, read from
/// a private copy without a hostname (so what appears is tor's own work); `None` when tor is
/// missing outside CI. Panics if tor exits or writes nothing within 60 s.
pub fn hostname_from_real_tor(key_dir: &Path) -> Option<String> {
    run_service(key_dir).map(|(hostname, _)| hostname)
}

/// Real tor run offline on a copy of `key_dir` with its `authorized_clients`: the `hostname` it
/// writes and its whole log (notice level). Tor loads the clients' keys in the same step as
/// the service key, before its main loop runs: the SIGTERM sent once `hostname` exists is
/// handled only after that, so the log is complete. `None` when tor is missing outside CI.
pub fn run_service(key_dir: &Path) -> Option<(String, String)> {
    let tor = tor_binary()?;
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let hs = data.join("hs");
    fs_err::create_dir_all(&hs).expect("mkdir");
    for dir in [work.path(), &data, &hs] {
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    for file in ["hs_ed25519_secret_key", "hs_ed25519_public_key"] {
        fs_err::copy(key_dir.join(file), hs.join(file)).expect("copy key file");
        fs_err::set_permissions(hs.join(file), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
    }
    let clients = key_dir.join("authorized_clients");
    if clients.is_dir() {
        let copy = hs.join("authorized_clients");
        fs_err::create_dir(&copy).expect("mkdir");
        fs_err::set_permissions(&copy, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        for entry in fs_err::read_dir(&clients).expect("read authorized_clients") {
            let entry = entry.expect("entry");
            fs_err::copy(entry.path(), copy.join(entry.file_name())).expect("copy client");
        }
    }
    let torrc = work.path().join("torrc");
    fs_err::write(&torrc, "").expect("empty torrc");
    let log = work.path().join("log");
    let child = Command::new(tor)
        .arg("-f")
        .arg(&torrc)
        .arg("--defaults-torrc")
        .arg(&torrc)
        .args([
            "--RunAsDaemon",
            "0",
            "--DisableNetwork",
            "1",
            "--SocksPort",
            "0",
        ])
        .arg("--Log")
        .arg(format!("notice file {}", log.display()))
        .arg("--DataDirectory")
        .arg(&data)
        .arg("--HiddenServiceDir")
        .arg(&hs)
        .args(["--HiddenServicePort", "80 127.0.0.1:2001"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tor");
    let mut tor = KillOnDrop(child);
    let hostname = hs.join("hostname");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = fs_err::read_to_string(&hostname) {
            if text.ends_with('\n') {
                assert_eq!(
                    fs_err::read(hs.join("hs_ed25519_secret_key")).expect("secret"),
                    fs_err::read(key_dir.join("hs_ed25519_secret_key")).expect("ours"),
                    "tor rewrote the secret key"
                );
                super::sys::signal(tor.0.id(), super::sys::Signal::TERM).expect("SIGTERM");
                let _ = tor.0.wait();
                return Some((text, fs_err::read_to_string(&log).unwrap_or_default()));
            }
        }
        if let Ok(Some(status)) = tor.0.try_wait() {
            panic!(
                "tor exited ({status}) before writing hostname: {}",
                fs_err::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "tor wrote no hostname within 60 s: {}",
            fs_err::read_to_string(&log).unwrap_or_default()
        );
        // Polling a file tor writes once; the deadline above bounds it.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Debian's defaults file, which its tor reads before torrc (`User debian-tor`).
pub const TOR_DEFAULTS: &str = "/usr/share/tor/tor-service-defaults-torrc";

/// `tor --verify-config` on `torrc` with Debian's defaults: `Ok` when tor accepts it, `Err`
/// with tor's words when it refuses; `None` when tor is missing outside CI.
pub fn verify_config(torrc: &Path) -> Option<Result<(), String>> {
    let tor = tor_binary()?;
    if !Path::new(TOR_DEFAULTS).is_file() {
        missing("Debian's tor defaults file (apt-get install tor)");
        return None;
    }
    let out = Command::new(tor)
        .args(["--verify-config", "--defaults-torrc", TOR_DEFAULTS, "-f"])
        .arg(torrc)
        .stdin(Stdio::null())
        .output()
        .expect("run tor --verify-config");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        if out.status.success() && said.contains("Configuration was valid") {
            Ok(())
        } else {
            Err(said)
        },
    )
}
