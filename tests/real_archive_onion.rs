//! The whole default build against the real archive, as root, into a temporary TARGET and
//! --host-root: real tor derives the same address from our key, nginx passes `nginx -t` in the
//! chroot, `start` serves the page to curl for the onion name (twice started, still serving; a
//! rebuild over the running chroot refused), `stop` closes the port (status then exits 3, and
//! a second stop says nothing ran), real schroot runs a command as the user, a second build
//! with `--site` and `--onion-port` keeps the address and one torrc entry, and `--onion-key`
//! carries the address to another name.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::host::{host_mirror, require_program, require_root};

fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("real-archive-cache")
}

fn ours(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
        .args(args)
        .output()
        .expect("run debstrap-onion");
    assert!(
        out.status.success(),
        "debstrap-onion {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The body curl gets for `path` on 127.0.0.1:PORT with `Host: host` (failing on HTTP errors).
fn curl_path(port: u16, host: &str, path: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--fail",
            "--max-time",
            "20",
            "-H",
        ])
        .arg(format!("Host: {host}"))
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn curl(port: u16, host: &str) -> Vec<u8> {
    curl_path(port, host, "/")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

/// Stops nginx and unmounts on every path, so a failing test leaves no process or mount.
struct StopOnDrop<'a> {
    host_root: &'a str,
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
            .args(["stop", "e2e", "--host-root", self.host_root])
            .output();
    }
}

#[test]
fn real_archive_root_default_onion_build_serves_the_onion_name() {
    if !require_root() || !require_program("schroot") || !require_program("curl") {
        return;
    }
    let Some(mirror) = host_mirror() else { return };
    let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let target = dir.path().join("chroot");
    let host = dir.path().join("host");
    fs_err::create_dir(&host).expect("host root");
    let port = free_port().to_string();
    let (target_s, host_s, cache) = (
        target.to_str().expect("utf-8"),
        host.to_str().expect("utf-8"),
        shared_cache().to_str().expect("utf-8").to_string(),
    );
    let build = |extra: &[&str]| {
        let mut args = vec![
            "build",
            "--name",
            "e2e",
            "--user",
            "nobody",
            "--local-port",
            &port,
        ];
        args.extend_from_slice(&["--host-root", host_s, "--cache-dir", &cache]);
        args.extend_from_slice(extra);
        args.extend_from_slice(&["trixie", target_s, &mirror]);
        ours(&args)
    };
    let first = build(&[]);
    let stdout = String::from_utf8_lossy(&first.stdout).into_owned();
    let key_dir = host.join("var/lib/tor/e2e");
    let address = fs_err::read_to_string(key_dir.join("hostname"))
        .expect("hostname")
        .trim()
        .to_string();
    assert!(
        address.ends_with(".onion") && address.len() == 62,
        "{address}"
    );
    assert!(
        stdout.contains(&address) && stdout.contains("debstrap-onion start e2e"),
        "{stdout}"
    );
    assert!(debstrap_onion::stage::mounts_under(&target).is_empty());

    // Real tor derives the same address from the key we wrote.
    if let Some(tor_hostname) = support::tor::hostname_from_real_tor(&key_dir) {
        assert_eq!(tor_hostname.trim(), address);
    }

    // nginx accepts its configuration inside the chroot.
    {
        let _mounts = debstrap_onion::stage::ChrootMounts::mount(&target).expect("mount");
        let out = debstrap_onion::stage::run_in_chroot(&target, &["nginx", "-t"], &[], None)
            .expect("nginx -t");
        assert!(
            out.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(debstrap_onion::stage::mounts_under(&target).is_empty());

    // start serves the site for the onion name on 127.0.0.1 only; stop closes the port.
    {
        let _stop = StopOnDrop { host_root: host_s };
        ours(&["start", "e2e", "--host-root", host_s]);
        let port: u16 = port.parse().expect("port");
        assert_eq!(
            debstrap_onion::onion::http_status(port, &address),
            Some(200)
        );
        // curl, asking for the onion name, gets the page the build wrote into the web root.
        let page = fs_err::read(target.join("var/www/e2e/index.html")).expect("index.html");
        assert_eq!(curl(port, &address), page);
        let status = ours(&["status", "e2e", "--host-root", host_s]);
        assert!(String::from_utf8_lossy(&status.stdout).contains("HTTP 200"));
        // A second start finds nginx running and reloads it; it still answers.
        let again = ours(&["start", "e2e", "--host-root", host_s]);
        assert_eq!(curl(port, &address), page, "{again:?}");
        // While it runs, a rebuild over TARGET is refused and leaves it serving.
        let refused = Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
            .args([
                "build",
                "--name",
                "e2e",
                "--force",
                "--local-port",
                &port.to_string(),
            ])
            .args([
                "--host-root",
                host_s,
                "--cache-dir",
                &cache,
                "trixie",
                target_s,
                &mirror,
            ])
            .output()
            .expect("run debstrap-onion");
        let err = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(1), "{err}");
        assert!(err.contains("has mounts inside"), "{err}");
        assert_eq!(
            curl(port, &address),
            page,
            "the refused build disturbed nginx"
        );
        ours(&["stop", "e2e", "--host-root", host_s]);
        assert_eq!(
            debstrap_onion::onion::http_status(port, &address),
            None,
            "stop left the port open"
        );
        let down = Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
            .args(["status", "e2e", "--host-root", host_s])
            .output()
            .expect("run debstrap-onion");
        assert_eq!(down.status.code(), Some(3), "status after stop: {down:?}");
        let stopped = ours(&["stop", "e2e", "--host-root", host_s]);
        assert!(
            String::from_utf8_lossy(&stopped.stdout).contains("nginx was not running"),
            "{stopped:?}"
        );
    }
    assert!(
        debstrap_onion::stage::mounts_under(&target).is_empty(),
        "stop left mounts"
    );

    // Real schroot, given our definition, runs a command in the chroot as the user.
    let out = support::host::schroot_as(
        &host,
        "e2e",
        "nobody",
        "id -un; test -x /usr/sbin/nginx && echo in-chroot",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().collect::<Vec<_>>(), ["nobody", "in-chroot"]);

    // A second build, with a site of our own and another onion port, keeps the address and
    // leaves one torrc entry for the name, now naming the new port.
    let site = dir.path().join("site");
    fs_err::create_dir_all(site.join("sub")).expect("site dir");
    fs_err::write(site.join("index.html"), "<p>our own site</p>\n").expect("site index");
    fs_err::write(site.join("sub/page.txt"), "a sub page\n").expect("site page");
    build(&[
        "--force",
        "--site",
        site.to_str().expect("utf-8"),
        "--onion-port",
        "8080",
    ]);
    let again = fs_err::read_to_string(key_dir.join("hostname")).expect("hostname");
    assert_eq!(again.trim(), address, "a rebuild changed the onion address");
    let torrc = fs_err::read_to_string(host.join("etc/tor/torrc")).expect("torrc");
    assert_eq!(
        torrc.matches("HiddenServiceDir /var/lib/tor/e2e/").count(),
        1,
        "{torrc}"
    );
    assert!(
        torrc.contains(&format!("HiddenServicePort 8080 127.0.0.1:{port}")),
        "{torrc}"
    );
    {
        let _stop = StopOnDrop { host_root: host_s };
        ours(&["start", "e2e", "--host-root", host_s]);
        let port: u16 = port.parse().expect("port");
        assert_eq!(curl(port, &address), b"<p>our own site</p>\n");
        assert_eq!(curl_path(port, &address, "/sub/page.txt"), b"a sub page\n");
        ours(&["stop", "e2e", "--host-root", host_s]);
    }

    // --onion-key: another name imports this service's key directory and gets its address.
    let imported = dir.path().join("imported");
    ours(&[
        "build",
        "--name",
        "copy",
        "--onion-key",
        key_dir.to_str().expect("utf-8"),
        "--local-port",
        &free_port().to_string(),
        "--host-root",
        host_s,
        "--cache-dir",
        &cache,
        "trixie",
        imported.to_str().expect("utf-8"),
        &mirror,
    ]);
    let copied = fs_err::read_to_string(host.join("var/lib/tor/copy/hostname")).expect("hostname");
    assert_eq!(
        copied.trim(),
        address,
        "--onion-key did not keep the address"
    );
    assert!(debstrap_onion::stage::mounts_under(dir.path()).is_empty());
}
