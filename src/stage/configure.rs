//! Configuration: takes a chroot with every package unpacked (mounts and service blocks in
//! place); gives every package configured, in debootstrap's second-stage phases: the core
//! packages one at a time, then the rest of the first stage's set, then everything else; then
//! an audit.
//!
//! debootstrap hands dpkg each phase's packages only when the phase starts, so what dpkg sees
//! as pending, and the order its scripts run in (which decides system user and group ids), is
//! that phase's. Our packages are all unpacked before configuration begins, so the status
//! stanzas of later phases are held back from dpkg's status file until their phase
//! ([`HeldBack`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use super::chroot::{self, Invocation};
use super::maintscript;
use super::rootfs::RootDir;
use super::StageError;
use crate::deb822::Comments;
use crate::progress::{Counter, Reporter};
use crate::unpack::{Unpacked, UnpackedPackage};

/// Packages whose scripts the rest rely on, in the order debootstrap installs them, each on its
/// own; base-passwd comes first because its preinst creates /etc/passwd and /etc/group.
const CORE: [&str; 7] = [
    "base-passwd",
    "base-files",
    "dpkg",
    "libc6",
    "perl-base",
    "mawk",
    "debconf",
];

/// The packages of one configuration phase, in the order debootstrap unpacks them.
pub(crate) struct Phase<'a> {
    pub(crate) kind: PhaseKind,
    pub(crate) packages: Vec<&'a UnpackedPackage>,
}

/// debootstrap's second-stage steps, as they configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhaseKind {
    /// One core package (debootstrap: `dpkg --force-depends --install`).
    Core,
    /// The rest of the first stage's set: unpacked together, then
    /// `dpkg --configure --pending --force-configure-any --force-depends`.
    Required,
    /// Everything else: first each pre-dependency `dpkg --predep-package` names, with its
    /// dependencies (`dpkg --install`); then the rest unpacked together, then
    /// `dpkg --configure -a`.
    Base,
}

impl PhaseKind {
    /// dpkg's arguments for configuring the phase's packages.
    fn dpkg_args(self) -> &'static [&'static str] {
        match self {
            PhaseKind::Core => &["--configure", "--force-depends"],
            PhaseKind::Required => &[
                "--configure",
                "--pending",
                "--force-configure-any",
                "--force-depends",
            ],
            PhaseKind::Base => &["--configure", "-a"],
        }
    }
}

/// debootstrap's phases over `unpacked`: each core package, then the other packages its first
/// stage extracts, then the rest, each group by name. Empty phases are left out.
pub(crate) fn phases(unpacked: &Unpacked) -> Vec<Phase<'_>> {
    let mut sorted: Vec<&UnpackedPackage> = unpacked.packages.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    // The native instance of a core package (dpkg itself is always native): a foreign
    // architecture's copy of it (libc6:i386) is configured with the rest.
    let native = sorted
        .iter()
        .find(|p| p.name == "dpkg")
        .map(|p| p.architecture.clone());
    let is_native = |p: &UnpackedPackage| {
        p.architecture == "all" || native.as_deref().is_none_or(|a| a == p.architecture)
    };
    let core: Vec<&UnpackedPackage> = CORE
        .iter()
        .filter_map(|core| {
            sorted
                .iter()
                .find(|p| p.name == *core && is_native(p))
                .copied()
        })
        .collect();
    let mut phases: Vec<Phase> = core
        .iter()
        .map(|p| Phase {
            kind: PhaseKind::Core,
            packages: vec![*p],
        })
        .collect();
    let is_core = |p: &UnpackedPackage| core.iter().any(|c| std::ptr::eq(*c, p));
    let (required, base): (Vec<&UnpackedPackage>, Vec<&UnpackedPackage>) = sorted
        .into_iter()
        .filter(|p| !is_core(p))
        .partition(|p| p.extracted_first);
    for (kind, packages) in [(PhaseKind::Required, required), (PhaseKind::Base, base)] {
        if !packages.is_empty() {
            phases.push(Phase { kind, packages });
        }
    }
    phases
}

/// Every package, phase after phase: the order debootstrap selects them in.
pub(crate) fn install_order(unpacked: &Unpacked) -> Vec<&UnpackedPackage> {
    phases(unpacked)
        .into_iter()
        .flat_map(|phase| phase.packages)
        .collect()
}

/// What the phases run with: the maintainer scripts' extra environment, the log, and what
/// runs at mmdebstrap's essential point, if anything.
pub(crate) struct Around<'a> {
    pub(crate) extra_env: &'a [(&'a str, &'a str)],
    pub(crate) log: Option<&'a Path>,
    pub(crate) interlude: Option<&'a super::Interlude<'a>>,
}

/// Configures every package in debootstrap's second-stage order: each phase's stanzas are
/// admitted to dpkg's status, its trigger interests registered and its preinsts run (its
/// unpack), then dpkg configures it. On failure the root is left half-admitted, which is no
/// matter: a failed build's root is removed. Before the base phase, as debootstrap does, every
/// package is selected and each package `dpkg --predep-package` names is installed with its
/// dependencies first.
///
/// With an interlude, the required phase is cut in two as mmdebstrap installs: first its
/// packages of the essential set ([`essential_set`]), then the interlude, while dpkg knows
/// only the essential packages, then the rest. Without one the phases are debootstrap's.
pub(crate) fn configure_in_phases(
    root: &RootDir,
    unpacked: &Unpacked,
    around: &Around,
    reporter: &dyn Reporter,
) -> Result<(), StageError> {
    let (extra_env, log) = (around.extra_env, around.log);
    let dpkg_version = unpacked
        .packages
        .iter()
        .find(|p| p.name == "dpkg")
        .map_or("", |p| p.version.as_str());
    let mut held = HeldBack::hold_all(root)?;
    let unpack = |held: &mut HeldBack, packages: &[&UnpackedPackage]| {
        held.admit(root, packages)?;
        register_trigger_interests(root, packages)?;
        run_preinsts(root, packages, dpkg_version, extra_env, log)
    };
    let mut interlude = around.interlude.map(|interlude| {
        move || {
            crate::cancel::check()?;
            interlude(root).map_err(StageError::Interlude)
        }
    });
    let essential = essential_set(unpacked);
    for phase in phases(unpacked) {
        let mut rest = phase.packages;
        let kind = phase.kind;
        if kind == PhaseKind::Required {
            if let Some(run) = interlude.take() {
                let (first, later): (Vec<_>, Vec<_>) = rest
                    .into_iter()
                    .partition(|p| essential.iter().any(|e| std::ptr::eq(*e, *p)));
                if !first.is_empty() {
                    unpack(&mut held, &first)?;
                    configure_phase(root, kind.dpkg_args(), &[], extra_env, log, reporter)?;
                }
                run()?;
                rest = later;
                if rest.is_empty() {
                    continue;
                }
            }
        }
        if kind == PhaseKind::Base {
            if let Some(run) = interlude.take() {
                run()?;
            }
            select(root, &install_order(unpacked), log)?;
            while let Some(predep) = next_predep(root, log)? {
                let batch = predep_batch(&predep, &rest);
                if batch.is_empty() {
                    // dpkg names a package we have no unpacked copy of: dpkg's configure
                    // reports the unmet pre-dependency below.
                    break;
                }
                unpack(&mut held, &batch)?;
                configure_phase(root, &["--configure"], &batch, extra_env, log, reporter)?;
                rest.retain(|p| !batch.iter().any(|b| std::ptr::eq(*b, *p)));
            }
        }
        unpack(&mut held, &rest)?;
        let named: &[&UnpackedPackage] = if kind == PhaseKind::Core { &rest } else { &[] };
        configure_phase(root, kind.dpkg_args(), named, extra_env, log, reporter)?;
    }
    held.admit_rest(root)?;
    if let Some(run) = interlude.take() {
        run()?;
    }
    Ok(())
}

/// mmdebstrap's essential set among the unpacked packages: those marked `Essential: yes`, of
/// the root's own architecture, with what they need (Depends and Pre-Depends, the first
/// alternative the set has), as apt installs `?essential`.
fn essential_set(unpacked: &Unpacked) -> Vec<&UnpackedPackage> {
    let native = unpacked
        .packages
        .iter()
        .find(|p| p.name == "dpkg")
        .map(|p| p.architecture.as_str());
    let packages: Vec<&UnpackedPackage> = unpacked
        .packages
        .iter()
        .filter(|p| p.architecture == "all" || native.is_none_or(|a| a == p.architecture))
        .collect();
    let controls: Vec<String> = packages
        .iter()
        .map(|p| String::from_utf8_lossy(&p.control).into_owned())
        .collect();
    let fields: Vec<[Option<String>; 3]> = controls
        .iter()
        .map(|control| {
            let paragraph = crate::deb822::first_paragraph(control, Comments::Refused)
                .ok()
                .flatten();
            let get = |name| {
                paragraph
                    .as_ref()
                    .and_then(|p| p.field(name))
                    .map(|f| f.folded().into_owned())
            };
            [get("Provides"), get("Depends"), get("Pre-Depends")]
        })
        .collect();
    let relations: Vec<crate::resolve::Relations> = packages
        .iter()
        .zip(&fields)
        .map(
            |(p, [provides, depends, pre_depends])| crate::resolve::Relations {
                name: &p.name,
                provides: provides.as_deref(),
                depends: depends.as_deref(),
                pre_depends: pre_depends.as_deref(),
            },
        )
        .collect();
    let needed = crate::resolve::needed_by(&relations, |i| packages[i].essential);
    packages
        .into_iter()
        .zip(needed)
        .filter_map(|(p, needed)| needed.then_some(p))
        .collect()
}

/// Files whose mere presence changes what other packages' scripts do, with their package:
/// deb-systemd-helper enables units through `systemctl preset` once systemctl exists, and
/// writes other links than its own (`/usr/lib/systemd/...` for `/lib/systemd/...`). Until their
/// package's phase they are held back under [`HELD_SUFFIX`], as they would not be unpacked yet.
const PROBED: [(&str, &str); 1] = [("systemd", "usr/bin/systemctl")];

/// The name a held-back file has until its package's phase.
const HELD_SUFFIX: &str = ".debstrap-onion-held";

/// Status stanzas (and [`PROBED`] files) kept out of dpkg's status file until their
/// package's phase: dpkg and the scripts see only the packages debootstrap would have unpacked
/// by then.
pub(crate) struct HeldBack {
    /// By package name and architecture (one name may be there for two architectures), the
    /// stanza as unpack wrote it.
    stanzas: BTreeMap<(String, String), String>,
    /// The [`PROBED`] files moved aside, by package name.
    files: Vec<(&'static str, &'static Path)>,
}

const STATUS: &str = "var/lib/dpkg/status";

/// The stanzas of a status file, each with its package name, in file order.
fn stanzas(status: &str) -> Vec<(&str, &str)> {
    status
        .split("\n\n")
        .map(|s| s.trim_matches('\n'))
        .filter(|s| !s.is_empty())
        .map(|stanza| (field(stanza, "Package:"), stanza))
        .collect()
}

/// The value of the single-line field `name` (with its colon) of a stanza, or "".
fn field<'a>(stanza: &'a str, name: &str) -> &'a str {
    stanza
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map_or("", str::trim)
}

/// Whether the status stanza `stanza` of package `name` stands for `(name, arch)`: the same
/// architecture, or a stanza dpkg wrote for a package not installed yet (a selection, which
/// names the native architecture even for an `all` package).
fn stands_for(stanza: &str, name: &str, arch: &str) -> bool {
    field(stanza, "Package:") == name
        && (field(stanza, "Architecture:") == arch
            || field(stanza, "Status:").ends_with("not-installed"))
}

impl HeldBack {
    /// Takes every stanza out of the status file; [`HeldBack::admit`] puts them back.
    pub(crate) fn hold_all(root: &RootDir) -> Result<HeldBack, StageError> {
        let status = root.read_file(Path::new(STATUS))?.unwrap_or_default();
        let stanzas: BTreeMap<(String, String), String> =
            stanzas(&String::from_utf8_lossy(&status))
                .into_iter()
                .map(|(name, stanza)| {
                    let arch = field(stanza, "Architecture:").to_owned();
                    ((name.to_owned(), arch), format!("{stanza}\n\n"))
                })
                .collect();
        root.write_file(Path::new(STATUS), b"", 0o644)?;
        let mut files = Vec::new();
        for (package, path) in PROBED {
            let path = Path::new(path);
            if stanzas.keys().any(|(name, _)| name == package)
                && root.rename_in_dir(path, &held_name(path))?
            {
                files.push((package, path));
            }
        }
        Ok(HeldBack { stanzas, files })
    }

    /// Puts the held-back files of `names` back under their own name.
    fn release_files(&mut self, root: &RootDir, names: &[&str]) -> Result<(), StageError> {
        let (released, kept) = std::mem::take(&mut self.files)
            .into_iter()
            .partition(|(package, _)| names.contains(package));
        self.files = kept;
        for (_, path) in released {
            let held = path.with_file_name(held_name(path));
            let name = path.file_name().unwrap_or_default();
            root.rename_in_dir(&held, name)?;
        }
        Ok(())
    }

    /// Puts the held stanzas of `packages` into dpkg's status file, in place of any stanza dpkg
    /// has for them meanwhile (a selection); dpkg sorts the file when it next writes it.
    pub(crate) fn admit(
        &mut self,
        root: &RootDir,
        packages: &[&UnpackedPackage],
    ) -> Result<(), StageError> {
        let keys: Vec<(String, String)> = packages
            .iter()
            .map(|p| (p.name.clone(), p.architecture.clone()))
            .collect();
        let admitted: Vec<String> = keys
            .iter()
            .filter_map(|key| self.stanzas.remove(key))
            .collect();
        let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
        self.release_files(root, &names)?;
        self.write_with(root, &keys, &admitted)
    }

    /// Puts back every stanza still held, so that dpkg's audit sees any package no phase named.
    pub(crate) fn admit_rest(mut self, root: &RootDir) -> Result<(), StageError> {
        let rest = std::mem::take(&mut self.stanzas);
        let keys: Vec<(String, String)> = rest.keys().cloned().collect();
        let admitted: Vec<String> = rest.values().cloned().collect();
        let held: Vec<&str> = self.files.iter().map(|(package, _)| *package).collect();
        self.release_files(root, &held)?;
        self.write_with(root, &keys, &admitted)
    }

    fn write_with(
        &self,
        root: &RootDir,
        replaced: &[(String, String)],
        admitted: &[String],
    ) -> Result<(), StageError> {
        let status = root.read_file(Path::new(STATUS))?.unwrap_or_default();
        let status = String::from_utf8_lossy(&status);
        let mut out = String::new();
        for (name, stanza) in stanzas(&status) {
            if !replaced
                .iter()
                .any(|(n, arch)| stands_for(stanza, n, arch) && n == name)
            {
                out.push_str(stanza);
                out.push_str("\n\n");
            }
        }
        for stanza in admitted {
            out.push_str(stanza);
        }
        root.write_file(Path::new(STATUS), out.as_bytes(), 0o644)
    }
}

/// The name `path` has while it is held back.
fn held_name(path: &Path) -> std::ffi::OsString {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(HELD_SUFFIX);
    name
}

/// Marks `packages` for installation in dpkg's selections, as debootstrap does before it
/// installs the base system (`dpkg --set-selections`); dpkg's `--predep-package` looks only at
/// selected packages.
pub(crate) fn select(
    root: &RootDir,
    packages: &[&UnpackedPackage],
    log: Option<&Path>,
) -> Result<(), StageError> {
    let mut argv = vec![
        "sh",
        "-c",
        "for p; do echo \"$p install\"; done | dpkg --set-selections",
        "sh",
    ];
    // A foreign architecture's instance is selected as NAME:ARCH, a native one (or `all`) by
    // its name, as dpkg --set-selections reads them.
    let native = packages
        .iter()
        .find(|p| p.name == "dpkg")
        .map(|p| p.architecture.as_str());
    let names: Vec<String> = packages
        .iter()
        .map(|p| {
            if p.architecture == "all" || native.is_none_or(|a| a == p.architecture) {
                p.name.clone()
            } else {
                format!("{}:{}", p.name, p.architecture)
            }
        })
        .collect();
    argv.extend(names.iter().map(String::as_str));
    chroot::run(
        &Invocation {
            root,
            argv: &argv,
            env: &[],
            log,
            what: Some("dpkg --set-selections"),
        },
        &mut |_| {},
    )?;
    Ok(())
}

/// `dpkg --predep-package`: the next selected package that must be installed before the others
/// can be unpacked (debootstrap's `get_next_predep`), or `None` when there is none.
pub(crate) fn next_predep(
    root: &RootDir,
    log: Option<&Path>,
) -> Result<Option<String>, StageError> {
    let result = chroot::run(
        &Invocation {
            root,
            argv: &["dpkg", "--predep-package"],
            env: &[],
            log,
            what: Some("dpkg --predep-package"),
        },
        &mut |_| {},
    );
    let output = match result {
        Ok(output) => output,
        // dpkg's "nothing found".
        Err(StageError::Command { status, .. }) if status.code() == Some(1) => return Ok(None),
        Err(e) => return Err(e),
    };
    let stanza = String::from_utf8_lossy(&output.stdout);
    Ok(stanzas(&stanza).first().map(|(name, _)| (*name).to_owned()))
}

/// What debootstrap installs for the pre-dependency `name`: `name` with its Depends and
/// Pre-Depends, recursively, taking the first alternative of each (its `resolve_deps`), that
/// are among `candidates`, in name order.
pub(crate) fn predep_batch<'a>(
    name: &str,
    candidates: &[&'a UnpackedPackage],
) -> Vec<&'a UnpackedPackage> {
    let by_name: BTreeMap<&str, &UnpackedPackage> =
        candidates.iter().map(|p| (p.name.as_str(), *p)).collect();
    let mut batch: BTreeMap<&str, &UnpackedPackage> = BTreeMap::new();
    let mut todo = vec![name.to_owned()];
    while let Some(next) = todo.pop() {
        let Some(package) = by_name.get(next.as_str()) else {
            continue;
        };
        if batch.insert(package.name.as_str(), package).is_some() {
            continue;
        }
        todo.extend(first_alternatives(&package.control));
    }
    batch.into_values().collect()
}

/// The first alternative's package name of every Depends and Pre-Depends entry of a control
/// file, as debootstrap's `pkgdetails GETDEPS` reads them.
fn first_alternatives(control: &[u8]) -> Vec<String> {
    let control = String::from_utf8_lossy(control);
    let Some(Ok(paragraph)) = crate::deb822::paragraphs(&control, Comments::Refused).next() else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for field in ["Depends", "Pre-Depends"] {
        let Some(value) = paragraph.field(field) else {
            continue;
        };
        for entry in value.raw().split(',') {
            let first = entry.split('|').next().unwrap_or("");
            let name = first
                .split(['(', ':', ' ', '\t', '\n'])
                .find(|w| !w.is_empty());
            names.extend(name.map(str::to_owned));
        }
    }
    names
}

/// Appends the trigger interests of `packages` to dpkg's registries, in the given order, as
/// dpkg's unpack of them would have: file triggers to `triggers/File`, explicit ones to
/// `triggers/NAME`. The registries' order is the order debootstrap unpacks packages in.
pub(crate) fn register_trigger_interests(
    root: &RootDir,
    packages: &[&UnpackedPackage],
) -> Result<(), StageError> {
    // Registry file name (under triggers/) -> lines to append, in first-seen order.
    let mut registries: Vec<(String, String)> = Vec::new();
    for package in packages {
        let name = package.db_name();
        let control = Path::new("var/lib/dpkg/info").join(format!("{name}.triggers"));
        let Some(triggers) = root.read_file(&control)? else {
            continue;
        };
        for interest in interests(&String::from_utf8_lossy(&triggers)) {
            let suffix = if interest.awaited { "" } else { "/noawait" };
            let (registry, line) = if interest.trigger.starts_with('/') {
                ("File", format!("{} {name}{suffix}\n", interest.trigger))
            } else {
                (interest.trigger, format!("{name}{suffix}\n"))
            };
            match registries.iter_mut().find(|(r, _)| r == registry) {
                Some((_, lines)) => lines.push_str(&line),
                None => registries.push((registry.to_owned(), line)),
            }
        }
    }
    if registries.is_empty() {
        return Ok(());
    }
    let dir = Path::new("var/lib/dpkg/triggers");
    root.create_dir_all(dir, 0o755)?;
    for (registry, lines) in registries {
        let path = dir.join(registry);
        let mut registered = root.read_file(&path)?.unwrap_or_default();
        registered.extend_from_slice(lines.as_bytes());
        root.write_file(&path, &registered, 0o644)?;
    }
    Ok(())
}

/// One interest a `triggers` control file declares.
#[derive(Debug, PartialEq, Eq)]
struct Interest<'a> {
    /// A file trigger's path (starting with `/`) or an explicit trigger's name.
    trigger: &'a str,
    /// Whether the activating package awaits it.
    awaited: bool,
}

/// The interests a `triggers` control file declares; a name that could leave dpkg's triggers
/// directory is passed over (dpkg refuses the package itself).
fn interests(triggers: &str) -> Vec<Interest<'_>> {
    triggers
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let directive = words.next()?;
            let trigger = words
                .next()
                .filter(|t| t.starts_with('/') || !(t.contains('/') || t.starts_with('.')))?;
            let awaited = match directive {
                "interest" | "interest-await" => true,
                "interest-noawait" => false,
                _ => return None,
            };
            Some(Interest { trigger, awaited })
        })
        .collect()
}

/// Conffiles dpkg's status lists as `newconffile` (unpacked, never configured), except those
/// flagged `remove-on-upgrade`: the package does not ship them, it asks dpkg to remove them. A
/// stanza that is not deb822 is passed over here; dpkg itself refuses it a moment later, naming
/// it.
fn new_conffiles(status: &str) -> Vec<&str> {
    let mut paths = Vec::new();
    for paragraph in crate::deb822::paragraphs(status, Comments::Refused).filter_map(Result::ok) {
        let Some(conffiles) = paragraph.field("Conffiles") else {
            continue;
        };
        for entry in conffiles.lines() {
            let mut fields = entry.split_whitespace();
            if let (Some(path), Some("newconffile"), None) =
                (fields.next(), fields.next(), fields.next())
            {
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

/// Runs the preinsts of `packages` with `install`, as `dpkg --unpack` would have before
/// unpacking (base-files and libc6 register their merged-/usr diversions there): from tmp.ci/,
/// with dpkg's environment (see [`maintscript`]).
pub(crate) fn run_preinsts(
    root: &RootDir,
    packages: &[&UnpackedPackage],
    dpkg_version: &str,
    extra_env: &[(&str, &str)],
    log: Option<&Path>,
) -> Result<(), StageError> {
    for package in packages {
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

/// Runs `dpkg DPKG_ARGS PACKAGES...` to configure (see [`PhaseKind`]), advancing
/// [`Counter::Configured`] on each `Setting up` line; on failure the error names the package
/// dpkg was setting up.
pub(crate) fn configure_phase(
    root: &RootDir,
    dpkg_args: &[&str],
    packages: &[&UnpackedPackage],
    extra_env: &[(&str, &str)],
    log: Option<&Path>,
    reporter: &dyn Reporter,
) -> Result<(), StageError> {
    crate::cancel::check()?;
    let started = Instant::now();
    let mut last_setting_up = String::new();
    let names: Vec<String> = packages.iter().map(|p| p.db_name()).collect();
    // --log because dpkg.cfg, which names the log, is still dpkg.cfg.dpkg-new when dpkg starts.
    let mut argv = vec!["dpkg", "--log=/var/log/dpkg.log", "--force-unsafe-io"];
    argv.extend(dpkg_args);
    argv.extend(names.iter().map(String::as_str));
    let shown = argv[3..].join(" ");
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
            tracing::info!("dpkg {shown} took {:.1?}", started.elapsed());
            Ok(())
        }
        Err(StageError::Command {
            command,
            status,
            tail,
            ..
        }) => Err(StageError::Command {
            what: match failed_script(&tail).or_else(|| failed_script_in_log(root, log)) {
                Some(script) => format!("{script} (in dpkg {shown})"),
                None if last_setting_up.is_empty() => format!("dpkg {shown}"),
                None => format!("dpkg {shown} (setting up {last_setting_up})"),
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

    /// A package of debootstrap's first stage (`first`) or of its base system.
    fn package(name: &str, first: bool) -> UnpackedPackage {
        UnpackedPackage {
            name: name.to_owned(),
            version: "1".to_owned(),
            architecture: "amd64".to_owned(),
            multi_arch_same: false,
            essential: false,
            priority: None,
            extracted_first: first,
            scripts: vec!["preinst".to_owned()],
            control: Vec::new(),
        }
    }

    #[test]
    fn the_essential_set_is_the_essential_packages_and_what_they_need() {
        let with = |name: &str, essential: bool, control: &str, arch: &str| UnpackedPackage {
            essential,
            architecture: arch.to_owned(),
            control: format!("Package: {name}\n{control}").into_bytes(),
            ..package(name, true)
        };
        let unpacked = Unpacked {
            packages: vec![
                with(
                    "dpkg",
                    true,
                    "Pre-Depends: libc6 (>= 2), tar | tar-alt\n",
                    "amd64",
                ),
                with("libc6", false, "Depends: libgcc-s1\n", "amd64"),
                with("libgcc-s1", false, "", "amd64"),
                with("tar", false, "", "amd64"),
                with("tar-alt", false, "", "amd64"),
                with("bash", true, "Depends: base-files, awk\n", "amd64"),
                with("base-files", true, "", "all"),
                with("mawk", false, "Provides: awk\n", "amd64"),
                // Priority: required, but neither essential nor needed by an essential one.
                with("tzdata", false, "Depends: debconf\n", "all"),
                with("debconf", false, "", "all"),
                // Another architecture's essential package is not mmdebstrap's to install.
                with("foreign", true, "Depends: tzdata\n", "i386"),
            ],
        };
        let mut names: Vec<&str> = essential_set(&unpacked)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "base-files",
                "bash",
                "dpkg",
                "libc6",
                "libgcc-s1",
                "mawk",
                "tar"
            ]
        );
    }

    #[test]
    fn core_comes_first_one_by_one_then_the_first_stage_then_the_rest() {
        let tzdata = package("tzdata", true);
        let unpacked = Unpacked {
            packages: vec![
                package("apt", false),
                tzdata,
                package("base-files", true),
                package("base-passwd", true),
                package("bash", true),
                package("libc6", true),
                package("dpkg", true),
            ],
        };
        let kinds: Vec<(PhaseKind, Vec<&str>)> = phases(&unpacked)
            .iter()
            .map(|p| (p.kind, p.packages.iter().map(|p| p.name.as_str()).collect()))
            .collect();
        assert_eq!(
            kinds,
            [
                (PhaseKind::Core, vec!["base-passwd"]),
                (PhaseKind::Core, vec!["base-files"]),
                (PhaseKind::Core, vec!["dpkg"]),
                (PhaseKind::Core, vec!["libc6"]),
                (PhaseKind::Required, vec!["bash", "tzdata"]),
                (PhaseKind::Base, vec!["apt"]),
            ]
        );
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
    fn trigger_interests_are_registered_in_install_order() {
        // Writing through RootDir sets owners, which needs root.
        if !crate::test_skip::require_root() {
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let info = tmp.path().join("var/lib/dpkg/info");
        fs_err::create_dir_all(&info).expect("mkdir");
        fs_err::write(
            info.join("debianutils.triggers"),
            "interest-noawait /usr/share/debianutils/shells.d\ninterest ldconfig\n",
        )
        .expect("write");
        fs_err::write(
            info.join("base-files.triggers"),
            "interest-noawait /usr/lib32\ninterest /usr/libx32\ninterest-noawait ldconfig\n",
        )
        .expect("write");
        let (base_files, debianutils) = (package("base-files", true), package("debianutils", true));
        let root = RootDir::open(tmp.path()).expect("open");
        register_trigger_interests(&root, &[&base_files]).expect("register");
        register_trigger_interests(&root, &[&debianutils]).expect("register");
        let registry = |name: &str| {
            fs_err::read_to_string(tmp.path().join("var/lib/dpkg/triggers").join(name))
                .expect("read")
        };
        assert_eq!(
            registry("File"),
            "/usr/lib32 base-files/noawait\n/usr/libx32 base-files\n\
             /usr/share/debianutils/shells.d debianutils/noawait\n"
        );
        assert_eq!(registry("ldconfig"), "base-files/noawait\ndebianutils\n");
    }

    #[test]
    fn a_predep_comes_with_its_first_alternatives_among_the_candidates() {
        let with = |name: &str, control: &str| UnpackedPackage {
            control: format!("Package: {name}\n{control}").into_bytes(),
            ..package(name, false)
        };
        let cron = with(
            "cron",
            "Pre-Depends: init-system-helpers (>= 1.54~)\nDepends: cron-daemon-common (= 1),\n \
             libc6 (>= 2.38), sensible-utils | editor, adduser:any\n",
        );
        let common = with("cron-daemon-common", "Depends: adduser\n");
        let (adduser, editor, sensible) = (
            with("adduser", "Depends: passwd\n"),
            with("editor", ""),
            with("sensible-utils", ""),
        );
        // libc6, init-system-helpers and passwd are installed already: not candidates.
        let candidates = [&editor, &sensible, &cron, &adduser, &common];
        let names: Vec<&str> = predep_batch("cron", &candidates)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["adduser", "cron", "cron-daemon-common", "sensible-utils"]
        );
        assert!(predep_batch("gone", &candidates).is_empty());
    }

    #[test]
    fn held_back_stanzas_reach_the_status_file_only_when_admitted() {
        // Writing through RootDir sets owners, which needs root.
        if !crate::test_skip::require_root() {
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let status = tmp.path().join(STATUS);
        fs_err::create_dir_all(status.parent().expect("a parent")).expect("mkdir");
        fs_err::write(
            &status,
            "Package: a\nStatus: install ok unpacked\nArchitecture: amd64\n\n\
             Package: b\nStatus: install ok unpacked\nArchitecture: amd64\nDescription: x\n y\n\n\
             Package: b\nStatus: install ok unpacked\nArchitecture: i386\n\n\
             Package: c\nStatus: install ok unpacked\nArchitecture: amd64\n\n",
        )
        .expect("write status");
        let root = RootDir::open(tmp.path()).expect("open");
        let mut held = HeldBack::hold_all(&root).expect("hold");
        let read = || fs_err::read_to_string(&status).expect("read");
        assert_eq!(read(), "");
        // One architecture's instance of b comes in; the other stays held.
        held.admit(&root, &[&package("b", true)]).expect("admit b");
        assert_eq!(
            read(),
            "Package: b\nStatus: install ok unpacked\nArchitecture: amd64\nDescription: x\n y\n\n"
        );
        // dpkg's selection of c is replaced by c's own stanza.
        fs_err::write(
            &status,
            format!(
                "{}Package: c\nStatus: install ok not-installed\nArchitecture: amd64\n",
                read()
            ),
        )
        .expect("select c");
        held.admit(&root, &[&package("c", false)]).expect("admit c");
        assert_eq!(
            read(),
            "Package: b\nStatus: install ok unpacked\nArchitecture: amd64\nDescription: x\n y\n\n\
             Package: c\nStatus: install ok unpacked\nArchitecture: amd64\n\n"
        );
        let mut foreign_b = package("b", false);
        foreign_b.architecture = "i386".to_owned();
        held.admit(&root, &[&foreign_b]).expect("admit b:i386");
        assert!(
            read().contains("Architecture: amd64\nDescription: x")
                && read()
                    .ends_with("Package: b\nStatus: install ok unpacked\nArchitecture: i386\n\n"),
            "both instances of b: {}",
            read()
        );
        held.admit_rest(&root).expect("admit the rest");
        assert!(
            read().ends_with("Package: a\nStatus: install ok unpacked\nArchitecture: amd64\n\n")
        );
    }

    #[test]
    fn only_new_conffiles_are_listed() {
        let status = "Package: a\nStatus: install ok unpacked\nConffiles:\n /etc/a newconffile\n \
                      /etc/b 0123456789abcdef0123456789abcdef\nDescription: x\n more\n\n\
                      Package: b\nConffiles:\n /etc/c newconffile\n \
                      /etc/gnome/defaults.list newconffile remove-on-upgrade\n";
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
            "Package: a\nConffiles:\n /etc/a newconffile\n /etc/gone newconffile\n \
             /etc/gnome/defaults.list newconffile remove-on-upgrade\n",
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
    fn interests_skip_activations_comments_and_escaping_names() {
        let triggers = "# a comment\ninterest-noawait /usr/lib32\ninterest /usr/share/x\n\
                        interest-noawait ldconfig\nactivate-noawait ldconfig\n\
                        interest ../../etc/passwd\ninterest .hidden\n";
        let found: Vec<(&str, bool)> = interests(triggers)
            .iter()
            .map(|i| (i.trigger, i.awaited))
            .collect();
        assert_eq!(
            found,
            [
                ("/usr/lib32", false),
                ("/usr/share/x", true),
                ("ldconfig", false)
            ]
        );
    }
}
