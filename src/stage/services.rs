//! Keeping services down while packages configure: takes the root; gives a policy-rc.d that
//! answers 101 (invoke-rc.d starts nothing) and a start-stop-daemon diverted to a stub, each a
//! guard that puts the root back as it was when dropped, on error and panic paths too.

use std::path::Path;

use super::chroot::{self, Invocation};
use super::rootfs::RootDir;
use super::StageError;

const POLICY_RC_D: &str = "usr/sbin/policy-rc.d";

/// 101 is "action forbidden by policy" (see /usr/share/doc/init-system-helpers/README.policy-rc.d).
const POLICY_RC_D_SCRIPT: &str =
    "#!/bin/sh\n# Installed by debstrap-onion while packages configure.\nexit 101\n";

const START_STOP_DAEMON_STUB: &str = "#!/bin/sh\n\
# Installed by debstrap-onion while packages configure: start no daemon.\n\
echo \"Warning: fake start-stop-daemon called, doing nothing\" >&2\n\
exit 0\n";

/// `usr/sbin/policy-rc.d` answering 101, removed when dropped unless it was there before.
#[derive(Debug)]
pub(crate) struct PolicyRcD<'a> {
    root: &'a RootDir,
    /// Whether we wrote the file (an existing one belongs to someone else and stays).
    created: bool,
}

impl<'a> PolicyRcD<'a> {
    /// Writes the policy unless the root already has one.
    pub(crate) fn install(root: &'a RootDir) -> Result<Self, StageError> {
        let path = Path::new(POLICY_RC_D);
        if root.file_type(path)?.is_some() {
            tracing::warn!(
                "{} already exists; keeping it",
                root.host_path(path).display()
            );
            return Ok(Self {
                root,
                created: false,
            });
        }
        root.create_dir_all(Path::new("usr/sbin"), 0o755)?;
        root.write_file(path, POLICY_RC_D_SCRIPT.as_bytes(), 0o755)?;
        Ok(Self {
            root,
            created: true,
        })
    }

    /// Removes the policy now, reporting a failure (Drop only logs it).
    pub(crate) fn remove(mut self) -> Result<(), StageError> {
        self.remove_now()
    }

    fn remove_now(&mut self) -> Result<(), StageError> {
        if std::mem::take(&mut self.created) {
            self.root.remove_file(Path::new(POLICY_RC_D))?;
        }
        Ok(())
    }
}

impl Drop for PolicyRcD<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.remove_now() {
            tracing::warn!("{e}");
        }
    }
}

/// start-stop-daemon renamed aside by a local dpkg diversion, with a stub that starts nothing
/// in its place; dropping it removes the stub and the diversion, restoring the real binary.
#[derive(Debug)]
pub(crate) struct StartStopDaemonDiversion<'a> {
    root: &'a RootDir,
    log: Option<&'a Path>,
    /// The path dpkg knows the binary by (`/usr/sbin/start-stop-daemon`), while diverted.
    diverted: Option<String>,
}

impl<'a> StartStopDaemonDiversion<'a> {
    /// Diverts the start-stop-daemon dpkg ships, if the root has one (otherwise does nothing).
    pub(crate) fn install(root: &'a RootDir, log: Option<&'a Path>) -> Result<Self, StageError> {
        let mut guard = Self {
            root,
            log,
            diverted: None,
        };
        let Some(path) = shipped_path(root)? else {
            return Ok(guard);
        };
        dpkg_divert(root, log, "--add", &path)?;
        guard.diverted = Some(path.clone());
        root.write_file(Path::new(&path), START_STOP_DAEMON_STUB.as_bytes(), 0o755)?;
        Ok(guard)
    }

    /// Restores the real start-stop-daemon now, reporting a failure (Drop only logs it).
    pub(crate) fn remove(mut self) -> Result<(), StageError> {
        self.remove_now()
    }

    fn remove_now(&mut self) -> Result<(), StageError> {
        let Some(path) = self.diverted.take() else {
            return Ok(());
        };
        // The stub must go first: dpkg-divert will not rename the real file onto it.
        self.root.remove_file(Path::new(&path))?;
        dpkg_divert(self.root, self.log, "--remove", &path)
    }
}

impl Drop for StartStopDaemonDiversion<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.remove_now() {
            tracing::warn!("{e}");
        }
    }
}

/// Where dpkg's file list puts start-stop-daemon (`/sbin/...` up to bookworm, `/usr/sbin/...`
/// after), if dpkg is unpacked and the binary is there.
fn shipped_path(root: &RootDir) -> Result<Option<String>, StageError> {
    let Some(list) = root.read_file(Path::new("var/lib/dpkg/info/dpkg.list"))? else {
        return Ok(None);
    };
    let list = String::from_utf8_lossy(&list);
    for path in list.lines().filter(|l| l.ends_with("/start-stop-daemon")) {
        if root.file_type(Path::new(path))?.is_some() {
            return Ok(Some(path.to_owned()));
        }
    }
    Ok(None)
}

fn dpkg_divert(
    root: &RootDir,
    log: Option<&Path>,
    action: &str,
    path: &str,
) -> Result<(), StageError> {
    let what = format!("dpkg-divert {action} {path}");
    chroot::run(
        &Invocation {
            root,
            argv: &["dpkg-divert", "--local", "--rename", action, path],
            env: &[],
            log,
            what: Some(&what),
        },
        &mut |_| {},
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn policy_rc_d_path(root: &Path) -> PathBuf {
        root.join(POLICY_RC_D)
    }

    /// Installs policy-rc.d, then fails with an error that says whether the file was there at
    /// the failure: a failed install must not pass for "removed after the step failed".
    fn failing_step(root: &RootDir, path: &Path) -> Result<(), StageError> {
        let _policy = PolicyRcD::install(root)?;
        Err(StageError::UnsafePath {
            path: PathBuf::from("/nowhere"),
            reason: if path.exists() {
                "a step failed with policy-rc.d in place"
            } else {
                "a step failed without policy-rc.d"
            },
        })
    }

    #[test]
    fn policy_rc_d_answers_101_while_held() {
        // Writing through RootDir sets owners, which needs root.
        if !crate::test_skip::require_root() {
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = RootDir::open(tmp.path()).expect("open");
        let policy = PolicyRcD::install(&root).expect("install");
        let path = policy_rc_d_path(tmp.path());
        let script = fs_err::read_to_string(&path).expect("read");
        assert!(script.starts_with("#!/bin/sh\n") && script.ends_with("exit 101\n"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs_err::metadata(&path).expect("stat").permissions(),
        );
        assert_eq!(mode & 0o7777, 0o755);
        policy.remove().expect("remove");
        assert!(!path.exists());
    }

    #[test]
    fn policy_rc_d_is_removed_when_a_step_fails() {
        // Writing through RootDir sets owners, which needs root.
        if !crate::test_skip::require_root() {
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = RootDir::open(tmp.path()).expect("open");
        let path = policy_rc_d_path(tmp.path());
        let err = failing_step(&root, &path).expect_err("the step fails");
        assert!(
            matches!(
                err,
                StageError::UnsafePath {
                    reason: "a step failed with policy-rc.d in place",
                    ..
                }
            ),
            "not the step's own failure: {err}"
        );
        assert!(!path.exists());
    }

    #[test]
    fn policy_rc_d_is_removed_on_panic() {
        // Writing through RootDir sets owners, which needs root.
        if !crate::test_skip::require_root() {
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = RootDir::open(tmp.path()).expect("open");
        let path = policy_rc_d_path(tmp.path());
        let mut installed = false;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _policy = PolicyRcD::install(&root).expect("install");
            installed = path.exists();
            panic!("a step panicked");
        }));
        let payload = result.expect_err("the step panicked");
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"a step panicked"),
            "the closure panicked for another reason"
        );
        assert!(installed, "policy-rc.d was not in place during the step");
        assert!(!path.exists());
    }

    #[test]
    fn an_existing_policy_rc_d_is_kept() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = policy_rc_d_path(tmp.path());
        fs_err::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs_err::write(&path, "#!/bin/sh\nexit 0\n").expect("write");
        let root = RootDir::open(tmp.path()).expect("open");
        PolicyRcD::install(&root)
            .expect("install")
            .remove()
            .expect("remove");
        assert_eq!(
            fs_err::read_to_string(&path).expect("read"),
            "#!/bin/sh\nexit 0\n"
        );
    }
}
