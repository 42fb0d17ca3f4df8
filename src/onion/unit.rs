//! The systemd unit of a service: takes NAME, HOST_ROOT and the path of this program; gives
//! HOST_ROOT/etc/systemd/system/debstrap-onion-NAME.service, which runs `start` and `stop`, and
//! its `multi-user.target.wants` link when the service is enabled. Nothing is enabled unless
//! asked (`--enable`, `debstrap-onion enable NAME`).

use std::path::{Path, PathBuf};

use super::files::{self, Perms};
use super::host::HostChanges;
use super::OnionError;

/// systemd's directory for units the administrator installs, as seen from `/`.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// First line of every unit we write.
const MARK: &str = "# Written by debstrap-onion";

/// The unit's file name for NAME.
pub fn unit_name(name: &str) -> String {
    format!("debstrap-onion-{name}.service")
}

/// The text of NAME's unit, running `program` (this tool's absolute path).
pub fn unit(name: &str, program: &Path) -> String {
    let program = program.display();
    format!(
        "{MARK} for the onion service {name}; rebuilding {name} replaces it.\n\
         [Unit]\n\
         Description=Onion service {name}: nginx in its chroot, published by tor\n\
         Wants=tor.service\n\
         After=network.target tor.service\n\
         \n\
         [Service]\n\
         # start mounts what nginx needs, starts it in its own namespaces and returns; nginx stays\n\
         # in this unit's control group until stop.\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={program} start {name}\n\
         ExecStop={program} stop {name}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

/// The timer's file name for NAME: the daily log rotation.
fn timer_name(name: &str) -> String {
    format!("debstrap-onion-{name}-logs.timer")
}

/// The service the timer starts.
fn rotate_name(name: &str) -> String {
    format!("debstrap-onion-{name}-logs.service")
}

/// The daily timer of NAME's log rotation, and the service it runs: (file name, text) each.
pub fn timer(name: &str, program: &Path) -> [(String, String); 2] {
    let program = program.display();
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
                 \n\
                 [Service]\n\
                 Type=oneshot\n\
                 ExecStart={program} rotate-logs {name}\n"
            ),
        ),
    ]
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

/// The program the unit runs: this executable, by its absolute path.
fn program() -> Result<PathBuf, OnionError> {
    std::env::current_exe().map_err(|source| OnionError::Host {
        command: "find this program's path (/proc/self/exe)".to_string(),
        source,
    })
}

/// Writes NAME's unit under HOST_ROOT (0644), refusing a file of that name we did not write;
/// enables it when `enable`. Each change is recorded in `changes` first.
pub(crate) fn write(
    host_root: &Path,
    name: &str,
    enable: bool,
    changes: &mut HostChanges,
) -> Result<PathBuf, OnionError> {
    let path = unit_path(host_root, name);
    super::schroot::ensure_ours(&path)?;
    let write_error = |source| OnionError::WriteUnit {
        path: path.clone(),
        source,
    };
    changes
        .before_write(host_root, &path)
        .map_err(write_error)?;
    if let Some(dir) = path.parent() {
        files::create_dir_all_mode(dir, 0o755).map_err(write_error)?;
    }
    let program = program()?;
    files::write_atomic(&path, unit(name, &program).as_bytes(), Perms::mode(0o644))
        .map_err(write_error)?;
    let dir = path.parent().unwrap_or(host_root);
    for (file, text) in timer(name, &program) {
        let extra = dir.join(file);
        super::schroot::ensure_ours(&extra)?;
        let write_error = |source| OnionError::WriteUnit {
            path: extra.clone(),
            source,
        };
        changes
            .before_write(host_root, &extra)
            .map_err(write_error)?;
        files::write_atomic(&extra, text.as_bytes(), Perms::mode(0o644)).map_err(write_error)?;
    }
    if enable {
        enable_with(host_root, name, Some(changes))?;
    }
    Ok(path)
}

/// Enables NAME's unit: the `multi-user.target.wants` link systemctl would make.
pub fn enable(host_root: &Path, name: &str) -> Result<PathBuf, OnionError> {
    crate::config::validate_name(name).map_err(|_| OnionError::BadName {
        name: name.to_string(),
    })?;
    enable_with(host_root, name, None)
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
    let link = wants_link(host_root, name);
    let target = Path::new(UNIT_DIR).join(unit_name(name));
    let write_error = |source| OnionError::WriteUnit {
        path: link.clone(),
        source,
    };
    if fs_err::read_link(&link).ok().as_deref() == Some(target.as_path()) {
        return Ok(link);
    }
    if let Some(changes) = changes.as_deref_mut() {
        changes
            .before_write(host_root, &link)
            .map_err(write_error)?;
    }
    if let Some(dir) = link.parent() {
        files::create_dir_all_mode(dir, 0o755).map_err(write_error)?;
    }
    fs_err::os::unix::fs::symlink(&target, &link).map_err(write_error)?;
    // The daily log rotation comes with the service.
    let timer_link = host_root
        .join(UNIT_DIR.trim_start_matches('/'))
        .join("timers.target.wants")
        .join(timer_name(name));
    let timer_target = Path::new(UNIT_DIR).join(timer_name(name));
    if fs_err::read_link(&timer_link).ok().as_deref() != Some(timer_target.as_path()) {
        let write_error = |source| OnionError::WriteUnit {
            path: timer_link.clone(),
            source,
        };
        if let Some(changes) = changes {
            changes
                .before_write(host_root, &timer_link)
                .map_err(write_error)?;
        }
        if let Some(dir) = timer_link.parent() {
            files::create_dir_all_mode(dir, 0o755).map_err(write_error)?;
        }
        fs_err::os::unix::fs::symlink(&timer_target, &timer_link).map_err(write_error)?;
    }
    Ok(link)
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
    let links = [
        wants_link(host_root, name),
        dir.join("timers.target.wants").join(timer_name(name)),
    ];
    for link in links {
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
