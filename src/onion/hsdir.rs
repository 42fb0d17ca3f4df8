//! The onion service directory on the host: takes HOST_ROOT, NAME and optionally a key directory
//! to import; gives HOST_ROOT/var/lib/tor/NAME/ holding tor's three key files, the directory 0700
//! and the files 0600, owned by the host's tor user when it exists.

use std::path::{Path, PathBuf};

use super::files::{self, Perms};
use super::key::{self, OnionKey, HOSTNAME_FILE, PUBLIC_KEY_FILE, SECRET_KEY_FILE};
use super::OnionError;

/// The user Debian's tor runs as; tor refuses a HiddenServiceDir it does not own.
pub const TOR_USER: &str = "debian-tor";
/// Where tor's onion service directories live, as seen from `/` (Debian's AppArmor profile for
/// tor allows only /var/lib/tor/**).
pub const TOR_LIB: &str = "/var/lib/tor";

/// Where the key of an onion service came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// A new random key.
    Generated,
    /// The key already in HOST_ROOT/var/lib/tor/NAME, kept so the address does not change.
    Kept,
    /// Copied from the `onion_key` directory.
    Imported,
}

/// The installed key directory.
#[derive(Debug)]
pub(crate) struct ServiceDir {
    pub origin: KeyOrigin,
    /// HOST_ROOT/var/lib/tor/NAME.
    pub path: PathBuf,
}

/// The service directory of NAME as seen from `/`, as written in torrc.
pub fn service_dir(name: &str) -> PathBuf {
    Path::new(TOR_LIB).join(name)
}

/// The uid and gid the key files get: the host's debian-tor when it exists and we are root.
///
/// This is about the real host (the tor that will read the files), so it looks the user up
/// through the host's NSS, not in HOST_ROOT/etc/passwd. A rootless build (root of its own user
/// namespace) cannot give files to a host user: they stay the caller's, for an admin to copy.
pub(crate) fn tor_owner() -> Result<Option<(u32, u32)>, OnionError> {
    if !rustix::process::geteuid().is_root() || crate::userns::inside() {
        return Ok(None);
    }
    let user = crate::sys::user_by_name(TOR_USER).map_err(|source| OnionError::UserLookup {
        user: TOR_USER.to_string(),
        source,
    })?;
    Ok(user.map(|u| (u.uid, u.gid)))
}

/// Reads and checks a tor key directory: the secret key parses, and the public key, if present,
/// is the one the secret key gives.
///
/// The directory is opened once and each file is opened in it without following a symlink and
/// read through that same descriptor: a key file swapped for a symlink to a root-only file is
/// refused, never read.
pub fn read_key_dir(dir: &Path) -> Result<OnionKey, OnionError> {
    let dir_fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| OnionError::ReadKey {
        path: dir.to_path_buf(),
        source: e.into(),
    })?;
    let secret_path = dir.join(SECRET_KEY_FILE);
    let secret =
        read_small_file(&dir_fd, &secret_path, key::SECRET_FILE_LEN)?.ok_or_else(|| {
            OnionError::ReadKey {
                path: secret_path.clone(),
                source: std::io::ErrorKind::NotFound.into(),
            }
        })?;
    let key = OnionKey::from_secret_file(&secret).map_err(|problem| OnionError::BadKeyFile {
        path: secret_path,
        problem,
    })?;
    let public_path = dir.join(PUBLIC_KEY_FILE);
    if let Some(public) = read_small_file(&dir_fd, &public_path, key::PUBLIC_FILE_LEN)? {
        let public = key::parse_public_file(&public).map_err(|problem| OnionError::BadKeyFile {
            path: public_path.clone(),
            problem,
        })?;
        if &public != key.public_key() {
            return Err(OnionError::PublicKeyMismatch { path: public_path });
        }
    }
    Ok(key)
}

/// Reads the regular file `path` (named in `dir`) of at most a few times `expected` bytes, by
/// descriptor and without following a symlink; `None` when it does not exist.
fn read_small_file(
    dir: &std::os::fd::OwnedFd,
    path: &Path,
    expected: usize,
) -> Result<Option<Vec<u8>>, OnionError> {
    use rustix::fs::FileType;
    use std::os::fd::AsFd as _;
    let not_regular = || OnionError::NotRegularFile {
        path: path.to_path_buf(),
    };
    let name = path.file_name().unwrap_or_default();
    let limit = 4 * expected as u64;
    let found = crate::root::read_in(dir.as_fd(), name.as_encoded_bytes(), limit + 1);
    let (bytes, stat) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(None),
        // O_NOFOLLOW on a symlink.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(not_regular())
        }
        Err(source) => {
            return Err(OnionError::ReadKey {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(not_regular());
    }
    if bytes.len() as u64 > limit {
        return Err(OnionError::BadKeyFile {
            path: path.to_path_buf(),
            problem: key::KeyFormatError::Length {
                len: usize::try_from(stat.st_size).unwrap_or(usize::MAX),
                expected,
            },
        });
    }
    Ok(Some(bytes))
}

/// The files of a service directory, the secret key first.
pub(crate) const KEY_FILES: [&str; 3] = [SECRET_KEY_FILE, PUBLIC_KEY_FILE, HOSTNAME_FILE];

/// The key NAME's service directory will hold, decided without changing anything.
#[derive(Debug)]
pub(crate) struct KeyPlan {
    pub key: OnionKey,
    pub origin: KeyOrigin,
    /// HOST_ROOT/var/lib/tor.
    lib: PathBuf,
    /// HOST_ROOT/var/lib/tor/NAME.
    pub dir: PathBuf,
    name: String,
}

/// Decides the key of NAME under `host_root`: keeps an existing key, imports `import`, or
/// generates one; never replaces an existing key by a different one. Reads only.
pub(crate) fn plan(
    host_root: &Path,
    name: &str,
    import: Option<&Path>,
) -> Result<KeyPlan, OnionError> {
    let lib = host_root.join(TOR_LIB.trim_start_matches('/'));
    let dir = lib.join(name);
    let existing = match fs_err::symlink_metadata(&dir) {
        Ok(meta) if meta.is_dir() => {
            if fs_err::symlink_metadata(dir.join(SECRET_KEY_FILE)).is_ok() {
                Some(read_key_dir(&dir)?)
            } else {
                None
            }
        }
        Ok(_) => return Err(OnionError::NotADirectory { path: dir }),
        Err(_) => None,
    };
    let imported = import.map(read_key_dir).transpose()?;
    let (key, origin) = match (existing, imported) {
        (Some(existing), None) => (existing, KeyOrigin::Kept),
        (Some(existing), Some(imported)) if existing == imported => (existing, KeyOrigin::Imported),
        (Some(existing), Some(imported)) => {
            return Err(OnionError::KeyConflict {
                dir,
                existing: existing.address(),
                imported: imported.address(),
            })
        }
        (None, Some(imported)) => (imported, KeyOrigin::Imported),
        (None, None) => (
            OnionKey::generate().map_err(|e| OnionError::Random(random_error(e)))?,
            KeyOrigin::Generated,
        ),
    };
    Ok(KeyPlan {
        key,
        origin,
        lib,
        dir,
        name: name.to_owned(),
    })
}

/// Writes the planned key directory (see [`plan`]).
pub(crate) fn install(plan: KeyPlan, owner: Option<(u32, u32)>) -> Result<ServiceDir, OnionError> {
    let KeyPlan {
        key,
        origin,
        lib,
        dir,
        name,
    } = plan;
    let write_error = |source| OnionError::WriteKey {
        dir: dir.clone(),
        source,
    };
    let file_perms = Perms { mode: 0o600, owner };
    let files = [
        (SECRET_KEY_FILE, key.secret_file()),
        (PUBLIC_KEY_FILE, key.public_file()),
        (HOSTNAME_FILE, key.hostname_file().into_bytes()),
    ];
    if fs_err::symlink_metadata(&dir).is_ok() {
        // Never replace a key other than the planned one (the address already printed or
        // imported): a key that appeared since the plan is refused.
        if fs_err::symlink_metadata(dir.join(SECRET_KEY_FILE)).is_ok() {
            let found = read_key_dir(&dir)?;
            if found != key {
                return Err(OnionError::KeyChanged {
                    dir,
                    found: found.address(),
                    planned: key.address(),
                });
            }
        }
        // The directory exists (with this key, or empty): each file is replaced in one rename,
        // the secret first, so a failure leaves the old files or the new ones, never half a key.
        for (file, bytes) in &files {
            files::write_atomic(&dir.join(file), bytes, file_perms).map_err(write_error)?;
        }
    } else {
        if fs_err::symlink_metadata(&lib).is_err() {
            files::create_dir_all_mode(&lib, 0o700).map_err(write_error)?;
            chown(&lib, owner).map_err(write_error)?;
        }
        // A new directory is filled under a temporary name and renamed into place whole.
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.debstrap-onion."))
            .tempdir_in(&lib)
            .map_err(write_error)?;
        for (file, bytes) in &files {
            files::write_atomic(&tmp.path().join(file), bytes, file_perms).map_err(write_error)?;
        }
        set_dir_perms(tmp.path(), owner).map_err(write_error)?;
        fs_err::rename(tmp.path(), &dir).map_err(write_error)?;
        // The directory now lives at `dir`; dropping `tmp` finds nothing left to delete.
        drop(tmp);
    }
    set_dir_perms(&dir, owner).map_err(write_error)?;
    Ok(ServiceDir { origin, path: dir })
}

/// getrandom's error as an io::Error (its std feature, which would convert it, is off).
pub(crate) fn random_error(error: getrandom::Error) -> std::io::Error {
    match error.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::other(error.to_string()),
    }
}

fn set_dir_perms(dir: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    files::set_perms(dir, Perms { mode: 0o700, owner })
}

fn chown(path: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    match owner {
        Some((uid, gid)) => std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("failed to chown `{}`: {e}", path.display()),
            )
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_refuses_a_key_directory_holding_a_key_other_than_the_planned_one() {
        let host = tempfile::tempdir().expect("tempdir");
        // Two builds of one NAME both plan a new key; the second one installs first.
        let first = plan(host.path(), "onion", None).expect("plan");
        let second = plan(host.path(), "onion", None).expect("plan");
        assert_eq!(first.origin, KeyOrigin::Generated);
        let (first_key, second_key) = (first.key.clone(), second.key.clone());
        assert_ne!(first_key, second_key);
        let dir = first.dir.clone();
        install(second, None).expect("install");
        let err = install(first, None).expect_err("the directory holds another key");
        assert!(matches!(err, OnionError::KeyChanged { .. }), "{err}");
        assert_eq!(read_key_dir(&dir).expect("read"), second_key);
    }
}
