//! Running programs inside the chroot: takes the root and a command line; gives its exit status
//! and error output, run through chroot(2), with /proc and /dev mounted while it needs them.
//!
//! A private helper of the onion stage; `crate::stage` is to expose the shared `ChrootMounts` and
//! `run_in_chroot`, which this should give way to once they exist.

use std::ffi::CString;
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::{MntFlags, MsFlags};

use super::files;
use super::OnionError;

/// The mounts nginx needs: its daemon opens /dev/null; /proc is what programs expect.
const MOUNTS: [&str; 2] = ["proc", "dev"];

/// Mounts made under a root; unmounted (in reverse order) when dropped unless kept.
#[derive(Debug)]
pub(crate) struct Mounts {
    mounted: Vec<PathBuf>,
}

impl Mounts {
    /// Mounts /proc and binds /dev under `root`, skipping those already mounted there.
    pub fn mount(root: &Path) -> Result<Mounts, OnionError> {
        let mut mounts = Mounts {
            mounted: Vec::new(),
        };
        for name in MOUNTS {
            let target = files::confined(root, name)?;
            if is_mount_point(&target) {
                continue;
            }
            files::create_dir_all_mode(&target, 0o755).map_err(|source| {
                OnionError::WriteChroot {
                    path: target.clone(),
                    source,
                }
            })?;
            let mount_error = |source| OnionError::Mount {
                path: target.clone(),
                source,
            };
            if name == "proc" {
                nix::mount::mount(
                    Some("proc"),
                    &target,
                    Some("proc"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    None::<&str>,
                )
                .map_err(mount_error)?;
                mounts.mounted.push(target);
            } else {
                nix::mount::mount(
                    Some("/dev"),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(mount_error)?;
                mounts.mounted.push(target.clone());
                // A slave copy: unmounting it later must never propagate to the host's /dev.
                nix::mount::mount(
                    None::<&str>,
                    &target,
                    None::<&str>,
                    MsFlags::MS_SLAVE | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(mount_error)?;
            }
        }
        Ok(mounts)
    }

    /// Leaves the mounts in place (nginx keeps running); [`unmount_all`] removes them later.
    pub fn keep(mut self) {
        self.mounted.clear();
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for target in self.mounted.iter().rev() {
            // Lazy, so a process still holding a file there cannot keep the mount alive.
            let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
        }
    }
}

/// Unmounts what [`Mounts::mount`] mounts under `root`, if mounted; returns what it unmounted.
pub(crate) fn unmount_all(root: &Path) -> Result<Vec<PathBuf>, OnionError> {
    let mut unmounted = Vec::new();
    for name in MOUNTS.iter().rev() {
        let target = root.join(name);
        if is_mount_point(&target) {
            nix::mount::umount2(&target, MntFlags::MNT_DETACH).map_err(|source| {
                OnionError::Mount {
                    path: target.clone(),
                    source,
                }
            })?;
            unmounted.push(target);
        }
    }
    Ok(unmounted)
}

/// Whether something is mounted exactly at `path`, per /proc/self/mountinfo.
pub(crate) fn is_mount_point(path: &Path) -> bool {
    let Ok(path) = fs_err::canonicalize(path) else {
        return false;
    };
    let Ok(info) = fs_err::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| Path::new(&unescape_mountinfo(point)) == path)
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|digits| {
            bytes[i] == b'\\'
                && digits[0] <= b'3'
                && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a command in the chroot did.
#[derive(Debug)]
pub(crate) struct Ran {
    pub success: bool,
    pub status: String,
    pub stderr: String,
}

/// Runs `argv` (an absolute program path inside the chroot, then its arguments) in `root`, with a
/// clean environment, standard input and output on /dev/null and standard error captured.
pub(crate) fn run(root: &Path, argv: &[&str]) -> Result<Ran, OnionError> {
    let command = argv.join(" ");
    let spawn_error = |source| OnionError::Chroot {
        root: root.to_path_buf(),
        command: command.clone(),
        source,
    };
    let root_c = CString::new(root.as_os_str().as_bytes()).map_err(|_| {
        spawn_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "root path holds a NUL byte",
        ))
    })?;
    // Standard error goes to a file, not a pipe: a daemon (nginx) keeps its inherited
    // descriptors, and reading a pipe to its end would wait for the daemon to exit.
    let mut stderr_file = tempfile::tempfile().map_err(spawn_error)?;
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr_file.try_clone().map_err(spawn_error)?);
    // SAFETY: between fork and exec the closure only calls chroot(2) and chdir(2) on C strings
    // allocated before the fork; both are async-signal-safe and allocate nothing.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::chroot(root_c.as_c_str())?;
            rustix::process::chdir(c"/")?;
            Ok(())
        });
    }
    let status = cmd.status().map_err(spawn_error)?;
    let mut stderr = String::new();
    use std::io::Seek as _;
    stderr_file
        .seek(std::io::SeekFrom::Start(0))
        .and_then(|_| stderr_file.read_to_string(&mut stderr))
        .map_err(spawn_error)?;
    Ok(Ran {
        success: status.success(),
        status: status.to_string(),
        stderr,
    })
}

/// Runs `argv` in `root` and fails unless it exits 0.
pub(crate) fn run_ok(root: &Path, argv: &[&str]) -> Result<Ran, OnionError> {
    let ran = run(root, argv)?;
    if ran.success {
        Ok(ran)
    } else {
        Err(OnionError::CommandFailed {
            root: root.to_path_buf(),
            command: argv.join(" "),
            status: ran.status,
            stderr: ran.stderr.trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/srv/a\\040b"), "/srv/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn proc_is_a_mount_point_and_a_temp_dir_is_not() {
        assert!(is_mount_point(Path::new("/proc")));
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!is_mount_point(dir.path()));
    }
}
