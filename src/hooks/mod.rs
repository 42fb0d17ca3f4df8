//! Hooks, as mmdebstrap defines them: takes the hooks given for a point of the pipeline (setup,
//! extract, essential, customize) and the held root; gives each one run in order, a shell
//! command beside the root with the root as `$1`, or a special form (`copy-in`, `tar-out`, ...)
//! carried out in Rust with every path inside the root resolved inside it.
//!
//! Commands run in a private mount namespace in which the root's /proc, /sys and /dev/pts are
//! mounted (from extract on; the setup root is empty): the hook and everything it starts see
//! them, the host never does, and they go when the hook's namespace does, whatever ends it.

mod special;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::progress::Reporter;
use crate::stage::{self, ChrootMounts, RootDir, StageError};
use crate::HeldRoot;

pub use special::Special;

/// Where in the pipeline a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    /// The empty root, before anything is unpacked.
    Setup,
    /// Every package unpacked, nothing configured yet.
    Extract,
    /// The essential packages (with the rest of debootstrap's required set) configured, the
    /// others not yet known to dpkg; mmdebstrap's point after the Essential set.
    Essential,
    /// At the end, before the onion stage and the output.
    Customize,
}

impl HookPoint {
    /// Every point, in pipeline order.
    pub const ALL: [HookPoint; 4] = [
        HookPoint::Setup,
        HookPoint::Extract,
        HookPoint::Essential,
        HookPoint::Customize,
    ];

    /// The name mmdebstrap gives it (`MMDEBSTRAP_HOOK`, the `--hook-directory` prefix).
    pub fn name(self) -> &'static str {
        match self {
            HookPoint::Setup => "setup",
            HookPoint::Extract => "extract",
            HookPoint::Essential => "essential",
            HookPoint::Customize => "customize",
        }
    }
}

/// One hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// A command: exec'ed directly with the root as its argument when it is an executable
    /// file or has no shell metacharacters, else run as `sh -c COMMAND exec ROOT`.
    Command(String),
    /// A special form, carried out without a shell.
    Special(Special),
}

/// Why a hook could not be set up or failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{point} hook `{command}` failed ({status}); last lines of its output:\n{tail}")]
    Failed {
        point: &'static str,
        command: String,
        status: std::process::ExitStatus,
        tail: String,
    },
    #[error("cannot start the {point} hook `{command}`")]
    Spawn {
        point: &'static str,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid hook {text:?}: {reason}")]
    Parse { text: String, reason: String },
    #[error("cannot read the hook directory {path}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use {path} as a hook: {reason}; rename or move it out of the hook directory")]
    DirectoryEntry { path: PathBuf, reason: &'static str },
    #[error("{point} hook `{command}` failed: {path}")]
    Special {
        point: &'static str,
        command: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{point} hook `{command}` failed: {reason}")]
    SpecialRefused {
        point: &'static str,
        command: String,
        reason: String,
    },
    #[error("after the {point} hook `{command}`")]
    RootReplaced {
        point: &'static str,
        command: String,
        #[source]
        source: crate::TargetError,
    },
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Cancelled(#[from] crate::cancel::Cancelled),
}

/// The hooks of a build and what they are told about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Each hook with its point, in the order given; run point by point in that order.
    pub list: Vec<(HookPoint, Hook)>,
    /// mmdebstrap's verbosity level: 0 quiet, 1 normal, 2 verbose, 3 debug.
    pub verbosity: u8,
}

impl Hooks {
    /// Whether any hook runs at `point`.
    pub fn any_at(&self, point: HookPoint) -> bool {
        self.list.iter().any(|(p, _)| *p == point)
    }

    /// Adds the scripts of `dir` whose names start with a point's name, each point's in byte
    /// order of their names, where this call stands among the hooks, as mmdebstrap's
    /// `--hook-directory` does. Like mmdebstrap, it warns of and skips a file named like a hook
    /// but not executable (symlinks are followed), and of an executable not named like one;
    /// subdirectories are not entered, and one named like a hook is refused (mmdebstrap would
    /// try to run it and fail).
    pub fn add_directory(&mut self, dir: &Path) -> Result<(), HookError> {
        use std::os::unix::fs::PermissionsExt;
        let err = |source| HookError::Directory {
            path: dir.to_path_buf(),
            source,
        };
        let mut names: Vec<OsString> = fs_err::read_dir(dir)
            .map_err(err)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        names.sort();
        let mut found = 0;
        for name in names {
            let path = dir.join(&name);
            let meta = fs_err::metadata(&path).ok();
            let executable = meta
                .as_ref()
                .is_some_and(|m| m.is_dir() || m.permissions().mode() & 0o111 != 0);
            let text = name.to_string_lossy();
            let point = HookPoint::ALL
                .into_iter()
                .find(|p| text.starts_with(p.name()));
            match point {
                Some(_) if meta.as_ref().is_some_and(|m| m.is_dir()) => {
                    return Err(HookError::DirectoryEntry {
                        path,
                        reason: "a directory named like a hook script",
                    })
                }
                Some(point) if executable => {
                    found += 1;
                    self.list
                        .push((point, Hook::Command(path.to_string_lossy().into_owned())));
                }
                Some(_) => tracing::warn!(
                    "{} is named like a hook but not executable: skipped",
                    path.display()
                ),
                None if executable && meta.is_some_and(|m| m.is_file()) => tracing::warn!(
                    "{} is executable but its name starts with no hook point's name: skipped",
                    path.display()
                ),
                None => {}
            }
        }
        if found == 0 {
            tracing::warn!("no executable hook scripts in {}", dir.display());
        }
        Ok(())
    }
}

impl Hook {
    /// Reads a hook option's value: a special form when it starts with one's name and a space,
    /// a command otherwise.
    pub fn parse(text: &str) -> Result<Hook, HookError> {
        match Special::parse(text) {
            Some(special) => Ok(Hook::Special(special.map_err(|reason| {
                HookError::Parse {
                    text: text.to_owned(),
                    reason,
                }
            })?)),
            None if text.trim().is_empty() => Err(HookError::Parse {
                text: text.to_owned(),
                reason: "it is empty".to_owned(),
            }),
            None => Ok(Hook::Command(text.to_owned())),
        }
    }
}

/// What hooks are told about the build, as environment variables.
#[derive(Debug, Clone, Copy)]
pub struct BuildFacts<'a> {
    pub arch: &'a str,
    pub suite: &'a str,
    pub variant: &'a str,
    /// `directory` or `tar`.
    pub format: &'a str,
    pub include: &'a [String],
    /// The chroot's name (`--name`).
    pub name: &'a str,
}

/// The hooks of one point, and the root they work on.
#[derive(Debug, Clone, Copy)]
pub struct HookRequest<'a> {
    pub root: &'a HeldRoot,
    pub point: HookPoint,
    pub hooks: &'a Hooks,
    pub facts: BuildFacts<'a>,
}

/// Runs the hooks of `request.point` in order; the first failure stops them and is returned.
/// Commands run with the root's kernel filesystems mounted (except at setup), all of which are
/// gone again when this returns, on every path.
pub fn run(request: &HookRequest, _reporter: &dyn Reporter) -> Result<(), HookError> {
    if !request.hooks.any_at(request.point) {
        return Ok(());
    }
    crate::cancel::check()?;
    let root = RootDir::held(request.root)?;
    let root_path = root_path(request);
    let env = environment(request, &root_path);
    let point = request.point;
    stage::in_private_mounts(|| {
        let here = root.in_this_namespace(&root_path)?;
        let mounts = match point {
            HookPoint::Setup => None,
            _ => Some(ChrootMounts::mount_in(&here)?),
        };
        let result = run_each(request, &here, &root_path, &env);
        if let Some(mounts) = mounts {
            mounts.unmount()?;
        }
        Ok(result)
    })?
}

/// [`run`] from inside the configuration stage, whose private mount namespace already has the
/// root's kernel filesystems mounted (and its service blocks in place): `here` is the root as
/// opened there. The essential hooks run this way, between two configuration phases.
pub(crate) fn run_mounted(
    request: &HookRequest,
    here: &RootDir,
    _reporter: &dyn Reporter,
) -> Result<(), HookError> {
    if !request.hooks.any_at(request.point) {
        return Ok(());
    }
    crate::cancel::check()?;
    let root_path = root_path(request);
    let env = environment(request, &root_path);
    run_each(request, here, &root_path, &env)
}

/// The root's absolute path, the hooks' `$1`.
fn root_path(request: &HookRequest) -> PathBuf {
    std::path::absolute(request.root.path()).unwrap_or_else(|_| request.root.path().to_path_buf())
}

fn run_each(
    request: &HookRequest,
    root: &RootDir,
    root_path: &Path,
    env: &[(String, String)],
) -> Result<(), HookError> {
    let point = request.point.name();
    for (_, hook) in request
        .hooks
        .list
        .iter()
        .filter(|(p, _)| *p == request.point)
    {
        crate::cancel::check()?;
        let command = match hook {
            Hook::Command(command) => {
                run_command(root, root_path, point, command, env)?;
                command.clone()
            }
            Hook::Special(special) => {
                tracing::info!("{point} hook: {special}");
                special
                    .run(request.root)
                    .map_err(|e| e.into_hook_error(point, special.to_string()))?;
                special.to_string()
            }
        };
        // As mmdebstrap checks: a hook must not replace the root it was given.
        request
            .root
            .verify()
            .map_err(|source| HookError::RootReplaced {
                point,
                command,
                source,
            })?;
    }
    Ok(())
}

/// Runs one command hook beside the root, its output logged and shown at info level.
fn run_command(
    root: &RootDir,
    root_path: &Path,
    point: &'static str,
    command: &str,
    env: &[(String, String)],
) -> Result<(), HookError> {
    let root_arg = root_path.to_string_lossy();
    let argv: Vec<&str> = if runs_directly(command) {
        vec![command, &root_arg]
    } else {
        vec!["sh", "-c", command, "exec", &root_arg]
    };
    tracing::info!("{point} hook: {}", argv.join(" "));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // The log lives in the root's /var/log once packages made it; the setup root, and a root
    // without one, stay as the hook leaves them.
    let has_log_dir =
        root.file_type(Path::new("var/log"))? == Some(rustix::fs::FileType::Directory);
    let log =
        (point != HookPoint::Setup.name() && has_log_dir).then_some(Path::new(stage::LOG_PATH));
    let invocation = stage::Invocation {
        root,
        argv: &argv,
        env: &env,
        log,
        what: None,
    };
    match stage::run_beside(&invocation, &mut |line| {
        tracing::info!("{point} hook: {}", line.trim_end())
    }) {
        Ok(_) => Ok(()),
        Err(StageError::Command { status, tail, .. }) => Err(HookError::Failed {
            point,
            command: command.to_owned(),
            status,
            tail,
        }),
        Err(StageError::Spawn { source, .. }) => Err(HookError::Spawn {
            point,
            command: command.to_owned(),
            source,
        }),
        Err(other) => Err(other.into()),
    }
}

/// mmdebstrap's rule: an executable file, or a command without shell metacharacters, is
/// exec'ed directly with the root as its argument.
fn runs_directly(command: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let plain = command
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
    let executable =
        fs_err::metadata(command).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    plain || executable
}

/// The variables a hook sees: mmdebstrap's names, so its hook scripts work, and ours.
fn environment(request: &HookRequest, root_path: &Path) -> Vec<(String, String)> {
    let facts = request.facts;
    let include = facts
        .include
        .iter()
        .map(|p| p.replace('%', "%25").replace(',', "%2C"))
        .collect::<Vec<_>>()
        .join(",");
    let argv0 = std::env::args().next().unwrap_or_default();
    let shared = [
        (
            "MODE",
            if crate::userns::inside() {
                "unshare"
            } else {
                "root"
            }
            .to_owned(),
        ),
        ("HOOK", request.point.name().to_owned()),
        ("VERBOSITY", request.hooks.verbosity.to_string()),
        ("ARCH", facts.arch.to_owned()),
        ("SUITE", facts.suite.to_owned()),
        ("VARIANT", facts.variant.to_owned()),
        ("FORMAT", facts.format.to_owned()),
        ("INCLUDE", include),
        ("ARGV0", argv0),
    ];
    let mut env = Vec::new();
    for (key, value) in &shared {
        env.push((format!("MMDEBSTRAP_{key}"), value.clone()));
        env.push((format!("DEBSTRAP_{key}"), value.clone()));
    }
    env.push(("DEBSTRAP_NAME".to_owned(), facts.name.to_owned()));
    env.push((
        "DEBSTRAP_ROOT".to_owned(),
        root_path.to_string_lossy().into_owned(),
    ));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_without_metacharacters_run_directly_others_under_sh() {
        assert!(runs_directly(
            "/usr/share/autopkgtest/setup-commands/setup-testbed"
        ));
        assert!(runs_directly("true"));
        assert!(!runs_directly("echo host > \"$1/etc/hostname\""));
        assert!(!runs_directly("chroot $1 true"));
    }

    #[test]
    fn special_forms_are_recognised_only_with_a_space_after_their_name() {
        assert!(matches!(
            Hook::parse("copy-in a b /etc").expect("parses"),
            Hook::Special(_)
        ));
        assert!(matches!(
            Hook::parse("copy-in-x").expect("parses"),
            Hook::Command(_)
        ));
        assert!(Hook::parse("download onlyone").is_err());
        assert!(Hook::parse("  ").is_err());
    }
}
