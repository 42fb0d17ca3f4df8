//! The onion stage against temporary HOST_ROOT and chroot directories: key directory, torrc,
//! schroot and nginx files, re-runs and imports; and real tor reading the key directory we write.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use debstrap_onion::config::OnionConfig;
use debstrap_onion::onion::{
    self, KeyOrigin, OnionError, OnionReport, OnionRequest, SiteProblem, TorrcProblem,
};

mod support;

const TOR_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/onion/tor-generated");

/// A temporary host root and a chroot shaped like a Debian root with nginx installed.
struct Scene {
    _dir: tempfile::TempDir,
    host_root: PathBuf,
    root: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        Scene::within(tempfile::tempdir().expect("tempdir"))
    }

    /// A scene in `dir` (a temporary directory the caller made, on the filesystem it chose).
    fn within(dir: tempfile::TempDir) -> Scene {
        let host_root = dir.path().join("host");
        let root = dir.path().join("chroot");
        for sub in [
            "etc/nginx/sites-available",
            "etc/nginx/sites-enabled",
            "etc/skel",
        ] {
            fs_err::create_dir_all(root.join(sub)).expect("mkdir");
        }
        fs_err::create_dir_all(&host_root).expect("mkdir");
        fs_err::write(
            root.join("etc/nginx/sites-available/default"),
            "server {}\n",
        )
        .expect("default site");
        std::os::unix::fs::symlink(
            "/etc/nginx/sites-available/default",
            root.join("etc/nginx/sites-enabled/default"),
        )
        .expect("default site link");
        fs_err::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n",
        )
        .expect("passwd");
        fs_err::write(root.join("etc/group"), "root:x:0:\nwww-data:x:33:\n").expect("group");
        fs_err::write(root.join("etc/shadow"), "root:*:20000:0:99999:7:::\n").expect("shadow");
        fs_err::write(root.join("etc/gshadow"), "root:*::\n").expect("gshadow");
        fs_err::write(root.join("etc/skel/.profile"), "# profile\n").expect("skel");
        Scene {
            _dir: dir,
            host_root,
            root,
        }
    }

    fn config(&self) -> OnionConfig {
        OnionConfig {
            host_root: Some(self.host_root.clone()),
            ..OnionConfig::default()
        }
    }

    fn configure(&self, name: &str, config: &OnionConfig) -> Result<OnionReport, OnionError> {
        self.pending(name, config).map(onion::Configured::keep)
    }

    /// Configures without keeping the host-side changes yet.
    fn pending(&self, name: &str, config: &OnionConfig) -> Result<onion::Configured, OnionError> {
        onion::configure_unchecked(&OnionRequest {
            name,
            root: &debstrap_onion::HeldRoot::open(&self.root).expect("hold the root"),
            chroot_path: Path::new("/srv/chroot/onion"),
            suite: "trixie",
            config,
        })
    }

    fn key_dir(&self, name: &str) -> PathBuf {
        self.host_root.join("var/lib/tor").join(name)
    }

    fn torrc(&self) -> String {
        fs_err::read_to_string(self.host_root.join("etc/tor/torrc")).expect("torrc")
    }
}

fn mode(path: &Path) -> u32 {
    fs_err::symlink_metadata(path).expect("metadata").mode() & 0o7777
}

#[test]
fn key_directory_has_tors_files_modes_and_owner() {
    let scene = Scene::new();
    let report = scene
        .configure("onion", &scene.config())
        .expect("configure");
    let dir = scene.key_dir("onion");
    assert_eq!(report.key_origin, KeyOrigin::Generated);
    assert_eq!(mode(&dir), 0o700);
    for file in ["hs_ed25519_secret_key", "hs_ed25519_public_key", "hostname"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    assert_eq!(
        fs_err::read_to_string(dir.join("hostname")).expect("hostname"),
        format!("{}\n", report.address)
    );
    assert_eq!(report.address.len(), 62);
    assert!(onion::parse_address(&report.address).is_ok());
    let reread = onion::read_key_dir(&dir).expect("our directory reads back");
    assert_eq!(reread.address(), report.address);
    // Nothing else was left in the directory or beside it (no temporary names).
    let names = |path: &Path| -> Vec<String> {
        let mut names: Vec<String> = fs_err::read_dir(path)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        names(&dir),
        ["hostname", "hs_ed25519_public_key", "hs_ed25519_secret_key"]
    );
    assert_eq!(names(&scene.host_root.join("var/lib/tor")), ["onion"]);

    // The owner part needs root (to chown) and tor's user: without them it is a recorded skip.
    if !support::host::require_root() {
        return;
    }
    let Some(tor) = debstrap_onion::sys::user_by_name(onion::TOR_USER).expect("passwd lookup")
    else {
        support::host::missing(&format!(
            "the host user {} (apt-get install tor)",
            onion::TOR_USER
        ));
        return;
    };
    let meta = fs_err::metadata(dir.join("hs_ed25519_secret_key")).expect("meta");
    assert_eq!((meta.uid(), meta.gid()), (tor.uid, tor.gid));
    let meta = fs_err::metadata(&dir).expect("meta");
    assert_eq!(meta.uid(), tor.uid);
}

/// Whether another build could take the host lock now.
fn host_lock_is_free(host_root: &Path) -> bool {
    let dir = fs_err::File::open(host_root).expect("open the host root");
    match rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => true,
        Err(rustix::io::Errno::WOULDBLOCK) => false,
        Err(e) => panic!("flock {}: {e}", host_root.display()),
    }
}

#[test]
fn pending_host_changes_hold_the_host_lock_until_kept() {
    let scene = Scene::new();
    let pending = scene.pending("onion", &scene.config()).expect("configure");
    assert!(
        !host_lock_is_free(&scene.host_root),
        "another build could plan against changes not yet kept"
    );
    let report = pending.keep();
    assert!(host_lock_is_free(&scene.host_root));
    assert_eq!(
        onion::read_key_dir(&scene.key_dir("onion"))
            .expect("kept key")
            .address(),
        report.address
    );
}

#[test]
fn dropped_host_changes_leave_the_host_root_as_it_was() {
    let scene = Scene::new();
    // An empty key directory made beforehand, a hand-written torrc, no schroot directory.
    files_mode(&scene.key_dir("onion"), 0o700);
    fs_err::create_dir_all(scene.host_root.join("etc/tor")).expect("mkdir");
    fs_err::write(scene.host_root.join("etc/tor/torrc"), "Log notice syslog\n").expect("torrc");
    let before = support::tree::snapshot(&scene.host_root);
    let pending = scene.pending("onion", &scene.config()).expect("configure");
    assert!(scene.key_dir("onion").join("hostname").is_file());
    drop(pending);
    let diffs = support::tree::differences(&support::tree::snapshot(&scene.host_root), &before);
    assert!(
        diffs.is_empty(),
        "the host root was left changed: {diffs:#?}"
    );
    assert!(host_lock_is_free(&scene.host_root));
}

/// Creates `dir` and its parents, `dir` itself with `mode`.
fn files_mode(dir: &Path, mode: u32) {
    fs_err::create_dir_all(dir).expect("mkdir");
    fs_err::set_permissions(dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn rebuild_keeps_the_key_and_leaves_one_torrc_block() {
    let scene = Scene::new();
    let first = scene
        .configure("onion", &scene.config())
        .expect("first build");
    let torrc_once = scene.torrc();
    let second = scene
        .configure("onion", &scene.config())
        .expect("second build");
    assert_eq!(second.address, first.address);
    assert_eq!(second.key_origin, KeyOrigin::Kept);
    assert_eq!(scene.torrc(), torrc_once);
    assert_eq!(
        scene
            .torrc()
            .matches("# BEGIN debstrap-onion onion")
            .count(),
        1
    );
    assert_eq!(scene.torrc().matches("HiddenServiceDir").count(), 1);
}

#[test]
fn torrc_block_is_added_to_existing_content_and_names_coexist() {
    let scene = Scene::new();
    let before = "## Configuration file for a typical Tor user\nLog notice syslog\n";
    fs_err::create_dir_all(scene.host_root.join("etc/tor")).expect("mkdir");
    fs_err::write(scene.host_root.join("etc/tor/torrc"), before).expect("torrc");
    fs_err::set_permissions(
        scene.host_root.join("etc/tor/torrc"),
        std::fs::Permissions::from_mode(0o640),
    )
    .expect("chmod");

    scene.configure("one", &scene.config()).expect("one");
    let mut two = scene.config();
    two.local_port = Some(port(2002));
    two.onion_port = port(8080);
    scene.configure("two", &two).expect("two");
    scene.configure("one", &scene.config()).expect("one again");

    let torrc = scene.torrc();
    assert!(torrc.starts_with(before));
    assert_eq!(
        torrc,
        format!(
            "{before}\n{}\n{}",
            onion::torrc_block("one", 80, "unix:/srv/chroot/onion/run/onion/nginx.sock"),
            onion::torrc_block("two", 8080, "127.0.0.1:2002")
        )
    );
    assert!(torrc.contains("HiddenServicePort 8080 127.0.0.1:2002\n"));
    // The mode of the host's file is kept.
    assert_eq!(mode(&scene.host_root.join("etc/tor/torrc")), 0o640);
    // Paths inside the file are as seen from /, never under HOST_ROOT.
    assert!(!torrc.contains(scene.host_root.to_str().expect("utf-8")));
}

#[test]
fn torrc_with_a_hand_written_entry_for_the_same_directory_is_refused() {
    let scene = Scene::new();
    fs_err::create_dir_all(scene.host_root.join("etc/tor")).expect("mkdir");
    let hand_written = "HiddenServiceDir /var/lib/tor/onion/\nHiddenServicePort 80 127.0.0.1:80\n";
    fs_err::write(scene.host_root.join("etc/tor/torrc"), hand_written).expect("torrc");
    let err = scene
        .configure("onion", &scene.config())
        .expect_err("duplicate service directory");
    assert!(
        matches!(
            err,
            OnionError::Torrc {
                problem: TorrcProblem::Duplicate { line: 1, .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(scene.torrc(), hand_written);
}

#[test]
fn onion_key_imports_a_tor_generated_directory() {
    let scene = Scene::new();
    let mut config = scene.config();
    config.onion_key = Some(PathBuf::from(TOR_FIXTURE));
    let report = scene.configure("onion", &config).expect("import");
    let tor_hostname =
        fs_err::read_to_string(Path::new(TOR_FIXTURE).join("hostname")).expect("fixture");
    assert_eq!(format!("{}\n", report.address), tor_hostname);
    assert_eq!(report.key_origin, KeyOrigin::Imported);
    for file in ["hs_ed25519_secret_key", "hs_ed25519_public_key", "hostname"] {
        assert_eq!(
            fs_err::read(scene.key_dir("onion").join(file)).expect("ours"),
            fs_err::read(Path::new(TOR_FIXTURE).join(file)).expect("tor's"),
            "{file}"
        );
    }
    // Importing the same key again is a no-op; a rebuild without --onion-key keeps it.
    scene.configure("onion", &config).expect("same import");
    let kept = scene.configure("onion", &scene.config()).expect("rebuild");
    assert_eq!(kept.address, report.address);
}

#[test]
fn import_over_a_different_existing_key_is_refused() {
    let scene = Scene::new();
    let generated = scene.configure("onion", &scene.config()).expect("generate");
    let mut config = scene.config();
    config.onion_key = Some(PathBuf::from(TOR_FIXTURE));
    let err = scene.configure("onion", &config).expect_err("conflict");
    assert!(matches!(err, OnionError::KeyConflict { .. }), "{err:?}");
    let still = onion::read_key_dir(&scene.key_dir("onion")).expect("still readable");
    assert_eq!(still.address(), generated.address);
}

#[test]
fn import_refuses_a_public_key_that_does_not_match() {
    let scene = Scene::new();
    let import = scene.host_root.join("import");
    fs_err::create_dir_all(&import).expect("mkdir");
    fs_err::copy(
        Path::new(TOR_FIXTURE).join("hs_ed25519_secret_key"),
        import.join("hs_ed25519_secret_key"),
    )
    .expect("copy");
    let other = onion::OnionKey::from_seed(&[9u8; 32]);
    fs_err::write(import.join("hs_ed25519_public_key"), other.public_file()).expect("write");
    let mut config = scene.config();
    config.onion_key = Some(import);
    let err = scene.configure("onion", &config).expect_err("mismatch");
    assert!(
        matches!(err, OnionError::PublicKeyMismatch { .. }),
        "{err:?}"
    );
    assert!(!scene.key_dir("onion").exists());
}

#[test]
fn schroot_file_and_profile_contents() {
    let scene = Scene::new();
    let mut config = scene.config();
    config.user = Some("alice".to_string());
    scene.configure("onion", &config).expect("configure");
    let schroot = scene.host_root.join("etc/schroot");
    let read = |rel: &str| fs_err::read_to_string(schroot.join(rel)).expect(rel);
    insta::assert_snapshot!(read("chroot.d/onion"), @r"
    # Written by debstrap-onion for the onion service onion; rebuilding onion replaces it.
    [onion]
    description=Debian trixie onion service onion
    type=directory
    directory=/srv/chroot/onion
    users=alice
    root-groups=root
    profile=debstrap-onion-onion
    ");
    // Root inside only on request.
    config.user_root = true;
    scene.configure("onion", &config).expect("configure again");
    let file = read("chroot.d/onion");
    assert!(file.contains("\nusers=alice\nroot-users=alice\n"), "{file}");
    insta::assert_snapshot!(read("debstrap-onion-onion/fstab"), @r"
    # Written by debstrap-onion for the onion service onion.
    # schroot's default profile without /home: the service's chroot sees none of the host's
    # home directories.
    /proc           /proc           none    rw,bind         0       0
    /sys            /sys            none    rw,bind         0       0
    /dev            /dev            none    rw,bind         0       0
    /dev/pts        /dev/pts        none    rw,bind         0       0
    /tmp            /tmp            none    rw,bind         0       0
    ");
    insta::assert_snapshot!(read("debstrap-onion-onion/copyfiles"), @r"
    # Written by debstrap-onion for the onion service onion.
    /etc/resolv.conf
    ");
    insta::assert_snapshot!(read("debstrap-onion-onion/nssdatabases"), @r"
    # Written by debstrap-onion for the onion service onion.
    # Not passwd, shadow, group or gshadow: the chroot has its own.
    services
    protocols
    networks
    hosts
    ");
    assert_eq!(mode(&schroot.join("chroot.d/onion")), 0o644);
    // Only our own files exist under etc/schroot: no other profile was touched or created.
    let mut entries: Vec<String> = fs_err::read_dir(&schroot)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["chroot.d", "debstrap-onion-onion"]);
}

#[test]
fn schroot_file_not_written_by_us_is_left_alone() {
    let scene = Scene::new();
    let path = scene.host_root.join("etc/schroot/chroot.d/onion");
    fs_err::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs_err::write(&path, "[onion]\ntype=directory\ndirectory=/srv/mine\n").expect("write");
    let err = scene
        .configure("onion", &scene.config())
        .expect_err("foreign file");
    assert!(matches!(err, OnionError::ForeignFile { .. }), "{err:?}");
    assert_eq!(
        fs_err::read_to_string(&path).expect("read"),
        "[onion]\ntype=directory\ndirectory=/srv/mine\n"
    );
}

#[test]
fn nginx_site_listens_on_the_socket_and_replaces_the_default_site() {
    let scene = Scene::new();
    let report = scene
        .configure("onion", &scene.config())
        .expect("configure");
    let site =
        fs_err::read_to_string(scene.root.join("etc/nginx/sites-available/onion")).expect("site");
    let site = site.replace(&report.address, "ADDRESS.onion");
    insta::assert_snapshot!(site, @r#"
    # Onion service onion, written by debstrap-onion: reachable only through the host's tor.

    # What a visit leaves in the log: when, what was asked (without its query string), the
    # answer. No address (tor's connections all come from the socket anyway), no user agent,
    # no referrer.
    log_format onion_onion '[$time_local] "$request_method $uri" $status $body_bytes_sent';

    server {
    	listen unix:/run/onion/nginx.sock;
    	server_name ADDRESS.onion;

    	# Do not tell visitors which nginx version serves them, list directories or send
    	# redirects naming a host: a relative Location stays on the onion address.
    	server_tokens off;
    	autoindex off;
    	absolute_redirect off;

    	add_header Referrer-Policy "no-referrer" always;
    	add_header X-Content-Type-Options "nosniff" always;
    	add_header X-Frame-Options "SAMEORIGIN" always;
    	add_header Cross-Origin-Opener-Policy "same-origin" always;
    	add_header Cross-Origin-Resource-Policy "same-origin" always;
    	add_header Permissions-Policy "camera=(), geolocation=(), microphone=()" always;

    	access_log /var/log/nginx/onion.access.log onion_onion;
    	error_log /var/log/nginx/onion.error.log;

    	root /var/www/onion;
    	index index.html index.htm;

    	location / {
    		try_files $uri $uri/ =404;
    	}
    }
    "#);
    let enabled = scene.root.join("etc/nginx/sites-enabled");
    assert_eq!(
        fs_err::read_link(enabled.join("onion")).expect("enabled"),
        Path::new("/etc/nginx/sites-available/onion")
    );
    assert!(fs_err::symlink_metadata(enabled.join("default")).is_err());
    // The package's own file stays; only its enabling link is gone.
    assert!(scene
        .root
        .join("etc/nginx/sites-available/default")
        .exists());
    let index = fs_err::read_to_string(scene.root.join("var/www/onion/index.html")).expect("index");
    assert!(index.contains(&report.address));
    assert_eq!(mode(&scene.root.join("var/www/onion")), 0o755);
}

/// The directives of the generated site, as (name, arguments) with comments dropped.
fn directives(site: &str) -> Vec<(String, String)> {
    site.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| line.ends_with(';'))
        .map(|line| {
            let line = line.trim_end_matches(';');
            let (name, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            (name.to_string(), args.trim().to_string())
        })
        .collect()
}

#[test]
fn generated_site_follows_the_onion_site_checklist() {
    let scene = Scene::new();
    scene
        .configure("onion", &scene.config())
        .expect("configure");
    let site =
        fs_err::read_to_string(scene.root.join("etc/nginx/sites-available/onion")).expect("site");
    let all = directives(&site);
    let value = |name: &str| -> Vec<&str> {
        all.iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    // No version in the Server header or on error pages.
    assert_eq!(value("server_tokens"), ["off"], "{site}");
    // No directory listings; no redirect naming a host (nginx would name server_name's first
    // name or the Host header over plain HTTP on the socket).
    assert_eq!(value("autoindex"), ["off"], "{site}");
    assert_eq!(value("absolute_redirect"), ["off"], "{site}");
    // Headers of the checklist, on every answer, errors included.
    let headers = value("add_header");
    for (name, expected) in onion::HEADERS {
        assert!(
            headers.contains(&format!("{name} \"{expected}\" always").as_str()),
            "{name} missing: {site}"
        );
    }
    assert!(
        headers.contains(&"Referrer-Policy \"no-referrer\" always"),
        "{site}"
    );
    // No status or info page, no proxying or scripting that could reach out.
    for forbidden in [
        "stub_status",
        "status",
        "proxy_pass",
        "fastcgi_pass",
        "uwsgi_pass",
        "scgi_pass",
        "resolver",
    ] {
        assert!(value(forbidden).is_empty(), "{forbidden} in {site}");
    }
    assert_eq!(site.matches("location ").count(), 1, "{site}");
    // The access log names no visitor: no address, user agent, referrer or query string.
    let log_format = value("log_format");
    assert_eq!(log_format.len(), 1, "{site}");
    for variable in [
        "$remote_addr",
        "$http_x_forwarded_for",
        "$http_user_agent",
        "$http_referer",
        "$request ",
        "$request_uri",
        "$args",
        "$query_string",
        "$remote_user",
    ] {
        assert!(!log_format[0].contains(variable), "{variable} logged");
    }
    let access_log = value("access_log");
    assert_eq!(
        access_log,
        ["/var/log/nginx/onion.access.log onion_onion"],
        "{site}"
    );
}

#[test]
fn site_directory_is_copied_as_files_and_directories() {
    let scene = Scene::new();
    let site = scene.host_root.join("site");
    fs_err::create_dir_all(site.join("css")).expect("mkdir");
    fs_err::write(site.join("index.html"), "<h1>hi</h1>\n").expect("write");
    fs_err::write(site.join("css/a.css"), "h1 {}\n").expect("write");
    std::os::unix::fs::symlink("index.html", site.join("home.html")).expect("symlink");
    let mut config = scene.config();
    config.site = Some(site.clone());
    scene.configure("onion", &config).expect("configure");
    let web = scene.root.join("var/www/onion");
    assert_eq!(
        fs_err::read_to_string(web.join("index.html")).expect("index"),
        "<h1>hi</h1>\n"
    );
    assert_eq!(
        fs_err::read_to_string(web.join("css/a.css")).expect("css"),
        "h1 {}\n"
    );
    let home = fs_err::symlink_metadata(web.join("home.html")).expect("home");
    assert!(
        home.is_file(),
        "a symlink inside the site is copied as a file"
    );
    assert_eq!(mode(&web.join("index.html")), 0o644);

    // A rebuild with a smaller site leaves no stale file.
    fs_err::remove_dir_all(site.join("css")).expect("rm");
    scene.configure("onion", &config).expect("rebuild");
    assert!(!web.join("css").exists());
}

#[test]
fn site_symlink_leading_outside_is_refused() {
    let scene = Scene::new();
    let site = scene.host_root.join("site");
    fs_err::create_dir_all(&site).expect("mkdir");
    std::os::unix::fs::symlink("/etc/passwd", site.join("passwd.html")).expect("symlink");
    let mut config = scene.config();
    config.site = Some(site);
    let err = scene.configure("onion", &config).expect_err("escape");
    assert!(
        matches!(
            err,
            OnionError::Site {
                problem: SiteProblem::EscapingSymlink { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!scene.root.join("var/www/onion/passwd.html").exists());
}

#[test]
fn chroot_symlinks_to_a_host_directory_lead_back_inside_the_chroot() {
    // A hostile root: every directory the stage writes into is a symlink to a directory of the
    // host (absolute, as a package would ship it, or climbing out with `..`).
    let scene = Scene::new();
    let (victim, victim_too) = (
        scene.host_root.join("victim"),
        scene.host_root.join("victim2"),
    );
    for dir in [&victim, &victim_too] {
        fs_err::create_dir_all(dir).expect("mkdir");
    }
    let root = &scene.root;
    fs_err::remove_dir_all(root.join("etc/nginx/sites-enabled")).expect("rm");
    std::os::unix::fs::symlink(&victim, root.join("etc/nginx/sites-enabled")).expect("symlink");
    std::os::unix::fs::symlink(&victim_too, root.join("var")).expect("symlink");
    std::os::unix::fs::symlink(&victim_too, root.join("run")).expect("symlink");
    let climb = format!("../../../../../../../..{}", victim_too.display());
    std::os::unix::fs::symlink(&climb, root.join("home")).expect("symlink");
    // Where the links lead inside the root exists, as it would in a real root (mkdir -p does
    // not go through a symlink whose target is missing, in the chroot or here).
    let below_root = |dir: &Path| root.join(dir.strip_prefix("/").expect("absolute"));
    for dir in [&victim, &victim_too] {
        fs_err::create_dir_all(below_root(dir)).expect("mkdir");
    }
    let mut config = scene.config();
    config.user = Some("alice".to_string());
    scene.configure("onion", &config).expect("configure");
    for dir in [&victim, &victim_too] {
        assert_eq!(
            tree_of(dir),
            Vec::<String>::new(),
            "written through a symlink onto the host"
        );
    }
    // Each symlink resolved as the chroot resolves it: the same host path, below the root.
    assert_eq!(
        fs_err::read_link(below_root(&victim).join("onion")).expect("site enabled"),
        Path::new("/etc/nginx/sites-available/onion")
    );
    let inside = below_root(&victim_too);
    assert!(inside.join("www/onion/index.html").is_file(), "var/www");
    assert!(inside.join("onion").is_dir(), "run/onion");
    assert!(inside.join("alice/.profile").is_file(), "home");
}

#[test]
fn an_absolute_symlink_inside_the_chroot_resolves_inside_it() {
    let scene = Scene::new();
    fs_err::create_dir_all(scene.root.join("srv/x")).expect("mkdir");
    fs_err::create_dir_all(scene.root.join("var")).expect("mkdir");
    std::os::unix::fs::symlink("/srv/x", scene.root.join("var/www")).expect("symlink");
    scene
        .configure("onion", &scene.config())
        .expect("configure");
    assert!(scene.root.join("srv/x/onion/index.html").is_file());
    assert!(
        fs_err::symlink_metadata(scene.root.join("var/www"))
            .expect("link")
            .is_symlink(),
        "the package's symlink is kept"
    );
    assert!(!Path::new("/srv/x/onion").exists());
}

#[test]
fn the_chroot_is_written_through_the_held_root_not_its_path() {
    // Between the moment the build holds its root and the onion stage, the directory at the
    // root's path is swapped for another (a user who can write its parent can do this).
    let scene = Scene::new();
    let held = debstrap_onion::HeldRoot::open(&scene.root).expect("hold the root");
    let moved = scene.root.with_file_name("moved");
    fs_err::rename(&scene.root, &moved).expect("move the held root away");
    fs_err::create_dir_all(scene.root.join("etc/nginx")).expect("decoy");
    onion::configure_unchecked(&OnionRequest {
        name: "onion",
        root: &held,
        chroot_path: Path::new("/srv/chroot/onion"),
        suite: "trixie",
        config: &scene.config(),
    })
    .expect("configure")
    .keep();
    assert!(moved.join("etc/nginx/sites-available/onion").is_file());
    assert!(moved.join("var/www/onion/index.html").is_file());
    assert_eq!(
        tree_of(&scene.root),
        ["etc", "etc/nginx"],
        "the decoy at the root's path was written"
    );
}

#[test]
fn user_is_created_once_with_a_home() {
    let scene = Scene::new();
    let mut config = scene.config();
    config.user = Some("alice".to_string());
    let first = scene.configure("onion", &config).expect("configure");
    let user = first.user.expect("user reported");
    assert!(user.created);
    assert!(
        user.uid >= 1000
            || debstrap_onion::sys::user_by_name("alice")
                .ok()
                .flatten()
                .is_some()
    );
    let passwd = fs_err::read_to_string(scene.root.join("etc/passwd")).expect("passwd");
    let line = format!("alice:x:{}:{}::/home/alice:/bin/sh\n", user.uid, user.gid);
    assert!(passwd.ends_with(&line), "{passwd}");
    let group = fs_err::read_to_string(scene.root.join("etc/group")).expect("group");
    assert!(
        group.ends_with(&format!("alice:x:{}:\n", user.gid)),
        "{group}"
    );
    let shadow = fs_err::read_to_string(scene.root.join("etc/shadow")).expect("shadow");
    assert!(shadow.ends_with("alice:!::0:99999:7:::\n"), "{shadow}");
    let home = scene.root.join("home/alice");
    assert_eq!(
        fs_err::read_to_string(home.join(".profile")).expect("skel copied"),
        "# profile\n"
    );
    // The home's owner needs root to set; without it that check is a recorded skip.
    if support::host::require_root() {
        assert_eq!(fs_err::metadata(&home).expect("home").uid(), user.uid);
    }

    let second = scene.configure("onion", &config).expect("rebuild");
    assert!(!second.user.expect("user").created);
    let again = fs_err::read_to_string(scene.root.join("etc/passwd")).expect("passwd");
    assert_eq!(again, passwd);
}

#[test]
fn hostile_names_are_refused_before_anything_is_written() {
    let scene = Scene::new();
    for name in ["../etc", "a/b", ".x", ""] {
        let err = scene.configure(name, &scene.config()).expect_err(name);
        assert!(matches!(err, OnionError::BadName { .. }), "{name}: {err:?}");
    }
    let mut config = scene.config();
    config.user = Some("root:x:0".to_string());
    let err = scene.configure("onion", &config).expect_err("bad user");
    assert!(matches!(err, OnionError::BadUserName { .. }), "{err:?}");
    assert!(fs_err::read_dir(&scene.host_root)
        .expect("list")
        .next()
        .is_none());
}

#[test]
fn report_names_address_chroot_and_commands() {
    let scene = Scene::new();
    let mut config = scene.config();
    config.user = Some("alice".to_string());
    let report = scene.configure("onion", &config).expect("configure");
    let text = report.to_string().replace(&report.address, "ADDRESS.onion");
    insta::assert_snapshot!(text, @r"
    onion address: ADDRESS.onion
    chroot:        /srv/chroot/onion
    serves:        http://ADDRESS.onion:80 -> nginx on unix:/srv/chroot/onion/run/onion/nginx.sock
      debstrap-onion start onion               # start nginx in the chroot and reload tor
      debstrap-onion status onion              # check that nginx answers
      schroot -c onion -u alice                # enter the chroot
      debstrap-onion stop onion                # stop nginx and unmount
    ");
}

#[test]
fn status_of_an_unconfigured_name_says_so() {
    let scene = Scene::new();
    let err = onion::status("onion", &scene.host_root).expect_err("not configured");
    assert!(matches!(err, OnionError::NotConfigured { .. }), "{err:?}");
}

#[test]
fn status_reads_port_and_address_back() {
    let scene = Scene::new();
    let report = onion::configure_unchecked(&OnionRequest {
        name: "onion",
        root: &debstrap_onion::HeldRoot::open(&scene.root).expect("hold the root"),
        chroot_path: &scene.root,
        suite: "trixie",
        config: &OnionConfig {
            local_port: Some(port(free_port())),
            ..scene.config()
        },
    })
    .expect("configure")
    .keep();
    let status = onion::status("onion", &scene.host_root).expect("status");
    let onion::Listen::Tcp(local_port) = report.listen else {
        panic!("asked for TCP, got {:?}", report.listen);
    };
    assert_eq!(status.service.endpoint, onion::Endpoint::Tcp(local_port));
    assert_eq!(
        status.service.address.as_deref(),
        Some(report.address.as_str())
    );
    assert_eq!(status.service.chroot, scene.root);
    assert_eq!(status.nginx_pid, None);
    assert_eq!(status.http_status, None);
    assert!(status.to_string().ends_with("not running"), "{status}");
    assert_eq!(status.socket_access, None);
    assert_eq!(status.hostname_matches_key, Some(true));
    assert_eq!(status.tor_running, None, "HOST_ROOT is not /");
}

#[test]
fn status_reports_socket_access_torrc_and_hostname_each_on_its_own() {
    let scene = Scene::new();
    onion::configure_unchecked(&OnionRequest {
        name: "onion",
        root: &debstrap_onion::HeldRoot::open(&scene.root).expect("hold the root"),
        chroot_path: &scene.root,
        suite: "trixie",
        config: &scene.config(),
    })
    .expect("configure")
    .keep();
    let status = onion::status("onion", &scene.host_root).expect("status");
    assert!(matches!(status.socket_access, Some(Ok(_))), "{status}");
    assert_eq!(status.hostname_matches_key, Some(true));
    if support::tor::tor_binary().is_some() {
        assert_eq!(status.tor_config, Some(Ok(())), "{status}");
    }
    assert_eq!(status.http_status, None);
    let text = status.to_string();
    for line in ["socket:        ok", "hostname:      matches the key"] {
        assert!(text.contains(line), "{text}");
    }

    // Each check fails on its own: a socket directory others may enter, a hostname file that
    // names another key, a torrc tor refuses.
    let dir = onion::socket_on_host(&scene.root);
    let dir = dir.parent().expect("dir");
    fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let hostname = scene.key_dir("onion").join("hostname");
    let other = onion::OnionKey::generate().expect("key").address();
    fs_err::write(&hostname, format!("{other}\n")).expect("hostname");
    let torrc = scene.host_root.join("etc/tor/torrc");
    let mut text = scene.torrc();
    text.push_str("NoSuchOption 1\n");
    fs_err::write(&torrc, text).expect("torrc");
    let status = onion::status("onion", &scene.host_root).expect("status");
    assert!(matches!(status.socket_access, Some(Err(_))), "{status}");
    assert_eq!(status.hostname_matches_key, Some(false));
    if support::tor::tor_binary().is_some() {
        assert!(matches!(status.tor_config, Some(Err(_))), "{status}");
    }
    let text = status.to_string();
    for line in [
        "socket:        WRONG",
        "hostname:      DOES NOT match",
        "torrc:         REFUSED",
    ] {
        assert!(text.contains(line), "{text}");
    }
}

#[test]
fn http_status_reads_the_status_line_of_a_local_server() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        let (mut stream, _) = listener.accept().expect("accept");
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut buf).expect("read");
            assert_ne!(n, 0, "client closed before the end of its request");
            request.extend_from_slice(&buf[..n]);
        }
        let request = String::from_utf8_lossy(&request).into_owned();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .expect("write");
        request
    });
    assert_eq!(
        onion::http_status(&onion::Endpoint::Tcp(port), "abc.onion"),
        Some(200)
    );
    let request = server.join().expect("server thread");
    assert!(request.contains("\r\nHost: abc.onion\r\n"), "{request}");
}

/// A port nothing listens on right now.
fn port(number: u16) -> std::num::NonZeroU16 {
    std::num::NonZeroU16::new(number).expect("a port is not 0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

#[test]
fn root_real_tor_writes_the_same_hostname_from_our_key() {
    let scene = Scene::new();
    let report = scene
        .configure("onion", &scene.config())
        .expect("configure");
    let Some(written) = support::tor::hostname_from_real_tor(&scene.key_dir("onion")) else {
        return;
    };
    assert_eq!(written, format!("{}\n", report.address));
}

#[test]
fn root_real_tor_accepts_the_socket_and_the_socket_directory_admits_only_tor() {
    let scene = Scene::new();
    let chroot_path = scene.root.clone();
    onion::configure_unchecked(&OnionRequest {
        name: "onion",
        root: &debstrap_onion::HeldRoot::open(&scene.root).expect("hold the root"),
        chroot_path: &chroot_path,
        suite: "trixie",
        config: &scene.config(),
    })
    .expect("configure")
    .keep();
    let torrc_path = scene.host_root.join("etc/tor/torrc");
    let torrc = fs_err::read_to_string(&torrc_path).expect("torrc");
    let socket = onion::socket_on_host(&chroot_path);
    assert!(
        torrc.contains(&format!(
            "\nHiddenServicePort 80 unix:{}\n",
            socket.display()
        )),
        "{torrc}"
    );
    assert!(!torrc.contains("127.0.0.1"), "{torrc}");
    let dir = socket.parent().expect("socket dir");
    let meta = fs_err::metadata(dir).expect("socket dir");
    assert_eq!(meta.mode() & 0o7777, 0o710, "{}", dir.display());
    if rustix::process::geteuid().is_root() {
        assert_eq!(meta.uid(), 0);
        if let Some(tor) = debstrap_onion::sys::user_by_name(onion::TOR_USER).expect("lookup") {
            assert_eq!(meta.gid(), tor.gid, "the socket's directory is not tor's");
        }
    }
    if let Some(verdict) = support::tor::verify_config(&torrc_path) {
        verdict.expect("tor refuses the torrc");
    }
}

#[test]
fn list_and_remove_leave_other_torrc_content_and_services_byte_for_byte() {
    let scene = Scene::new();
    let before = "## A hand-written torrc\n\
        # another service, kept as it is\n\
        HiddenServiceDir /var/lib/tor/other/\n\
        HiddenServicePort 80 127.0.0.1:8080\n\
        \n\
        Log notice syslog   # trailing comment\n";
    let torrc_path = scene.host_root.join("etc/tor/torrc");
    fs_err::create_dir_all(torrc_path.parent().expect("dir")).expect("mkdir");
    fs_err::write(&torrc_path, before).expect("torrc");
    let chroot_path = scene.root.clone();
    let configure = |name: &str| {
        onion::configure_unchecked(&OnionRequest {
            name,
            root: &debstrap_onion::HeldRoot::open(&scene.root).expect("hold the root"),
            chroot_path: &chroot_path,
            suite: "trixie",
            config: &scene.config(),
        })
        .expect("configure")
        .keep()
    };
    let one = configure("one");
    let two = configure("two");
    let schroot = scene.host_root.join("etc/schroot");
    let two_files = tree_of(&schroot)
        .into_iter()
        .filter(|p| p.contains("two"))
        .map(|p| (fs_err::read(schroot.join(&p)).ok(), p))
        .collect::<Vec<_>>();

    let listed = onion::list(&scene.host_root);
    let rows: Vec<(&str, Option<&str>, bool, bool)> = listed
        .iter()
        .map(|l| (l.name.as_str(), l.address.as_deref(), l.running, l.in_torrc))
        .collect();
    assert_eq!(
        rows,
        [
            ("one", Some(one.address.as_str()), false, true),
            ("two", Some(two.address.as_str()), false, true)
        ]
    );
    assert!(listed
        .iter()
        .all(|l| l.chroot.as_deref() == Some(&*chroot_path)));

    // Removing one keeps its key (and says where), the other service and every other byte.
    let removed = onion::remove("one", &scene.host_root, false).expect("remove one");
    assert!(removed.torrc_block);
    assert_eq!(removed.key_kept.as_deref(), Some(&*scene.key_dir("one")));
    assert!(
        removed
            .to_string()
            .contains(&format!("kept in {}", scene.key_dir("one").display())),
        "{removed}"
    );
    assert!(scene.key_dir("one").join("hs_ed25519_secret_key").exists());
    assert!(!schroot.join("chroot.d/one").exists());
    assert!(!schroot.join("debstrap-onion-one").exists());
    let socket = onion::socket_on_host(&chroot_path);
    assert_eq!(
        scene.torrc(),
        format!(
            "{before}\n{}",
            onion::torrc_block("two", 80, &format!("unix:{}", socket.display()))
        )
    );
    for (bytes, path) in &two_files {
        assert_eq!(
            &fs_err::read(schroot.join(path)).ok(),
            bytes,
            "{path} changed"
        );
    }
    let names: Vec<String> = onion::list(&scene.host_root)
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["two"]);

    // With --purge the key goes too, and the torrc is back to the byte.
    let removed = onion::remove("two", &scene.host_root, true).expect("remove two");
    assert_eq!(removed.key_kept, None);
    assert!(!scene.key_dir("two").exists());
    assert_eq!(scene.torrc(), before);
    assert!(onion::list(&scene.host_root).is_empty());
    // A key kept by an earlier remove can still be purged.
    onion::remove("one", &scene.host_root, true).expect("purge one");
    assert!(!scene.key_dir("one").exists());
    assert_eq!(scene.torrc(), before);
    // Nothing left to remove is an error naming the service.
    let err = onion::remove("one", &scene.host_root, false).expect_err("gone");
    assert!(matches!(err, OnionError::NotConfigured { .. }), "{err:?}");
}

#[test]
fn root_real_tor_reads_the_authorized_clients_and_the_clients_private_lines() {
    let scene = Scene::new();
    let mut config = scene.config();
    config.auth_clients = vec!["alice".to_string(), "bob-2".to_string()];
    let report = scene.configure("onion", &config).expect("configure");
    let clients = scene.key_dir("onion").join("authorized_clients");
    assert_eq!(mode(&clients), 0o700);
    let private_dir = scene.host_root.join("var/lib/debstrap-onion/clients/onion");
    assert_eq!(mode(&private_dir), 0o700);
    for client in ["alice", "bob-2"] {
        let auth = clients.join(format!("{client}.auth"));
        assert_eq!(mode(&auth), 0o600);
        let line = fs_err::read_to_string(&auth).expect("auth");
        assert!(line.starts_with("descriptor:x25519:"), "{line}");
        let private = private_dir.join(format!("{client}.auth_private"));
        assert_eq!(mode(&private), 0o600);
        let line = fs_err::read_to_string(&private).expect("auth_private");
        let address = report.address.trim_end_matches(".onion");
        assert!(
            line.starts_with(&format!("{address}:descriptor:x25519:")),
            "{line}"
        );
        if rustix::process::geteuid().is_root() {
            let tor = debstrap_onion::sys::user_by_name(onion::TOR_USER).expect("lookup");
            if let Some(tor) = tor {
                assert_eq!(fs_err::metadata(&auth).expect("meta").uid(), tor.uid);
            }
        }
    }
    assert!(
        report.to_string().contains("alice.auth_private"),
        "{report}"
    );
    // A rebuild keeps each client's key: nobody is locked out.
    let before = fs_err::read(clients.join("alice.auth")).expect("auth");
    let again = scene.configure("onion", &config).expect("again");
    assert_eq!(
        fs_err::read(clients.join("alice.auth")).expect("auth"),
        before
    );
    assert!(again.clients.iter().all(|c| c.private_file.is_none()));
    // A bad name is refused before anything changes.
    config.auth_clients = vec!["../x".to_string()];
    let err = scene.configure("onion", &config).expect_err("bad client");
    assert!(matches!(err, OnionError::BadClientName { .. }), "{err:?}");

    // Real tor, as the service, loads the authorized clients without a complaint...
    let Some((hostname, log)) = support::tor::run_service(&scene.key_dir("onion")) else {
        return;
    };
    assert_eq!(hostname.trim(), report.address);
    assert!(!log.contains("Client authorization"), "{log}");
    assert!(!log.to_lowercase().contains("[warn] client"), "{log}");
    // ... and, as each client, reads its private line (--verify-config parses it; one line per
    // address in a client's directory).
    for client in ["alice", "bob-2"] {
        let work = tempfile::tempdir().expect("tempdir");
        let auth_dir = work.path().join("auth");
        fs_err::create_dir(&auth_dir).expect("mkdir");
        fs_err::set_permissions(&auth_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let name = format!("{client}.auth_private");
        fs_err::copy(private_dir.join(&name), auth_dir.join(&name)).expect("copy");
        let torrc = work.path().join("torrc");
        let text = format!("SocksPort 0\nClientOnionAuthDir {}\n", auth_dir.display());
        fs_err::write(&torrc, text).expect("torrc");
        let out = std::process::Command::new("tor")
            .args(["--verify-config", "-f"])
            .arg(&torrc)
            .arg("--defaults-torrc")
            .arg(&torrc)
            .output()
            .expect("tor");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("Configuration was valid"), "{said}");
        assert!(!said.contains("Client authorization"), "{said}");
    }
}

/// `systemd-analyze verify` on `units` (paths), as systemd 252 does it: it looks for each
/// `Exec*=` program on the host, even under `RootDirectory=` (systemd issue #20402), so it runs
/// in a private mount namespace whose /usr/sbin holds a stand-in nginx, as the chroot does.
/// `None` when systemd-analyze or unshare is missing outside CI.
fn systemd_verify(units: &[PathBuf]) -> Option<std::process::Output> {
    if !support::host::require_root()
        || !support::host::require_program("systemd-analyze")
        || !support::host::require_program("unshare")
    {
        return None;
    }
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount -t tmpfs tmpfs /usr/sbin && cp /bin/true /usr/sbin/nginx && \
             exec systemd-analyze verify \"$@\"",
        )
        .arg("sh")
        .args(units)
        .output()
        .expect("unshare systemd-analyze");
    Some(out)
}

#[test]
fn systemd_unit_runs_the_chroots_nginx_sandboxed_and_systemd_verifies_it() {
    let scene = Scene::new();
    let configure = |name: &str, config: &OnionConfig| {
        onion::configure_unchecked(&OnionRequest {
            name,
            root: &debstrap_onion::HeldRoot::open(&scene.root).expect("hold the root"),
            chroot_path: &scene.root,
            suite: "trixie",
            config,
        })
        .expect("configure")
        .keep()
    };
    configure("onion", &scene.config());
    let units = scene.host_root.join("etc/systemd/system");
    let unit = units.join("debstrap-onion-onion.service");
    let text = fs_err::read_to_string(&unit).expect("unit");
    assert_eq!(mode(&unit), 0o644);
    let chroot = scene.root.display().to_string();
    let lines: Vec<&str> = text.lines().collect();
    for line in [
        "Type=exec".to_string(),
        format!("RootDirectory={chroot}"),
        // The chroot's /run: systemd 252 mounts an empty /run before binding, so a bind of
        // /run/onion alone finds no source (seen under a real systemd: real_archive_systemd.rs).
        format!("BindPaths={chroot}/run:/run"),
        // HOST_ROOT has no systemd: the unit for any systemd, whose PID namespace the chroot's
        // unshare makes, with setpriv dropping what only that step needs.
        "ExecStart=/usr/bin/unshare --pid --fork --kill-child --mount /bin/sh -c 'mount -t proc \
         -o nosuid,nodev,noexec,subset=pid proc /proc && exec /usr/bin/setpriv \
         --bounding-set=-sys_admin,-setpcap --inh-caps=-sys_admin,-setpcap \
         --ambient-caps=-sys_admin,-setpcap -- /usr/sbin/nginx -g \"daemon off;\"'"
            .to_string(),
        "PrivateNetwork=yes".to_string(),
        "PrivateIPC=yes".to_string(),
        "ProtectHostname=yes".to_string(),
        "NoNewPrivileges=yes".to_string(),
        "SystemCallFilter=@system-service @mount".to_string(),
        "SystemCallArchitectures=native".to_string(),
        "RestrictAddressFamilies=AF_UNIX".to_string(),
        "RestrictNamespaces=pid mnt".to_string(),
        "KillSignal=SIGTERM".to_string(),
        "KillMode=control-group".to_string(),
    ] {
        assert!(lines.contains(&line.as_str()), "no {line:?} in\n{text}");
    }
    let caps = lines
        .iter()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("a bounding set");
    for gone in ["CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_NET_RAW"] {
        assert!(!caps.contains(gone), "{caps}");
    }
    // The wrapper's CAP_SYS_ADMIN: gone from every set before nginx runs (the real systemd test
    // reads nginx's sets).
    assert!(caps.contains("CAP_SYS_ADMIN"), "{caps}");
    // Nothing of this build's host in any unit: not this program, whose path means nothing
    // where the unit may land.
    let program = std::env::current_exe().expect("exe");
    let program_dir = program.parent().expect("dir").display().to_string();
    let written: Vec<PathBuf> = [
        "debstrap-onion-onion.service",
        "debstrap-onion-onion-logs.timer",
        "debstrap-onion-onion-logs.service",
    ]
    .iter()
    .map(|file| units.join(file))
    .collect();
    for path in &written {
        let text = fs_err::read_to_string(path).expect("unit file");
        assert!(!text.contains(&program_dir), "{}:\n{text}", path.display());
        assert!(!text.contains("debstrap-onion start"), "{text}");
    }
    let wants = units.join("multi-user.target.wants/debstrap-onion-onion.service");
    assert!(fs_err::symlink_metadata(&wants).is_err(), "enabled unasked");

    // --local-port: the host's network, and the capability to bind a low port.
    let mut tcp = scene.config();
    tcp.local_port = Some(port(8080));
    configure("tcp", &tcp);
    let tcp_unit = units.join("debstrap-onion-tcp.service");
    let tcp_text = fs_err::read_to_string(&tcp_unit).expect("unit");
    assert!(!tcp_text.contains("\nPrivateNetwork=yes\n"), "{tcp_text}");
    assert!(tcp_text.contains("CAP_NET_BIND_SERVICE"), "{tcp_text}");

    // The form for systemd 257 and later (PrivatePIDs=), beside the one above.
    let newer = units.join("debstrap-onion-newer.service");
    let newer_spec = onion::UnitSpec {
        name: "newer",
        chroot: &scene.root,
        listen: onion::Listen::Socket,
        systemd: 257,
    };
    fs_err::write(&newer, onion::unit(&newer_spec)).expect("write");
    let mut all = written.clone();
    all.push(tcp_unit);
    if let Some(out) = systemd_verify(&all) {
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // This host's systemd-analyze (252 on Debian 12) knows every setting of that form but
    // PrivatePIDs=, and says so; a 257 would say nothing.
    if let Some(out) = systemd_verify(std::slice::from_ref(&newer)) {
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "systemd-analyze verify: {said}");
        let version = std::process::Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .expect("systemd-analyze --version");
        let version: u32 = String::from_utf8_lossy(&version.stdout)
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("a version");
        for line in said.lines() {
            assert!(
                version < 257
                    && line.ends_with("Unknown key 'PrivatePIDs' in section [Service], ignoring."),
                "systemd-analyze verify: {said}"
            );
        }
    }
    fs_err::remove_file(&newer).expect("remove");

    // `enable NAME` makes the links systemctl would make; `--enable` at build time too.
    let link = onion::enable(&scene.host_root, "onion").expect("enable");
    assert_eq!(link, wants);
    let timer_link = units.join("timers.target.wants/debstrap-onion-onion-logs.timer");
    assert!(timer_link.is_symlink());
    assert_eq!(
        fs_err::read_link(&wants).expect("link"),
        Path::new("/etc/systemd/system/debstrap-onion-onion.service")
    );
    let mut config = scene.config();
    config.enable = true;
    configure("two", &config);
    assert!(units
        .join("multi-user.target.wants/debstrap-onion-two.service")
        .is_symlink());
    // remove takes the unit and its link away.
    onion::remove("two", &scene.host_root, false).expect("remove");
    assert!(!units.join("debstrap-onion-two.service").exists());
    assert!(fs_err::symlink_metadata(
        units.join("multi-user.target.wants/debstrap-onion-two.service")
    )
    .is_err());
    assert!(unit.exists());
}

#[test]
fn enable_makes_each_missing_link_whichever_is_missing() {
    let scene = Scene::new();
    scene
        .configure("onion", &scene.config())
        .expect("configure");
    let units = scene.host_root.join("etc/systemd/system");
    let service = units.join("multi-user.target.wants/debstrap-onion-onion.service");
    let timer = units.join("timers.target.wants/debstrap-onion-onion-logs.timer");
    onion::enable(&scene.host_root, "onion").expect("enable");
    // Twice is the same as once.
    onion::enable(&scene.host_root, "onion").expect("enable again");
    assert!(service.is_symlink() && timer.is_symlink());
    // The timer's link alone is missing: enable adds it back, keeping the service's.
    fs_err::remove_file(&timer).expect("rm");
    onion::enable(&scene.host_root, "onion").expect("enable");
    assert_eq!(
        fs_err::read_link(&timer).expect("timer link"),
        Path::new("/etc/systemd/system/debstrap-onion-onion-logs.timer")
    );
    // The service's link alone is missing, or names something else: enable puts it right.
    fs_err::remove_file(&service).expect("rm");
    onion::enable(&scene.host_root, "onion").expect("enable");
    assert!(service.is_symlink());
    fs_err::remove_file(&service).expect("rm");
    std::os::unix::fs::symlink("/dev/null", &service).expect("mask-like link");
    onion::enable(&scene.host_root, "onion").expect("enable");
    assert_eq!(
        fs_err::read_link(&service).expect("service link"),
        Path::new("/etc/systemd/system/debstrap-onion-onion.service")
    );
}

/// A `systemctl` that records each call's arguments, one line each, and keeps a unit "active"
/// between `start` and `stop`; first on PATH for the program under test.
struct FakeSystemctl {
    dir: tempfile::TempDir,
}

impl FakeSystemctl {
    fn new() -> FakeSystemctl {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = format!(
            "#!/bin/sh\n\
             printf '%s\\n' \"$*\" >> {log}\n\
             case \"$1\" in\n\
             is-active) [ -e {state} ] && exit 0; exit 3 ;;\n\
             start) [ \"$2\" = debstrap-onion-onion.service ] && touch {state} ;;\n\
             stop) rm -f {state} ;;\n\
             esac\n\
             exit 0\n",
            log = dir.path().join("calls").display(),
            state = dir.path().join("active").display(),
        );
        let path = dir.path().join("systemctl");
        fs_err::write(&path, script).expect("fake systemctl");
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        FakeSystemctl { dir }
    }

    /// The calls made since the last look, and forgets them.
    fn calls(&self) -> Vec<String> {
        let log = self.dir.path().join("calls");
        let text = fs_err::read_to_string(&log).unwrap_or_default();
        let _ = fs_err::remove_file(&log);
        text.lines().map(str::to_owned).collect()
    }

    /// Runs this crate's program with the fake first on PATH.
    fn run(&self, args: &[&str], host_root: &Path) -> std::process::Output {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.dir.path().to_path_buf()];
        paths.extend(std::env::split_paths(&path));
        std::process::Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
            .args(args)
            .arg("--host-root")
            .arg(host_root)
            .env("PATH", std::env::join_paths(paths).expect("PATH"))
            .output()
            .expect("run debstrap-onion")
    }
}

fn ok(out: &std::process::Output) -> String {
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    said
}

#[test]
fn start_stop_and_rotate_go_through_systemctl_exactly_when_systemd_runs() {
    let scene = Scene::new();
    onion::configure_unchecked(&OnionRequest {
        name: "onion",
        root: &debstrap_onion::HeldRoot::open(&scene.root).expect("hold the root"),
        chroot_path: &scene.root,
        suite: "trixie",
        config: &scene.config(),
    })
    .expect("configure")
    .keep();
    // What `start` checks before it starts anything, and what systemd's nginx would serve: the
    // test listens on the socket itself, standing in for the nginx systemctl would start.
    fs_err::create_dir_all(scene.root.join("usr/sbin")).expect("mkdir");
    fs_err::write(scene.root.join("usr/sbin/nginx"), "").expect("stand-in nginx");
    let socket = onion::socket_on_host(&scene.root);
    let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("listen");
    let fake = FakeSystemctl::new();
    let unit = "debstrap-onion-onion.service";

    // Without systemd as PID 1 (no run/systemd/system): today's path, no systemctl at all.
    ok(&fake.run(&["stop", "onion"], &scene.host_root));
    assert_eq!(fake.calls(), Vec::<String>::new());

    fs_err::create_dir_all(scene.host_root.join("run/systemd/system")).expect("mkdir");
    let said = ok(&fake.run(&["start", "onion"], &scene.host_root));
    assert!(said.contains(unit), "{said}");
    assert_eq!(
        fake.calls(),
        [
            "daemon-reload".to_string(),
            format!("is-active --quiet {unit}"),
            format!("start {unit}"),
        ]
    );
    // Started already: a reload, not a second start.
    ok(&fake.run(&["start", "onion"], &scene.host_root));
    assert_eq!(
        fake.calls(),
        [
            "daemon-reload".to_string(),
            format!("is-active --quiet {unit}"),
            format!("reload {unit}"),
        ]
    );
    ok(&fake.run(&["rotate-logs", "onion"], &scene.host_root));
    assert_eq!(fake.calls(), ["start debstrap-onion-onion-logs.service"]);
    let said = ok(&fake.run(&["stop", "onion"], &scene.host_root));
    assert!(said.contains("nginx stopped"), "{said}");
    assert_eq!(
        fake.calls(),
        [format!("is-active --quiet {unit}"), format!("stop {unit}")]
    );
    // remove stops it the same way, then has systemd forget the removed units.
    ok(&fake.run(&["remove", "onion"], &scene.host_root));
    assert_eq!(
        fake.calls(),
        [
            format!("is-active --quiet {unit}"),
            format!("stop {unit}"),
            "daemon-reload".to_string(),
        ]
    );
}

/// `start`'s mounts on a chroot on a `nodev` filesystem include the host's device nodes bound
/// over the root's (files, not directories): `stop` must undo those too and leave no mount.
/// Run in a private mount namespace of the test's own, so nothing can outlive the test.
#[test]
fn stop_undoes_starts_mounts_on_a_nodev_chroot_device_nodes_included() {
    if !support::host::require_root() {
        return;
    }
    let place = tempfile::tempdir().expect("tempdir");
    let place = fs_err::canonicalize(place.path()).expect("canonical");
    debstrap_onion::stage::in_private_mounts(|| {
        support::sys::mount_tmpfs(&place, support::sys::MountFlags::NODEV, Some("size=64m"))
            .expect("mount a nodev tmpfs");
        let scene = Scene::within(tempfile::tempdir_in(&place).expect("tempdir"));
        onion::configure_unchecked(&OnionRequest {
            name: "onion",
            root: &debstrap_onion::HeldRoot::open(&scene.root).expect("hold the root"),
            chroot_path: &scene.root,
            suite: "trixie",
            config: &scene.config(),
        })
        .expect("configure")
        .keep();
        // What `start` leaves while nginx runs: the chroot's mounts, kept.
        let mounts = debstrap_onion::stage::ChrootMounts::mount(&scene.root).expect("mount");
        std::mem::forget(mounts);
        let root = fs_err::canonicalize(&scene.root).expect("canonical");
        let before = mounts_under(&root);
        assert!(
            before.contains(&root.join("dev/null")),
            "on nodev the host's /dev/null is bound over the root's: {before:?}"
        );

        let report = onion::stop("onion", &scene.host_root).expect("stop");
        assert!(!report.was_running);
        let mut unmounted = report.unmounted.clone();
        unmounted.sort();
        let mut expected = before;
        expected.sort();
        assert_eq!(unmounted, expected, "stop reports what it unmounted");
        let left = mounts_under(&root);
        assert!(left.is_empty(), "mounts left under the chroot: {left:?}");
        Ok(())
    })
    .expect("private mount namespace");
}

/// Mount points strictly under `root` in this thread's mount namespace.
fn mounts_under(root: &Path) -> Vec<PathBuf> {
    fs_err::read_to_string("/proc/thread-self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(PathBuf::from))
        .filter(|point| point != root && point.starts_with(root))
        .collect()
}

#[test]
fn a_service_without_its_unit_is_run_without_systemctl_even_under_systemd() {
    let scene = Scene::new();
    onion::configure_unchecked(&OnionRequest {
        name: "onion",
        root: &debstrap_onion::HeldRoot::open(&scene.root).expect("hold the root"),
        chroot_path: &scene.root,
        suite: "trixie",
        config: &scene.config(),
    })
    .expect("configure")
    .keep();
    fs_err::create_dir_all(scene.host_root.join("run/systemd/system")).expect("mkdir");
    fs_err::remove_file(
        scene
            .host_root
            .join("etc/systemd/system/debstrap-onion-onion.service"),
    )
    .expect("rm unit");
    let fake = FakeSystemctl::new();
    ok(&fake.run(&["stop", "onion"], &scene.host_root));
    assert_eq!(fake.calls(), Vec::<String>::new());
}

#[test]
fn rotate_logs_keeps_a_week_of_generations() {
    let scene = Scene::new();
    onion::configure_unchecked(&OnionRequest {
        name: "onion",
        root: &debstrap_onion::HeldRoot::open(&scene.root).expect("hold the root"),
        chroot_path: &scene.root,
        suite: "trixie",
        config: &scene.config(),
    })
    .expect("configure")
    .keep();
    let logs = scene.root.join("var/log/nginx");
    fs_err::create_dir_all(&logs).expect("mkdir");
    for day in 1..=9 {
        fs_err::write(logs.join("onion.access.log"), format!("day {day}\n")).expect("log");
        let report = onion::rotate_logs("onion", &scene.host_root).expect("rotate");
        assert_eq!(report.rotated, [logs.join("onion.access.log")]);
        assert!(!report.reopened);
    }
    assert!(!logs.join("onion.access.log").exists());
    for generation in 1..=onion::LOG_GENERATIONS {
        let text = fs_err::read_to_string(logs.join(format!("onion.access.log.{generation}")))
            .expect("generation");
        assert_eq!(text, format!("day {}\n", 10 - generation));
    }
    let eighth = format!("onion.access.log.{}", onion::LOG_GENERATIONS + 1);
    assert!(!logs.join(eighth).exists());
}

/// Every path under `dir`, relative, sorted.
fn tree_of(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in fs_err::read_dir(&at).expect("list") {
            let path = entry.expect("entry").path();
            out.push(
                path.strip_prefix(dir)
                    .expect("below")
                    .to_string_lossy()
                    .into_owned(),
            );
            if fs_err::symlink_metadata(&path).expect("meta").is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_foreign_schroot_definition_is_refused_before_any_host_change() {
    let scene = Scene::new();
    let path = scene.host_root.join("etc/schroot/chroot.d/onion");
    fs_err::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs_err::write(&path, "[onion]\ndirectory=/srv/mine\n").expect("write");
    let before = tree_of(&scene.host_root);
    let err = scene
        .configure("onion", &scene.config())
        .expect_err("foreign file");
    assert!(matches!(err, OnionError::ForeignFile { .. }), "{err:?}");
    // No key directory, no torrc: the refusal came before the first host-side change.
    assert_eq!(tree_of(&scene.host_root), before);
}

#[test]
fn a_failing_host_step_rolls_back_the_earlier_ones() {
    let scene = Scene::new();
    // An earlier build's torrc, and an etc/schroot that cannot hold chroot.d: the schroot step,
    // the last, fails after the key and the torrc are written.
    fs_err::create_dir_all(scene.host_root.join("etc/tor")).expect("mkdir");
    let torrc = "Log notice syslog\n";
    fs_err::write(scene.host_root.join("etc/tor/torrc"), torrc).expect("torrc");
    fs_err::write(scene.host_root.join("etc/schroot"), "not a directory\n").expect("write");
    let before = tree_of(&scene.host_root);
    let err = scene
        .configure("onion", &scene.config())
        .expect_err("schroot step fails");
    assert!(matches!(err, OnionError::WriteSchroot { .. }), "{err:?}");
    assert_eq!(
        tree_of(&scene.host_root),
        before,
        "host-side changes remain"
    );
    assert_eq!(scene.torrc(), torrc);
}

#[test]
fn concurrent_builds_keep_each_others_torrc_blocks() {
    let scene = Scene::new();
    let names: Vec<String> = (0..8).map(|i| format!("svc{i}")).collect();
    std::thread::scope(|scope| {
        for name in &names {
            let scene = &scene;
            scope.spawn(move || {
                for _ in 0..5 {
                    scene.configure(name, &scene.config()).expect("configure");
                }
            });
        }
    });
    let torrc = scene.torrc();
    for name in &names {
        assert_eq!(
            torrc
                .matches(&format!("# BEGIN debstrap-onion {name}\n"))
                .count(),
            1,
            "{name}'s block was lost or doubled:\n{torrc}"
        );
    }
}

#[test]
fn onion_key_symlinked_to_a_key_outside_is_refused() {
    let scene = Scene::new();
    // A root-only key elsewhere on the host, and a user's directory pointing at it.
    let other = scene.host_root.join("var/lib/tor/other");
    fs_err::create_dir_all(&other).expect("mkdir");
    let secret = onion::OnionKey::from_seed(&[7u8; 32]);
    fs_err::write(other.join("hs_ed25519_secret_key"), secret.secret_file()).expect("write");
    fs_err::set_permissions(
        other.join("hs_ed25519_secret_key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    let import = scene.host_root.join("user-key");
    fs_err::create_dir_all(&import).expect("mkdir");
    std::os::unix::fs::symlink(
        other.join("hs_ed25519_secret_key"),
        import.join("hs_ed25519_secret_key"),
    )
    .expect("symlink");
    let mut config = scene.config();
    config.onion_key = Some(import);
    let err = scene
        .configure("onion", &config)
        .expect_err("symlinked key");
    assert!(matches!(err, OnionError::NotRegularFile { .. }), "{err:?}");
    assert!(!scene.key_dir("onion").exists());
}

#[test]
fn site_file_swapped_for_a_symlink_never_copies_a_file_from_outside() {
    let scene = Scene::new();
    let site = scene.host_root.join("site");
    fs_err::create_dir_all(&site).expect("mkdir");
    let secret = scene.host_root.join("secret");
    fs_err::write(&secret, "ROOT ONLY\n").expect("secret");
    fs_err::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // The user flips page.html between a regular file and a symlink to the secret, atomically
    // and as fast as they can, while the build copies the site.
    // Prepared beside the site, so the site holds only page.html.
    let staging = scene.host_root.join("staging");
    fs_err::create_dir_all(&staging).expect("mkdir");
    let regular = staging.join("regular");
    let link = staging.join("link");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut config = scene.config();
    config.site = Some(site.clone());
    let copied_secret = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = fs_err::write(&regular, "page\n");
                let _ = fs_err::rename(&regular, site.join("page.html"));
                let _ = std::os::unix::fs::symlink(&secret, &link);
                let _ = fs_err::rename(&link, site.join("page.html"));
            }
        });
        let mut copied_secret = false;
        for _ in 0..2000 {
            if scene.configure("onion", &config).is_ok() {
                let page = scene.root.join("var/www/onion/page.html");
                if fs_err::read_to_string(page).is_ok_and(|text| text.contains("ROOT ONLY")) {
                    copied_secret = true;
                    break;
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        copied_secret
    });
    assert!(
        !copied_secret,
        "a file from outside the site reached the web root"
    );
}

#[test]
fn a_torrc_that_tor_refuses_is_not_written_and_nothing_changes() {
    if !support::host::require_program("tor")
        || !Path::new("/usr/share/tor/tor-service-defaults-torrc").exists()
    {
        return;
    }
    let scene = Scene::new();
    // An option tor does not know: the torrc with our block would not start tor.
    fs_err::create_dir_all(scene.host_root.join("etc/tor")).expect("mkdir");
    let broken = "NoSuchTorOption 1\n";
    fs_err::write(scene.host_root.join("etc/tor/torrc"), broken).expect("torrc");
    let before = tree_of(&scene.host_root);
    let err = scene
        .configure("onion", &scene.config())
        .expect_err("tor refuses the torrc");
    assert!(matches!(err, OnionError::TorrcRejected { .. }), "{err:?}");
    assert!(err.to_string().contains("NoSuchTorOption"), "{err}");
    assert_eq!(scene.torrc(), broken);
    assert_eq!(
        tree_of(&scene.host_root),
        before,
        "host-side changes remain"
    );
}

/// Real tor serving HOST_ROOT's torrc as Debian's tor serves /etc/tor/torrc, offline
/// (DisableNetwork 1), with its control socket and cookie where Debian's are, under HOST_ROOT
/// (run/tor/control, run/tor/control.authcookie). Its /var/lib/tor is HOST_ROOT's, bound there
/// in a private mount namespace that ends with it, so the torrc's `HiddenServiceDir
/// /var/lib/tor/NAME/` lines name the keys this test wrote and the host's own /var/lib/tor is
/// never touched. It runs as root, not as Debian's `User debian-tor`: tor 0.4.9 opens a control
/// socket after switching users only once the network is enabled, so the key directories are
/// handed to root first (see [`HostRootTor::own`]). Killed (and its namespace gone) when dropped.
struct HostRootTor {
    child: std::process::Child,
    log: PathBuf,
}

impl HostRootTor {
    fn start(host_root: &Path, work: &Path) -> HostRootTor {
        let run = host_root.join("run/tor");
        let data = work.join("data");
        for dir in [&run, &data] {
            fs_err::create_dir_all(dir).expect("mkdir");
            fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        HostRootTor::own(host_root);
        let log = work.join("tor.log");
        let empty = work.join("defaults");
        fs_err::write(&empty, "").expect("defaults");
        let tor = support::tor::tor_binary().expect("tor");
        let child = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$0\" /var/lib/tor && exec \"$@\"")
            .arg(host_root.join("var/lib/tor"))
            .arg(tor)
            .arg("-f")
            .arg(host_root.join("etc/tor/torrc"))
            .arg("--defaults-torrc")
            .arg(&empty)
            .args([
                "--RunAsDaemon",
                "0",
                "--DisableNetwork",
                "1",
                "--SocksPort",
                "0",
            ])
            .arg("--DataDirectory")
            .arg(&data)
            .arg("--ControlSocket")
            .arg(format!(
                "{} GroupWritable RelaxDirModeCheck",
                run.join("control").display()
            ))
            .args(["--CookieAuthentication", "1", "--CookieAuthFile"])
            .arg(run.join("control.authcookie"))
            .arg("--Log")
            .arg(format!("notice file {}", log.display()))
            .stdin(std::process::Stdio::null())
            .stdout(
                fs_err::File::create(work.join("tor.out"))
                    .expect("out")
                    .into_parts()
                    .0,
            )
            .stderr(
                fs_err::File::create(work.join("tor.err"))
                    .expect("err")
                    .into_parts()
                    .0,
            )
            .spawn()
            .expect("start tor");
        HostRootTor { child, log }
    }

    /// Hands every key directory under HOST_ROOT/var/lib/tor to root, the user this tor runs as
    /// (tor refuses a service directory another user owns).
    fn own(host_root: &Path) {
        let dirs = fs_err::read_dir(host_root.join("var/lib/tor")).expect("key dirs");
        for dir in dirs {
            let dir = dir.expect("entry").path();
            let mut paths = vec![dir.clone()];
            for entry in fs_err::read_dir(&dir).expect("key dir") {
                paths.push(entry.expect("entry").path());
            }
            for path in paths {
                std::os::unix::fs::lchown(&path, Some(0), Some(0)).expect("chown");
            }
        }
    }

    /// Polls `list` until `done` holds for it (tor loads its services before it serves the
    /// control socket, and on SIGHUP), failing if tor exits or 60 s pass.
    fn wait_for(&mut self, host_root: &Path, done: impl Fn(&[onion::Listed]) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let listed = onion::list(host_root);
            if done(&listed) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let dir = self.log.parent().expect("work dir");
                panic!(
                    "tor exited ({status}): {}{}{}",
                    fs_err::read_to_string(&self.log).unwrap_or_default(),
                    fs_err::read_to_string(dir.join("tor.out")).unwrap_or_default(),
                    fs_err::read_to_string(dir.join("tor.err")).unwrap_or_default()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "after 60 s: {listed:?}\n{}",
                fs_err::read_to_string(&self.log).unwrap_or_default()
            );
            // Polling what tor answers; the deadline above bounds it.
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn signal(&self, signal: support::sys::Signal) {
        support::sys::signal(self.child.id(), signal).expect("signal tor");
    }
}

impl Drop for HostRootTor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tor_states(listed: &[onion::Listed]) -> Vec<(String, onion::TorState)> {
    listed
        .iter()
        .map(|l| (l.name.clone(), l.tor.clone()))
        .collect()
}

#[test]
fn root_real_tor_list_shows_what_the_running_tor_loaded_not_what_torrc_says() {
    if !support::host::require_root()
        || !support::host::require_program("unshare")
        || support::tor::tor_binary().is_none()
    {
        return;
    }
    let scene = Scene::new();
    let configure = |name: &str| {
        onion::configure_unchecked(&OnionRequest {
            name,
            root: &debstrap_onion::HeldRoot::open(&scene.root).expect("hold the root"),
            chroot_path: &scene.root,
            suite: "trixie",
            config: &scene.config(),
        })
        .expect("configure")
        .keep()
    };
    configure("one");
    let before = onion::list(&scene.host_root);
    assert_eq!(
        tor_states(&before),
        [("one".to_string(), onion::TorState::NotRunning)]
    );
    assert!(
        before[0].to_string().contains("\ttor not running\t"),
        "{}",
        before[0]
    );
    assert_eq!(before[0].hostname_matches_key, Some(true));

    let work = tempfile::tempdir_in(scene._dir.path()).expect("tempdir");
    let mut tor = HostRootTor::start(&scene.host_root, work.path());
    tor.wait_for(&scene.host_root, |l| {
        tor_states(l) == [("one".to_string(), onion::TorState::Loaded)]
    });
    // A second service in torrc that the running tor has not read yet: list tells them apart,
    // though both blocks are in the file.
    configure("two");
    let listed = onion::list(&scene.host_root);
    assert!(listed.iter().all(|l| l.in_torrc));
    assert_eq!(
        tor_states(&listed),
        [
            ("one".to_string(), onion::TorState::Loaded),
            ("two".to_string(), onion::TorState::NotLoaded)
        ]
    );
    assert!(
        listed[1]
            .to_string()
            .contains("tor runs without it (reload tor)"),
        "{}",
        listed[1]
    );
    // What `start` does to tor: SIGHUP, and tor loads the second service.
    HostRootTor::own(&scene.host_root);
    tor.signal(support::sys::Signal::HUP);
    tor.wait_for(&scene.host_root, |l| {
        l.iter().all(|s| s.tor == onion::TorState::Loaded)
    });
    // tor also wrote each hostname again from our key.
    assert!(onion::list(&scene.host_root)
        .iter()
        .all(|l| l.hostname_matches_key == Some(true)));
    tor.signal(support::sys::Signal::TERM);
    let _ = tor.child.wait();
    assert!(onion::list(&scene.host_root)
        .iter()
        .all(|l| l.tor == onion::TorState::NotRunning));
}

#[test]
fn an_images_host_root_is_made_new_inside_the_root_and_written_through_its_descriptor() {
    let scene = Scene::new();
    let victim = scene.host_root.join("victim");
    fs_err::create_dir_all(&victim).expect("mkdir");
    // A package's absolute symlink on the way: it leads to the root's own copy of that path.
    let inside = scene.root.join(victim.strip_prefix("/").expect("absolute"));
    fs_err::create_dir_all(&inside).expect("mkdir");
    fs_err::create_dir_all(scene.root.join("var/lib")).expect("mkdir");
    std::os::unix::fs::symlink(&victim, scene.root.join("var/lib/debstrap-onion"))
        .expect("symlink");
    let held = debstrap_onion::HeldRoot::open(&scene.root).expect("hold the root");
    let host_root = onion::image_host_root(&held).expect("made");
    assert!(inside.join("host").is_dir());
    assert_eq!(mode(&inside.join("host")), 0o700);
    assert_eq!(tree_of(&victim), Vec::<String>::new(), "made on the host");
    // The root's path now names another directory: the pinned name still leads to the held one.
    let moved = scene.root.with_file_name("moved");
    fs_err::rename(&scene.root, &moved).expect("move the root away");
    fs_err::create_dir_all(&scene.root).expect("decoy");
    fs_err::write(host_root.path().join("f"), "x").expect("write through the pinned name");
    let moved_inside = moved.join(victim.strip_prefix("/").expect("absolute"));
    assert_eq!(
        fs_err::read_to_string(moved_inside.join("host/f")).expect("landed in the held root"),
        "x"
    );
    assert_eq!(
        host_root.shown(),
        scene.root.join("var/lib/debstrap-onion/host")
    );
    // Made new: one that is already there (a package's, a hook's) is refused.
    let again = debstrap_onion::HeldRoot::open(&moved).expect("hold");
    let err = onion::image_host_root(&again).expect_err("exists");
    assert!(matches!(err, OnionError::Unconfined { .. }), "{err:?}");
}
