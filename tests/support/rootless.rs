//! Running this tool as an unprivileged user for the rootless tests: the user CI creates with
//! subordinate id ranges (see .ci/run), a copy of the binary that user can execute, and
//! directories it owns. Tests run as root and drop to the user with setpriv(1).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::host::{missing, require_program, require_root};

/// The user `.ci/run` creates with /etc/subuid and /etc/subgid ranges; another may be named
/// with DEBSTRAP_TEST_ROOTLESS_USER.
pub const DEFAULT_USER: &str = "debstrap-rootless";

/// An unprivileged user to build as.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// First host id of the user's subordinate uid and gid ranges (in-namespace id 1).
    pub subuid: u32,
    pub subgid: u32,
}

/// The rootless user with its ranges, plus root and setpriv to become it; `None` (after
/// [`missing`]) when any is lacking.
pub fn user() -> Option<User> {
    if !require_root() || !require_program("setpriv") || !require_program("newuidmap") {
        return None;
    }
    let name = std::env::var("DEBSTRAP_TEST_ROOTLESS_USER").unwrap_or_else(|_| DEFAULT_USER.into());
    let Some(entry) = debstrap_onion::sys::user_by_name(&name).ok().flatten() else {
        missing(&format!("the user {name} (useradd it, as .ci/run does)"));
        return None;
    };
    let range = |file: &str| {
        fs_err::read_to_string(file)
            .ok()?
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() == 3 && f[0] == name && f[2].parse::<u32>().ok()? >= 65535)
                    .then(|| f[1].parse().ok())
                    .flatten()
            })
            .next()
    };
    let (Some(subuid), Some(subgid)) = (range("/etc/subuid"), range("/etc/subgid")) else {
        missing(&format!(
            "subordinate id ranges of 65536 ids for {name} in /etc/subuid and /etc/subgid"
        ));
        return None;
    };
    Some(User {
        name,
        uid: entry.uid,
        gid: entry.gid,
        subuid,
        subgid,
    })
}

/// A working directory the user owns (mode 0755, so root's checks can read it too), holding an
/// executable copy of this tool (the build tree may be out of the user's reach).
pub struct Workdir {
    pub dir: tempfile::TempDir,
    pub binary: PathBuf,
}

impl Workdir {
    pub fn new(user: &User) -> Workdir {
        let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
        fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let binary = dir.path().join("debstrap-onion");
        fs_err::copy(env!("CARGO_BIN_EXE_debstrap-onion"), &binary).expect("copy the binary");
        fs_err::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        rustix::fs::chown(
            dir.path(),
            Some(rustix::fs::Uid::from_raw(user.uid)),
            Some(rustix::fs::Gid::from_raw(user.gid)),
        )
        .expect("chown the workdir");
        Workdir { dir, binary }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Workdir {
    /// What a build left belongs to the user's subordinate ids; root removes it all.
    fn drop(&mut self) {
        let _ = Command::new("rm").arg("-rf").arg(self.dir.path()).status();
    }
}

/// `binary args` as `user` with a clean environment (PATH, HOME in the workdir, LANG), in the
/// workdir; setpriv is named by its path, so a test may give the tool another PATH.
pub fn command_as<S: AsRef<std::ffi::OsStr>>(user: &User, work: &Workdir, args: &[S]) -> Command {
    let mut command = Command::new("/usr/bin/setpriv");
    command
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--init-groups")
        .arg("--")
        .arg(&work.binary)
        .args(args)
        .current_dir(work.path())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("HOME", work.path())
        .env("LANG", "C.UTF-8");
    command
}

/// Runs [`command_as`] with `env` added.
pub fn run_as(user: &User, work: &Workdir, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = command_as(user, work, args);
    command.envs(env.iter().copied());
    command.output().expect("run setpriv")
}
