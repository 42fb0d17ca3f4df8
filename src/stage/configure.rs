//! Configuration: takes a chroot with every package unpacked (mounts and service blocks in
//! place); gives every package configured, in the order known to work: base-passwd's preinst,
//! the other preinsts (essential core first), then `dpkg --configure -a`, then an audit.

use std::path::Path;
use std::time::Instant;

use super::chroot::{self, Invocation};
use super::maintscript;
use super::rootfs::RootDir;
use super::StageError;
use crate::deb822::Comments;
use crate::progress::{Counter, Reporter};
use crate::unpack::{Unpacked, UnpackedPackage};

/// Packages whose scripts the rest rely on, in the order debootstrap installs them; base-passwd
/// comes first because its preinst creates /etc/passwd and /etc/group.
const CORE: [&str; 7] = [
    "base-passwd",
    "base-files",
    "dpkg",
    "libc6",
    "perl-base",
    "mawk",
    "debconf",
];

/// The order debootstrap installs packages in: the core, then the other `Priority: required`
/// packages, then the rest, each group by name. Preinsts run in it, and file-trigger interests
/// are registered in it.
pub(crate) fn install_order(unpacked: &Unpacked) -> Vec<&UnpackedPackage> {
    let rank = |p: &UnpackedPackage| match CORE.iter().position(|c| *c == p.name) {
        Some(i) => (0, i),
        None if p.essential || p.priority.as_deref() == Some("required") => (1, 0),
        None => (2, 0),
    };
    let mut order: Vec<&UnpackedPackage> = unpacked.packages.iter().collect();
    order.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.name.cmp(&b.name)));
    order
}

/// Writes dpkg's file-trigger registry (`triggers/File`) from the packages' `triggers` control
/// files, in install order, unless it exists: dpkg's unpack would have written it, and the
/// order in which dpkg would otherwise register them differs from debootstrap's.
pub(crate) fn register_file_triggers(
    root: &RootDir,
    unpacked: &Unpacked,
) -> Result<(), StageError> {
    let registry = Path::new("var/lib/dpkg/triggers/File");
    if root.file_type(registry)?.is_some() {
        return Ok(());
    }
    let mut lines = String::new();
    for package in install_order(unpacked) {
        let name = package.db_name();
        let control = Path::new("var/lib/dpkg/info").join(format!("{name}.triggers"));
        let Some(triggers) = root.read_file(&control)? else {
            continue;
        };
        for (path, await_mode) in file_interests(&String::from_utf8_lossy(&triggers)) {
            let suffix = if await_mode { "" } else { "/noawait" };
            lines.push_str(&format!("{path} {name}{suffix}\n"));
        }
    }
    if lines.is_empty() {
        return Ok(());
    }
    root.create_dir_all(Path::new("var/lib/dpkg/triggers"), 0o755)?;
    root.write_file(registry, lines.as_bytes(), 0o644)
}

/// The file triggers a `triggers` control file declares interest in, with whether the
/// activating package awaits them.
fn file_interests(triggers: &str) -> Vec<(&str, bool)> {
    triggers
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let directive = words.next()?;
            let name = words.next().filter(|n| n.starts_with('/'))?;
            match directive {
                "interest" | "interest-await" => Some((name, true)),
                "interest-noawait" => Some((name, false)),
                _ => None,
            }
        })
        .collect()
}

/// Conffiles dpkg's status lists as `newconffile` (unpacked, never configured). A stanza that
/// is not deb822 is passed over here; dpkg itself refuses it a moment later, naming it.
fn new_conffiles(status: &str) -> Vec<&str> {
    let mut paths = Vec::new();
    for paragraph in crate::deb822::paragraphs(status, Comments::Refused).filter_map(Result::ok) {
        let Some(conffiles) = paragraph.field("Conffiles") else {
            continue;
        };
        for entry in conffiles.lines() {
            let mut fields = entry.split_whitespace();
            if let (Some(path), Some("newconffile")) = (fields.next(), fields.next()) {
                paths.push(path);
            }
        }
    }
    paths
}

/// Puts a copy of every new conffile beside it as `PATH.dpkg-new`, the state debootstrap's root
/// is in before configuration (the file extracted by tar, plus dpkg's unpacked copy):
/// `dpkg --configure` then finds the two identical, installs the copy and records its md5sum.
/// Without the copy the status keeps `newconffile` and a later upgrade cannot tell whether the
/// admin changed the file; without the original, scripts configured before the conffile's owner
/// miss it (bookworm's passwd reads login's /etc/login.defs).
pub(crate) fn stage_new_conffiles(root: &RootDir) -> Result<usize, StageError> {
    let Some(status) = root.read_file(Path::new("var/lib/dpkg/status"))? else {
        return Ok(0);
    };
    let status = String::from_utf8_lossy(&status);
    let mut staged = 0;
    for path in new_conffiles(&status) {
        let mut copy = std::ffi::OsString::from(path);
        copy.push(DPKG_NEW);
        if root.file_type(Path::new(&copy))?.is_none()
            && root.copy_beside(Path::new(path), DPKG_NEW)?
        {
            staged += 1;
        }
    }
    Ok(staged)
}

/// The suffix dpkg gives a conffile it has unpacked but not yet installed.
const DPKG_NEW: &str = ".dpkg-new";

/// Runs every preinst with `install`, as `dpkg --unpack` would have before unpacking (base-files
/// and libc6 register their merged-/usr diversions there): from tmp.ci/, with dpkg's
/// environment (see [`maintscript`]).
pub(crate) fn run_preinsts(
    root: &RootDir,
    unpacked: &Unpacked,
    extra_env: &[(&str, &str)],
    log: Option<&Path>,
) -> Result<(), StageError> {
    let dpkg_version = unpacked
        .packages
        .iter()
        .find(|p| p.name == "dpkg")
        .map_or("", |p| p.version.as_str());
    for package in install_order(unpacked) {
        if !package.scripts.iter().any(|s| s == "preinst") {
            continue;
        }
        crate::cancel::check()?;
        let staged = maintscript::StagedControl::stage(root, package)?;
        let script = staged.preinst();
        let what = format!("{} preinst", package.name);
        let mut env = maintscript::environment(package, "preinst", dpkg_version);
        env.extend_from_slice(extra_env);
        chroot::run(
            &Invocation {
                root,
                argv: &[&script, "install"],
                env: &env,
                log,
                what: Some(&what),
            },
            &mut |_| {},
        )?;
        staged.remove()?;
    }
    Ok(())
}

/// `dpkg --configure -a`, advancing [`Counter::Configured`] on each `Setting up` line; on
/// failure the error names the package dpkg was setting up.
pub(crate) fn configure_all(
    root: &RootDir,
    extra_env: &[(&str, &str)],
    log: Option<&Path>,
    reporter: &dyn Reporter,
) -> Result<(), StageError> {
    crate::cancel::check()?;
    let started = Instant::now();
    let mut last_setting_up = String::new();
    // --log because dpkg.cfg, which names the log, is still dpkg.cfg.dpkg-new when dpkg starts.
    let argv = [
        "dpkg",
        "--log=/var/log/dpkg.log",
        "--force-unsafe-io",
        "--configure",
        "-a",
    ];
    let result = chroot::run(
        &Invocation {
            root,
            argv: &argv,
            env: extra_env,
            log,
            what: None,
        },
        &mut |line| {
            if let Some(rest) = line.strip_prefix("Setting up ") {
                last_setting_up = rest.split_whitespace().next().unwrap_or("").to_owned();
                reporter.advance(Counter::Configured, 1);
            }
        },
    );
    match result {
        Ok(_) => {
            tracing::info!("dpkg --configure -a took {:.1?}", started.elapsed());
            Ok(())
        }
        Err(StageError::Command {
            command,
            status,
            tail,
            ..
        }) => Err(StageError::Command {
            what: match failed_script(&tail).or_else(|| failed_script_in_log(root, log)) {
                Some(script) => format!("{script} (in dpkg --configure -a)"),
                None if last_setting_up.is_empty() => "dpkg --configure -a".to_owned(),
                None => format!("dpkg --configure -a (setting up {last_setting_up})"),
            },
            command,
            status,
            tail,
        }),
        Err(e) => Err(e),
    }
}

/// [`failed_script`] over the log of the last dpkg run: dpkg reports a failed script when it
/// happens, often further back than the error's last lines.
fn failed_script_in_log(root: &RootDir, log: Option<&Path>) -> Option<String> {
    let text = root.read_file(log?).ok()??;
    let text = String::from_utf8_lossy(&text);
    let last_run = text.rfind("\n$ dpkg ").map_or(&*text, |at| &text[at..]);
    failed_script(last_run)
}

/// The package and maintainer script dpkg reports as failed (`nginx postinst`), from its
/// `installed PKG package post-installation script subprocess returned error exit status N`.
fn failed_script(output: &str) -> Option<String> {
    const SCRIPTS: [(&str, &str); 4] = [
        ("post-installation", "postinst"),
        ("pre-installation", "preinst"),
        ("pre-removal", "prerm"),
        ("post-removal", "postrm"),
    ];
    output.lines().rev().find_map(|line| {
        let rest = line.trim_start().strip_prefix("installed ")?;
        let (package, rest) = rest.split_once(" package ")?;
        let (kind, _) = rest.split_once(" script subprocess ")?;
        let script = SCRIPTS.iter().find(|(k, _)| *k == kind)?.1;
        Some(format!("{package} {script}"))
    })
}

/// `dpkg --audit`: anything it reports means a package was left half-done.
pub(crate) fn audit(root: &RootDir, log: Option<&Path>) -> Result<(), StageError> {
    let output = chroot::run(
        &Invocation {
            root,
            argv: &["dpkg", "--audit"],
            env: &[],
            log,
            what: None,
        },
        &mut |_| {},
    )?;
    let report = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if report.is_empty() {
        Ok(())
    } else {
        Err(StageError::Audit { report })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, essential: bool) -> UnpackedPackage {
        UnpackedPackage {
            name: name.to_owned(),
            version: "1".to_owned(),
            architecture: "amd64".to_owned(),
            multi_arch_same: false,
            essential,
            priority: None,
            scripts: vec!["preinst".to_owned()],
            control: Vec::new(),
        }
    }

    #[test]
    fn base_passwd_comes_first_then_core_then_required() {
        let mut tzdata = package("tzdata", false);
        tzdata.priority = Some("required".to_owned());
        let unpacked = Unpacked {
            packages: vec![
                package("apt", false),
                tzdata,
                package("base-files", true),
                package("base-passwd", true),
                package("bash", true),
                package("libc6", false),
                package("dpkg", true),
            ],
        };
        let names: Vec<&str> = install_order(&unpacked)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "base-passwd",
                "base-files",
                "dpkg",
                "libc6",
                "bash",
                "tzdata",
                "apt"
            ]
        );
    }

    #[test]
    fn file_triggers_are_registered_in_install_order() {
        // Writing through RootDir sets owners, which needs root.
        if !crate::test_skip::require_root() {
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let info = tmp.path().join("var/lib/dpkg/info");
        fs_err::create_dir_all(&info).expect("mkdir");
        fs_err::write(
            info.join("debianutils.triggers"),
            "interest-noawait /usr/share/debianutils/shells.d\n",
        )
        .expect("write");
        fs_err::write(
            info.join("base-files.triggers"),
            "interest-noawait /usr/lib32\ninterest /usr/libx32\n",
        )
        .expect("write");
        let unpacked = Unpacked {
            packages: vec![package("base-files", true), package("debianutils", true)],
        };
        let root = RootDir::open(tmp.path()).expect("open");
        register_file_triggers(&root, &unpacked).expect("register");
        let registry = tmp.path().join("var/lib/dpkg/triggers/File");
        assert_eq!(
            fs_err::read_to_string(&registry).expect("read"),
            "/usr/lib32 base-files/noawait\n/usr/libx32 base-files\n\
             /usr/share/debianutils/shells.d debianutils/noawait\n"
        );
    }

    #[test]
    fn only_new_conffiles_are_listed() {
        let status = "Package: a\nStatus: install ok unpacked\nConffiles:\n /etc/a newconffile\n \
                      /etc/b 0123456789abcdef0123456789abcdef\nDescription: x\n more\n\n\
                      Package: b\nConffiles:\n /etc/c newconffile\n";
        assert_eq!(new_conffiles(status), ["/etc/a", "/etc/c"]);
    }

    #[test]
    fn new_conffiles_are_copied_to_dpkg_new() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dpkg = tmp.path().join("var/lib/dpkg");
        fs_err::create_dir_all(&dpkg).expect("mkdir");
        fs_err::create_dir_all(tmp.path().join("etc")).expect("mkdir");
        fs_err::write(
            dpkg.join("status"),
            "Package: a\nConffiles:\n /etc/a newconffile\n /etc/gone newconffile\n",
        )
        .expect("write status");
        fs_err::write(tmp.path().join("etc/a"), "a").expect("write conffile");
        let root = RootDir::open(tmp.path()).expect("open");
        assert_eq!(stage_new_conffiles(&root).expect("stage"), 1);
        assert_eq!(
            fs_err::read_to_string(tmp.path().join("etc/a")).expect("read"),
            "a"
        );
        assert_eq!(
            fs_err::read_to_string(tmp.path().join("etc/a.dpkg-new")).expect("read"),
            "a"
        );
        // A second run finds every copy in place.
        assert_eq!(stage_new_conffiles(&root).expect("again"), 0);
    }

    #[test]
    fn a_failed_maintainer_script_is_named_from_dpkgs_report() {
        let tail = "Setting up apt (3.0.3) ...\n\
                    dpkg: error processing package apt (--configure):\n \
                    installed apt package post-installation script subprocess returned error \
                    exit status 1\n\
                    Errors were encountered while processing:\n apt";
        assert_eq!(failed_script(tail).as_deref(), Some("apt postinst"));
        assert_eq!(failed_script("dpkg: unrecoverable fatal error"), None);
    }

    #[test]
    fn file_interests_skip_explicit_triggers_and_comments() {
        let triggers = "# a comment\ninterest-noawait /usr/lib32\ninterest /usr/share/x\n\
                        interest-noawait ldconfig\nactivate-noawait ldconfig\n";
        assert_eq!(
            file_interests(triggers),
            [("/usr/lib32", false), ("/usr/share/x", true)]
        );
    }
}
