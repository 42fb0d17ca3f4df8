//! The whole default build against the real archive, as root, into a temporary TARGET and
//! --host-root: real tor derives the same address from our key and accepts the torrc, nginx
//! passes `nginx -t` in the chroot, `start` serves the page to curl through the unix socket for
//! the onion name with the checklist's headers (twice started, still serving; a rebuild over the
//! running chroot refused), `stop` removes the socket (status then exits 3, and a second stop
//! says nothing ran), real schroot runs a command as the new user, not as root; a second build
//! with `--site`, `--onion-port` and the TCP opt-in `--local-port` keeps the address and one
//! torrc entry, and `--onion-key` carries the address to another name.

mod support;

use support::host::shared_cache;

use std::path::Path;
use std::process::{Command, Output};

use support::host::{host_mirror, require_program, require_root};

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

/// What curl gets through the unix socket for `path` with `Host: host`: the status line and
/// headers (lower-cased names), and the body.
fn curl_socket(socket: &Path, host: &str, path: &str) -> (String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20", "--include"])
        .arg("--unix-socket")
        .arg(socket)
        .arg("-H")
        .arg(format!("Host: {host}"))
        .arg(format!("http://{host}{path}"))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl --unix-socket {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&out.stdout[..split]).to_lowercase();
    (head, out.stdout[split + 4..].to_vec())
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

/// nginx's master runs in namespaces of its own (network, PID, IPC, UTS), with no_new_privs
/// and a cut bounding set; a real program run in its network namespace cannot connect to an
/// address that exists in another namespace, which a test-owned namespace shows is there.
fn assert_sandboxed(chroot: &Path) {
    let pid = debstrap_onion::onion::master_pid(chroot).expect("nginx master");
    for ns in ["net", "pid", "ipc", "uts"] {
        let theirs = fs_err::read_link(format!("/proc/{pid}/ns/{ns}")).expect("ns");
        let ours = fs_err::read_link(format!("/proc/self/ns/{ns}")).expect("ns");
        assert_ne!(theirs, ours, "nginx shares our {ns} namespace");
    }
    let status = fs_err::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .expect("field")
            .to_string()
    };
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    let bounding = u64::from_str_radix(&field("CapBnd:"), 16).expect("hex");
    // CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, KILL, SETGID, SETUID, NET_BIND_SERVICE.
    let kept: u64 = [0, 1, 2, 3, 5, 6, 7, 10].iter().map(|c| 1u64 << c).sum();
    assert_eq!(bounding, kept, "bounding set {bounding:#x}");
    assert_eq!(field("NSpid:").split_whitespace().last(), Some("1"));
    // Under our system-call filter (mode 2: a seccomp filter), which its workers inherit.
    assert_eq!(field("Seccomp:"), "2", "{status}");
    // Its /proc is read-only: root writes /proc/sys without any capability, and a
    // core_pattern there is a program the host's kernel runs as root. Tried from its mount
    // namespace and root (writing back the value it has, so a failure of this check changes
    // nothing).
    let attempt = Command::new("nsenter")
        .arg(format!("--target={pid}"))
        .args(["--mount", "--root", "sh", "-c"])
        .arg("read v < /proc/sys/kernel/core_pattern; printf '%s\\n' \"$v\" > /proc/sys/kernel/core_pattern")
        .output()
        .expect("nsenter");
    let said = String::from_utf8_lossy(&attempt.stderr);
    assert!(
        !attempt.status.success(),
        "nginx's namespace could write core_pattern"
    );
    assert!(said.contains("Read-only file system"), "{said}");

    // A test-owned namespace with a veth address; from inside it, the address answers (port 9
    // has no listener: refused, so reachable).
    let address = "10.213.0.1";
    let connect = format!("exec 3<>/dev/tcp/{address}/9");
    let control = Command::new("unshare")
        .args(["--net", "sh", "-c"])
        .arg(format!(
            "ip link add v0 type veth peer name v1 && ip addr add {address}/24 dev v0 && \
             ip link set v0 up && ip link set v1 up && ip link set lo up && bash -c '{connect}'"
        ))
        .output()
        .expect("unshare");
    let said = String::from_utf8_lossy(&control.stderr);
    assert!(said.contains("Connection refused"), "control: {said}");
    // From nginx's network namespace, bash cannot connect at all.
    let inside = Command::new("nsenter")
        .arg(format!("--target={pid}"))
        .args(["--net", "--ipc", "--uts", "bash", "-c"])
        .arg(format!("hostname; {connect}"))
        .output()
        .expect("nsenter");
    let said = String::from_utf8_lossy(&inside.stderr);
    assert!(!inside.status.success());
    assert!(said.contains("Network is unreachable"), "inside: {said}");
    assert_eq!(String::from_utf8_lossy(&inside.stdout), "onion\n");
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
    // HOST_ROOT stands for the host: its user databases start as copies of the host's.
    fs_err::create_dir(host.join("etc")).expect("host etc");
    for db in ["passwd", "group", "shadow", "gshadow"] {
        fs_err::copy(Path::new("/etc").join(db), host.join("etc").join(db)).expect("copy");
    }
    let port = free_port().to_string();
    // A user neither the host nor the chroot has: --user creates it.
    let user = "debstrap-e2e";
    assert!(
        debstrap_onion::sys::user_by_name(user)
            .expect("lookup")
            .is_none(),
        "the host already has {user}"
    );
    let (target_s, host_s, cache) = (
        target.to_str().expect("utf-8"),
        host.to_str().expect("utf-8"),
        shared_cache().to_str().expect("utf-8").to_string(),
    );
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "--name", "e2e", "--user", user];
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

    // Real tor accepts the torrc that sends the onion port to the socket.
    let torrc_path = host.join("etc/tor/torrc");
    let socket = debstrap_onion::onion::socket_on_host(&target);
    let torrc = fs_err::read_to_string(&torrc_path).expect("torrc");
    assert!(
        torrc.contains(&format!("HiddenServicePort 80 unix:{}\n", socket.display())),
        "{torrc}"
    );
    if let Some(verdict) = support::tor::verify_config(&torrc_path) {
        verdict.expect("tor refuses the torrc");
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

    // start serves the site for the onion name on the socket only; stop removes the socket.
    {
        let _stop = StopOnDrop { host_root: host_s };
        ours(&["start", "e2e", "--host-root", host_s]);
        let endpoint = debstrap_onion::onion::Endpoint::Unix(socket.clone());
        assert_eq!(
            debstrap_onion::onion::http_status(&endpoint, &address),
            Some(200)
        );
        // Only root and tor's group may pass the socket's directory; nginx made the socket.
        let dir = fs_err::metadata(socket.parent().expect("dir")).expect("socket dir");
        use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
        assert_eq!((dir.mode() & 0o7777, dir.uid()), (0o710, 0));
        let tor = debstrap_onion::sys::user_by_name("debian-tor").expect("lookup");
        if let Some(tor) = tor {
            assert_eq!(dir.gid(), tor.gid);
        }
        assert!(fs_err::symlink_metadata(&socket)
            .expect("socket")
            .file_type()
            .is_socket());
        // curl, asking for the onion name through the socket, gets the page the build wrote,
        // with the checklist's headers and no version.
        let page = fs_err::read(target.join("var/www/e2e/index.html")).expect("index.html");
        let (head, body) = curl_socket(&socket, &address, "/");
        assert_eq!(body, page);
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("\r\nserver: nginx\r\n"), "{head}");
        for (name, value) in debstrap_onion::onion::HEADERS {
            let line = format!("\r\n{}: {}", name.to_lowercase(), value.to_lowercase());
            assert!(head.contains(&line), "{name} missing: {head}");
        }
        // No status page, and the error page names no version either.
        let (head, body) = curl_socket(&socket, &address, "/nginx_status");
        assert!(head.starts_with("http/1.1 404"), "{head}");
        let body = String::from_utf8_lossy(&body);
        assert!(!body.contains("nginx/"), "{body}");
        assert!(head.contains("referrer-policy: no-referrer"), "{head}");
        let status = ours(&["status", "e2e", "--host-root", host_s]);
        assert!(String::from_utf8_lossy(&status.stdout).contains("HTTP 200"));
        assert_sandboxed(&target);
        // A second start finds nginx running and reloads it; it still answers.
        let again = ours(&["start", "e2e", "--host-root", host_s]);
        assert_eq!(curl_socket(&socket, &address, "/").1, page, "{again:?}");
        // While it runs, a rebuild over TARGET is refused and leaves it serving.
        let refused = Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
            .args(["build", "--name", "e2e", "--force"])
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
            curl_socket(&socket, &address, "/").1,
            page,
            "the refused build disturbed nginx"
        );
        ours(&["stop", "e2e", "--host-root", host_s]);
        assert_eq!(
            debstrap_onion::onion::http_status(&endpoint, &address),
            None,
            "stop left nginx answering"
        );
        assert!(!socket.exists(), "stop left the socket");
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

    // systemd accepts the unit, with the chroot's own nginx where the unit runs it (systemd 252
    // looks for it on the host, hence the private bind: systemd issue #20402).
    let units = host.join("etc/systemd/system");
    let unit_files: Vec<std::path::PathBuf> = [
        "debstrap-onion-e2e.service",
        "debstrap-onion-e2e-logs.service",
        "debstrap-onion-e2e-logs.timer",
    ]
    .iter()
    .map(|f| units.join(f))
    .collect();
    if require_program("systemd-analyze") {
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$0/usr/sbin\" /usr/sbin && exec systemd-analyze verify \"$@\"")
            .arg(&target)
            .args(&unit_files)
            .output()
            .expect("systemd-analyze");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The log rotation's ExecStart, as systemd hands it over ($$ read as $), run by the chroot's
    // own sh and mv: the access log nginx wrote above becomes generation 1.
    let rotate = fs_err::read_to_string(&unit_files[1]).expect("rotation unit");
    let exec = rotate
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/bin/sh -c '"))
        .expect("ExecStart")
        .replace("$$", "$");
    let (script, args) = exec.rsplit_once("' ").expect("script and arguments");
    let logs = target.join("var/log/nginx");
    assert!(logs.join("e2e.access.log").is_file());
    let out = Command::new("chroot")
        .arg(&target)
        .args(["/bin/sh", "-c", script])
        .args(args.split_whitespace())
        .output()
        .expect("chroot sh");
    assert!(out.status.success(), "{out:?}");
    assert!(!logs.join("e2e.access.log").exists());
    assert!(logs.join("e2e.access.log.1").is_file());

    // Real schroot, given our definition, runs a command in the chroot as the new user, who is
    // not root there.
    let out = support::host::schroot_as(
        &host,
        "e2e",
        user,
        "id -un; id -u; test -x /usr/sbin/nginx && echo in-chroot",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!((lines[0], lines[2]), (user, "in-chroot"), "{text}");
    assert_ne!(lines[1], "0", "schroot made {user} root: {text}");
    // The build added the user to HOST_ROOT's databases only, locked and without a shell.
    let passwd = fs_err::read_to_string(host.join("etc/passwd")).expect("passwd");
    let entry = passwd
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .expect("host entry");
    assert!(
        entry.ends_with(":/nonexistent:/usr/sbin/nologin"),
        "{entry}"
    );
    assert!(
        entry.contains(&format!(":{}:", lines[1])),
        "{entry} vs uid {}",
        lines[1]
    );
    assert!(debstrap_onion::sys::user_by_name(user)
        .expect("lookup")
        .is_none());

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
        "--local-port",
        &port,
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
        // A directory without its slash is redirected without naming a host; without an index
        // it is not listed.
        let head = Command::new("curl")
            .args(["--silent", "--max-time", "20", "--head", "-H"])
            .arg(format!("Host: {address}"))
            .arg(format!("http://127.0.0.1:{port}/sub"))
            .output()
            .expect("run curl");
        let head = String::from_utf8_lossy(&head.stdout).to_lowercase();
        assert!(head.starts_with("http/1.1 301"), "{head}");
        assert!(head.contains("\r\nlocation: /sub/\r\n"), "{head}");
        let listing = Command::new("curl")
            .args(["--silent", "--max-time", "20", "-o", "/dev/null", "-w"])
            .arg("%{http_code}")
            .arg("-H")
            .arg(format!("Host: {address}"))
            .arg(format!("http://127.0.0.1:{port}/sub/"))
            .output()
            .expect("run curl");
        assert_eq!(String::from_utf8_lossy(&listing.stdout), "403");
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
