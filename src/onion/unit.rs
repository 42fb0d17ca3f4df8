//! The systemd units of a service: takes NAME, the chroot's path as the host sees it, where nginx
//! listens and the version of systemd; gives HOST_ROOT/etc/systemd/system/
//! debstrap-onion-NAME.service, which runs the chroot's nginx in systemd's own sandbox (no program
//! of ours is needed where the unit lands), the daily log rotation (a timer and its service), and
//! their `*.wants` links when enabled. Nothing is enabled unless asked (`--enable`,
//! `debstrap-onion enable NAME`).

use std::path::{Path, PathBuf};

use super::files::{self, Perms};
use super::host::HostChanges;
use super::nginx::{Listen, SOCKET, SOCKET_DIR};
use super::OnionError;

/// systemd's directory for units the administrator installs, as seen from `/`.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// First line of every unit we write.
const MARK: &str = "# Written by debstrap-onion";
/// The systemd assumed when HOST_ROOT's cannot be asked (Debian 12's): a unit written for it
/// works on every later one too.
pub const ASSUMED_SYSTEMD: u32 = 252;
/// The first systemd that knows `PrivateIPC=`.
const PRIVATE_IPC_SINCE: u32 = 248;
/// The first systemd that knows `PrivatePIDs=`.
const PRIVATE_PIDS_SINCE: u32 = 257;

/// The unit's file name for NAME.
pub fn unit_name(name: &str) -> String {
    format!("debstrap-onion-{name}.service")
}

/// What a service's units are made from.
#[derive(Debug, Clone, Copy)]
pub struct UnitSpec<'a> {
    pub name: &'a str,
    /// The chroot as the host that runs the unit sees it.
    pub chroot: &'a Path,
    pub listen: Listen,
    /// The major version of the systemd the unit is written for.
    pub systemd: u32,
}

/// The capabilities nginx's master keeps under systemd: the same list as without it (see
/// `chroot::KEPT_CAPABILITIES`), by name.
fn capabilities(listen: Listen) -> &'static str {
    match listen {
        Listen::Socket => {
            "CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_KILL CAP_SETGID \
             CAP_SETUID"
        }
        Listen::Tcp(_) => {
            "CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_KILL CAP_SETGID \
             CAP_SETUID CAP_NET_BIND_SERVICE"
        }
    }
}

/// The text of NAME's unit: the chroot's own nginx, run by systemd in the chroot
/// (`RootDirectory=`) with namespaces, a cut capability set, no_new_privs and a system-call
/// filter. Only the socket's directory is shared with the host, where tor reaches it.
pub fn unit(spec: &UnitSpec) -> String {
    let UnitSpec {
        name,
        chroot,
        listen,
        systemd,
    } = *spec;
    let chroot = chroot.display();
    let (network, families) = match listen {
        Listen::Socket => (
            "# Its own network namespace, holding only a loopback that is down: no address to\n\
             # reach, so a compromised site cannot reveal the host's.\n\
             PrivateNetwork=yes\n",
            "AF_UNIX",
        ),
        Listen::Tcp(_) => (
            "# --local-port: nginx listens on the host's 127.0.0.1, so it shares the host's\n\
             # network (and could connect out).\n",
            "AF_UNIX AF_INET AF_INET6",
        ),
    };
    let ipc = if systemd >= PRIVATE_IPC_SINCE {
        "PrivateIPC=yes\n".to_string()
    } else {
        format!("# PrivateIPC= needs systemd {PRIVATE_IPC_SINCE}; this unit was written for {systemd}.\n")
    };
    let pids = pid_namespace(systemd, listen);
    format!(
        "{MARK} for the onion service {name}; rebuilding {name} replaces it.\n\
         # It runs the chroot's nginx in systemd's sandbox and needs no debstrap-onion program.\n\
         [Unit]\n\
         Description=Onion service {name}: nginx in its chroot, published by tor\n\
         Wants=tor.service\n\
         After=network.target tor.service\n\
         RequiresMountsFor={chroot}\n\
         \n\
         [Service]\n\
         Type=exec\n\
         RootDirectory={chroot}\n\
         # /proc, /sys and a minimal /dev of the sandbox's own; /run is the chroot's, where the\n\
         # host's tor reaches nginx's socket. (Binding only {SOCKET_DIR} would not do: systemd\n\
         # mounts an empty /run first and then finds no {SOCKET_DIR} to bind.)\n\
         MountAPIVFS=yes\n\
         PrivateDevices=yes\n\
         PrivateTmp=yes\n\
         BindPaths={chroot}/run:/run\n\
         {network}\
         {ipc}\
         {setting}\
         # A UTS namespace of its own (the host's name stays readable: systemd sets no other).\n\
         ProtectHostname=yes\n\
         # PrivateUsers= is not used: it maps only root, and nginx's workers run as www-data.\n\
         ProtectSystem=full\n\
         ProtectHome=yes\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectKernelLogs=yes\n\
         ProtectControlGroups=yes\n\
         ProtectClock=yes\n\
         NoNewPrivileges=yes\n\
         CapabilityBoundingSet={caps}\n\
         RestrictAddressFamilies={families}\n\
         RestrictNamespaces={namespaces}\n\
         RestrictRealtime=yes\n\
         RestrictSUIDSGID=yes\n\
         LockPersonality=yes\n\
         SystemCallArchitectures=native\n\
         SystemCallFilter={filter}\n\
         SystemCallErrorNumber=EPERM\n\
         # A socket left by an nginx that was killed would make bind(2) fail.\n\
         ExecStartPre=/bin/rm -f {SOCKET}\n\
         {commands}\
         TimeoutStopSec=15\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        setting = pids.setting,
        caps = pids.capabilities,
        namespaces = pids.namespaces,
        filter = pids.filter,
        commands = pids.commands,
    )
}

/// How a unit gives nginx its PID namespace: the lines that differ between a systemd that has
/// `PrivatePIDs=` and one that has not.
struct PidNamespace {
    /// The `PrivatePIDs=` line, or the comment saying what stands in for it.
    setting: &'static str,
    capabilities: String,
    namespaces: &'static str,
    filter: &'static str,
    /// From the configuration test to the stop: `ExecStartPre=`, `ExecStart=`, `ExecReload=`,
    /// `KillSignal=`, `KillMode=`.
    commands: String,
}

/// What the wrapper drops before nginx runs: the capabilities only the wrapper needs, from every
/// set they could come back from at exec (root's permitted set is bounding | inheritable).
const SETPRIV: &str = "/usr/bin/setpriv --bounding-set=-sys_admin,-setpcap \
                       --inh-caps=-sys_admin,-setpcap --ambient-caps=-sys_admin,-setpcap --";

/// The PID namespace nginx runs in. From systemd [`PRIVATE_PIDS_SINCE`] on, `PrivatePIDs=`;
/// nginx's start refuses to go on if it finds itself outside one (a unit moved to an older
/// systemd, which ignores the setting). Before, the chroot's own util-linux (Essential in Debian)
/// makes it: `unshare` puts a new PID and mount namespace around nginx, where `mount` gives it a
/// /proc of its own processes only (`subset=pid`: no /proc/sys or sysrq-trigger that root could
/// write), and `setpriv` drops CAP_SYS_ADMIN and CAP_SETPCAP, which only these steps need, before
/// nginx starts. The unit allows that much more: those two capabilities, mount(2), and new PID
/// and mount namespaces, none of which nginx keeps.
fn pid_namespace(systemd: u32, listen: Listen) -> PidNamespace {
    if systemd >= PRIVATE_PIDS_SINCE {
        return PidNamespace {
            setting: "PrivatePIDs=yes\n",
            capabilities: capabilities(listen).to_string(),
            namespaces: "yes",
            filter: "@system-service",
            commands: format!(
                "ExecStartPre=/usr/sbin/nginx -t -q\n\
                 # PID 1 of its own namespace, or no nginx: an older systemd ignores PrivatePIDs=.\n\
                 ExecStart=/bin/sh -c '[ \"$$$$\" = 1 ] || {{ echo \"{refusal}\" >&2; exit 1; }}; \
                 exec /usr/sbin/nginx -g \"daemon off;\"'\n\
                 # Each command has a PID namespace of its own: the signal is sent from outside\n\
                 # the sandbox (\"+\"), where nginx's pid is the one systemd knows.\n\
                 ExecReload=+/bin/sh -c 'kill -HUP \"$$MAINPID\"'\n\
                 # nginx's graceful stop; whatever is left is killed after the timeout.\n\
                 KillSignal=SIGQUIT\n\
                 KillMode=mixed\n",
                refusal = format_args!(
                    "this unit needs PrivatePIDs= (systemd {PRIVATE_PIDS_SINCE}); rebuild the \
                     service on this host"
                ),
            ),
        };
    }
    PidNamespace {
        setting:
            "# PrivatePIDs= needs systemd 257: ExecStart= below makes nginx's PID namespace.\n",
        capabilities: format!("{} CAP_SYS_ADMIN CAP_SETPCAP", capabilities(listen)),
        namespaces: "pid mnt",
        filter: "@system-service @mount",
        commands: format!(
            "ExecStartPre={SETPRIV} /usr/sbin/nginx -t -q\n\
             ExecStart=/usr/bin/unshare --pid --fork --kill-child --mount /bin/sh -c \
             'mount -t proc -o nosuid,nodev,noexec,subset=pid proc /proc && \
             exec {SETPRIV} /usr/sbin/nginx -g \"daemon off;\"'\n\
             # The main process is unshare, which passes no signal on: the reload goes to its\n\
             # child, nginx.\n\
             ExecReload=/bin/sh -c 'kill -HUP $$(cat /proc/$$MAINPID/task/$$MAINPID/children)'\n\
             # unshare ignores SIGTERM and waits for nginx: every process of the unit gets the\n\
             # signal and nginx stops at once (its fast stop), then unshare exits with it.\n\
             KillSignal=SIGTERM\n\
             KillMode=control-group\n"
        ),
    }
}

/// The timer's file name for NAME: the daily log rotation.
fn timer_name(name: &str) -> String {
    format!("debstrap-onion-{name}-logs.timer")
}

/// The service the timer starts.
pub(crate) fn rotate_name(name: &str) -> String {
    format!("debstrap-onion-{name}-logs.service")
}

/// The shell script, as a unit's `ExecStart=` writes it, that shifts each log named in its
/// arguments to `.1` inside the chroot, keeping [`super::LOG_GENERATIONS`] generations.
fn rotate_script() -> String {
    let older: Vec<String> = (1..super::LOG_GENERATIONS)
        .rev()
        .map(|g| g.to_string())
        .collect();
    // `$$` is systemd's escape for `$`.
    format!(
        "cd /var/log/nginx || exit 0; for log in \"$$@\"; do [ -f \"$$log\" ] || continue; \
         for g in {older}; do [ ! -e \"$$log.$$g\" ] || mv -f \"$$log.$$g\" \"$$log.$$((g + 1))\"; \
         done; mv -f \"$$log\" \"$$log.1\"; done",
        older = older.join(" ")
    )
}

/// The daily timer of NAME's log rotation, and the service it runs: (file name, text) each.
/// The logs are renamed inside the chroot (by its own `sh` and `mv`, so a symlink there cannot
/// lead to the host's files), then nginx is told to reopen them (SIGUSR1).
pub fn timer(spec: &UnitSpec) -> [(String, String); 2] {
    let name = spec.name;
    let chroot = spec.chroot.display();
    [
        (
            timer_name(name),
            format!(
                "{MARK} for the onion service {name}; rebuilding {name} replaces it.\n\
                 [Unit]\n\
                 Description=Daily rotation of the logs of onion service {name}\n\
                 \n\
                 [Timer]\n\
                 OnCalendar=daily\n\
                 Persistent=true\n\
                 \n\
                 [Install]\n\
                 WantedBy=timers.target\n"
            ),
        ),
        (
            rotate_name(name),
            format!(
                "{MARK} for the onion service {name}; rebuilding {name} replaces it.\n\
                 [Unit]\n\
                 Description=Rotate the logs of onion service {name}\n\
                 RequiresMountsFor={chroot}\n\
                 \n\
                 [Service]\n\
                 Type=oneshot\n\
                 RootDirectory={chroot}\n\
                 RootDirectoryStartOnly=yes\n\
                 PrivateNetwork=yes\n\
                 NoNewPrivileges=yes\n\
                 CapabilityBoundingSet=CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER\n\
                 SystemCallArchitectures=native\n\
                 SystemCallFilter=@system-service\n\
                 SystemCallErrorNumber=EPERM\n\
                 ExecStart=/bin/sh -c '{script}' rotate {name}.access.log {name}.error.log\n\
                 # On the host: a stopped service has nothing to reopen.\n\
                 ExecStartPost=-+/bin/systemctl kill --kill-whom=main --signal=SIGUSR1 {unit}\n",
                script = rotate_script(),
                unit = unit_name(name),
            ),
        ),
    ]
}

/// Whether `chroot` can be written into a unit as it is: absolute, and only letters, digits and
/// `/._-+@` (no space, quote, `%`, `$`, `:` or `\` that systemd would read otherwise).
pub(crate) fn check_path(chroot: &Path) -> Result<(), OnionError> {
    let text = chroot.to_string_lossy();
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+@".contains(c));
    if chroot.is_absolute() && plain && !text.contains("/../") && !text.ends_with("/..") {
        Ok(())
    } else {
        Err(OnionError::UnitPath {
            path: chroot.to_path_buf(),
        })
    }
}

/// The major version of the systemd that will run HOST_ROOT's units: `systemctl --version` when
/// HOST_ROOT is `/`, else the version in the name of HOST_ROOT's `libsystemd-shared-N.so`;
/// [`ASSUMED_SYSTEMD`] when neither tells (no systemd, or an image's host files), whose unit
/// gives nginx its PID namespace on any systemd.
pub fn systemd_version(host_root: &Path) -> u32 {
    if host_root != Path::new("/") {
        return shared_library_version(host_root).unwrap_or(ASSUMED_SYSTEMD);
    }
    std::process::Command::new("systemctl")
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| parse_version(&String::from_utf8_lossy(&out.stdout)))
        .unwrap_or(ASSUMED_SYSTEMD)
}

/// The N of `libsystemd-shared-N.so` in the directories distributions put it under `root`
/// (Debian's multiarch `usr/lib/TRIPLET/systemd`, Fedora's `usr/lib64/systemd`, Arch's
/// `usr/lib/systemd`); the highest when several are there.
fn shared_library_version(root: &Path) -> Option<u32> {
    let lib = root.join("usr/lib");
    let multiarch = fs_err::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("systemd"));
    [lib.join("systemd"), root.join("usr/lib64/systemd")]
        .into_iter()
        .chain(multiarch)
        .flat_map(|dir| fs_err::read_dir(dir).into_iter().flatten().flatten())
        .filter_map(|entry| {
            let name = entry.file_name();
            let name = name.to_str()?;
            name.strip_prefix("libsystemd-shared-")?
                .strip_suffix(".so")?
                .parse()
                .ok()
        })
        .max()
}

/// The number in `systemctl --version`'s first line, `systemd 252 (252.39-1~deb12u2)`.
fn parse_version(text: &str) -> Option<u32> {
    let mut words = text.lines().next()?.split_whitespace();
    (words.next()? == "systemd").then_some(())?;
    words.next()?.parse().ok()
}

/// Whether systemd manages HOST_ROOT's services: HOST_ROOT/run/systemd/system exists, which
/// systemd creates when it boots as PID 1 (what `sd_booted()` asks).
pub fn systemd_runs(host_root: &Path) -> bool {
    host_root.join("run/systemd/system").is_dir()
}

/// Whether NAME's unit is written under HOST_ROOT.
pub fn installed(host_root: &Path, name: &str) -> bool {
    fs_err::symlink_metadata(unit_path(host_root, name)).is_ok_and(|m| m.is_file())
}

fn unit_path(host_root: &Path, name: &str) -> PathBuf {
    host_root
        .join(UNIT_DIR.trim_start_matches('/'))
        .join(unit_name(name))
}

fn wants_link(host_root: &Path, name: &str) -> PathBuf {
    host_root
        .join(UNIT_DIR.trim_start_matches('/'))
        .join("multi-user.target.wants")
        .join(unit_name(name))
}

/// Writes NAME's unit and its log rotation under HOST_ROOT (0644), refusing a file of those
/// names we did not write; enables them when `enable`. Each change is recorded in `changes`
/// first.
pub(crate) fn write(
    host_root: &Path,
    spec: &UnitSpec,
    enable: bool,
    changes: &mut HostChanges,
) -> Result<PathBuf, OnionError> {
    check_path(spec.chroot)?;
    let name = spec.name;
    let path = unit_path(host_root, name);
    let dir = host_root.join(UNIT_DIR.trim_start_matches('/'));
    let mut files = vec![(path.clone(), unit(spec))];
    files.extend(
        timer(spec)
            .into_iter()
            .map(|(file, text)| (dir.join(file), text)),
    );
    // Every file is checked before any is written.
    for (file, _) in &files {
        super::schroot::ensure_ours(file)?;
    }
    for (file, text) in &files {
        let write_error = |source| OnionError::WriteUnit {
            path: file.clone(),
            source,
        };
        // Recorded before its directory is made, so a roll-back removes a new directory too.
        changes.before_write(host_root, file).map_err(write_error)?;
        files::create_dir_all_mode(&dir, 0o755).map_err(write_error)?;
        files::write_atomic(file, text.as_bytes(), Perms::mode(0o644)).map_err(write_error)?;
    }
    if enable {
        enable_with(host_root, name, Some(changes))?;
    }
    Ok(path)
}

/// Enables NAME's unit and its log rotation: the `multi-user.target.wants` and
/// `timers.target.wants` links systemctl would make. Each link is made if missing, so enabling
/// twice, or after one link was removed, ends with both.
pub fn enable(host_root: &Path, name: &str) -> Result<PathBuf, OnionError> {
    crate::config::validate_name(name).map_err(|_| OnionError::BadName {
        name: name.to_string(),
    })?;
    enable_with(host_root, name, None)
}

/// The `*.wants` links of NAME: (link, what it names), the service's first.
fn links(host_root: &Path, name: &str) -> [(PathBuf, PathBuf); 2] {
    let dir = host_root.join(UNIT_DIR.trim_start_matches('/'));
    [
        (
            wants_link(host_root, name),
            Path::new(UNIT_DIR).join(unit_name(name)),
        ),
        (
            dir.join("timers.target.wants").join(timer_name(name)),
            Path::new(UNIT_DIR).join(timer_name(name)),
        ),
    ]
}

fn enable_with(
    host_root: &Path,
    name: &str,
    mut changes: Option<&mut HostChanges>,
) -> Result<PathBuf, OnionError> {
    let path = unit_path(host_root, name);
    if fs_err::symlink_metadata(&path).is_err() {
        return Err(OnionError::NotConfigured {
            name: name.to_string(),
            path: path.clone(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    for (link, target) in links(host_root, name) {
        if fs_err::read_link(&link).ok().as_deref() == Some(target.as_path()) {
            continue;
        }
        let write_error = |source| OnionError::WriteUnit {
            path: link.clone(),
            source,
        };
        if let Some(changes) = changes.as_deref_mut() {
            changes
                .before_write(host_root, &link)
                .map_err(write_error)?;
        }
        if let Some(dir) = link.parent() {
            files::create_dir_all_mode(dir, 0o755).map_err(write_error)?;
        }
        // A link naming something else is replaced, as `systemctl enable` would; anything
        // else there is left for symlink(2) to refuse.
        if fs_err::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
            fs_err::remove_file(&link).map_err(write_error)?;
        }
        fs_err::os::unix::fs::symlink(&target, &link).map_err(write_error)?;
    }
    Ok(wants_link(host_root, name))
}

/// Removes NAME's unit and its wants link (if ours); returns what was removed.
pub(crate) fn remove(host_root: &Path, name: &str) -> Result<Vec<PathBuf>, OnionError> {
    let path = unit_path(host_root, name);
    super::schroot::ensure_ours(&path)?;
    let dir = host_root.join(UNIT_DIR.trim_start_matches('/'));
    let extras: Vec<PathBuf> = [timer_name(name), rotate_name(name)]
        .into_iter()
        .map(|file| dir.join(file))
        .collect();
    for extra in &extras {
        super::schroot::ensure_ours(extra)?;
    }
    let mut removed = Vec::new();
    for (link, _) in links(host_root, name) {
        if fs_err::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
            fs_err::remove_file(&link).map_err(|source| OnionError::WriteUnit {
                path: link.clone(),
                source,
            })?;
            removed.push(link);
        }
    }
    for path in std::iter::once(path).chain(extras) {
        match fs_err::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(OnionError::WriteUnit { path, source }),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(systemd: u32) -> UnitSpec<'static> {
        UnitSpec {
            name: "blog",
            chroot: Path::new("/srv/chroot/blog"),
            listen: Listen::Socket,
            systemd,
        }
    }

    #[test]
    fn namespaces_a_systemd_does_not_know_are_left_out() {
        let has = |systemd, line: &str| unit(&spec(systemd)).lines().any(|l| l == line);
        assert!(!has(247, "PrivateIPC=yes"));
        assert!(has(252, "PrivateIPC=yes"));
        assert!(!has(256, "PrivatePIDs=yes"));
        assert!(has(257, "PrivatePIDs=yes"));
        // Before 257 the chroot's unshare makes the PID namespace, and the reload goes to its
        // child; from 257 on, the reload leaves the sandbox to reach nginx's pid.
        let starts = |systemd, program: &str| {
            unit(&spec(systemd))
                .lines()
                .any(|l| l.starts_with(&format!("ExecStart={program} ")))
        };
        assert!(starts(256, "/usr/bin/unshare"));
        assert!(starts(257, "/bin/sh"));
        assert!(has(
            256,
            "ExecReload=/bin/sh -c 'kill -HUP $$(cat /proc/$$MAINPID/task/$$MAINPID/children)'"
        ));
        assert!(has(257, "ExecReload=+/bin/sh -c 'kill -HUP \"$$MAINPID\"'"));
        // Only the older form lets the wrapper mount and make namespaces.
        assert!(has(256, "RestrictNamespaces=pid mnt"));
        assert!(has(257, "RestrictNamespaces=yes"));
        assert_eq!(
            parse_version("systemd 252 (252.39-1~deb12u2)\n+PAM +AUDIT\n"),
            Some(252)
        );
        assert_eq!(parse_version("something else 3\n"), None);
    }

    #[test]
    fn the_version_comes_from_host_roots_shared_library() {
        let root = tempfile::tempdir().expect("tempdir");
        assert_eq!(systemd_version(root.path()), ASSUMED_SYSTEMD);
        let dir = root.path().join("usr/lib/x86_64-linux-gnu/systemd");
        fs_err::create_dir_all(&dir).expect("mkdir");
        fs_err::write(dir.join("libsystemd-shared-257.so"), b"").expect("write");
        fs_err::write(dir.join("libsystemd-core-258.so"), b"").expect("write");
        assert_eq!(systemd_version(root.path()), 257);
    }

    #[test]
    fn paths_systemd_would_read_otherwise_are_refused() {
        assert!(check_path(Path::new("/srv/chroot/blog-2.0_x+y@z")).is_ok());
        for bad in [
            "srv/relative",
            "/srv/with space",
            "/srv/per%cent",
            "/srv/dol$lar",
            "/srv/co:lon",
            "/srv/quo\"te",
            "/srv/back\\slash",
            "/srv/../etc",
        ] {
            assert!(check_path(Path::new(bad)).is_err(), "{bad}");
        }
    }

    /// The rotation script as systemd hands it to sh (`$$` read as `$`), run by a real sh on a
    /// temporary log directory nine days running: a week of generations, the oldest dropped.
    #[test]
    fn the_rotation_script_keeps_a_week_of_generations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = dir.path();
        let script = rotate_script()
            .replace("$$", "$")
            .replace("/var/log/nginx", &logs.display().to_string());
        let line = timer(&spec(252))[1].1.clone();
        assert!(
            line.contains(&format!(
                "ExecStart=/bin/sh -c '{}' rotate",
                rotate_script()
            )),
            "{line}"
        );
        for day in 1..=9 {
            fs_err::write(logs.join("blog.access.log"), format!("day {day}\n")).expect("log");
            let out = std::process::Command::new("sh")
                .args(["-c", &script, "rotate", "blog.access.log", "blog.error.log"])
                .output()
                .expect("sh");
            assert!(out.status.success(), "{out:?}");
        }
        assert!(!logs.join("blog.access.log").exists());
        assert!(!logs.join("blog.error.log.1").exists());
        for generation in 1..=super::super::LOG_GENERATIONS {
            let text = fs_err::read_to_string(logs.join(format!("blog.access.log.{generation}")))
                .expect("generation");
            assert_eq!(text, format!("day {}\n", 10 - generation));
        }
        let eighth = format!("blog.access.log.{}", super::super::LOG_GENERATIONS + 1);
        assert!(!logs.join(eighth).exists());
    }
}
