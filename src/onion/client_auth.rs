//! Client authorization: takes the service's key directory, its address and client names; gives
//! an x25519 key pair per client, the public half in tor's `authorized_clients/CLIENT.auth`
//! (`descriptor:x25519:KEY`), the private half as the line the client puts in its
//! ClientOnionAuthDir (`ADDRESS:descriptor:x25519:KEY`), in a root-only file under HOST_ROOT.
//!
//! A client whose `.auth` file exists keeps its key: rebuilding never locks a client out.

use std::path::{Path, PathBuf};

use super::files::{self, Perms};
use super::host::HostChanges;
use super::OnionError;

/// The directory, under HOST_ROOT, holding the clients' private lines until they are handed over.
pub const CLIENT_KEYS: &str = "/var/lib/debstrap-onion/clients";

/// Whether `name` can name a client file: 1 to 64 letters, digits, '-' or '_'.
pub fn is_client_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// An x25519 key pair for one client.
#[derive(Clone)]
pub struct ClientKey {
    secret: [u8; 32],
    public: [u8; 32],
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKey({})", self.public_base32())
    }
}

impl ClientKey {
    /// A key pair from 32 random bytes (clamped as X25519 wants, so tor reads the same scalar).
    pub fn from_secret(mut secret: [u8; 32]) -> ClientKey {
        secret[0] &= 248;
        secret[31] &= 127;
        secret[31] |= 64;
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret));
        ClientKey {
            secret,
            public: public.to_bytes(),
        }
    }

    fn generate() -> Result<ClientKey, OnionError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| OnionError::Random(super::hsdir::random_error(e)))?;
        Ok(ClientKey::from_secret(secret))
    }

    fn public_base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.public)
    }

    /// The service side: the contents of `authorized_clients/CLIENT.auth`.
    pub fn auth_line(&self) -> String {
        format!("descriptor:x25519:{}\n", self.public_base32())
    }

    /// The client side: the line of a `.auth_private` file for `address` (with or without
    /// `.onion`).
    pub fn auth_private_line(&self, address: &str) -> String {
        format!(
            "{}:descriptor:x25519:{}\n",
            address.trim_end_matches(".onion"),
            data_encoding::BASE32_NOPAD.encode(&self.secret)
        )
    }
}

/// What happened to one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub name: String,
    /// The client's `.auth_private` file (0600), when a new key was made; `None`: the client's
    /// `.auth` file existed and was kept.
    pub private_file: Option<PathBuf>,
}

/// Writes `authorized_clients/CLIENT.auth` (0600, directory 0700, tor's owner) in the key
/// directory `key_dir` for each client without one, and the client's private line in
/// HOST_ROOT/var/lib/debstrap-onion/clients/SERVICE/CLIENT.auth_private (0600, root's), each
/// change recorded in `changes` first.
pub(crate) fn write(
    host_root: &Path,
    (service, key_dir, address): (&str, &Path, &str),
    clients: &[String],
    owner: Option<(u32, u32)>,
    changes: &mut HostChanges,
) -> Result<Vec<Client>, OnionError> {
    if clients.is_empty() {
        return Ok(Vec::new());
    }
    let auth_dir = key_dir.join("authorized_clients");
    let key_error = |source| OnionError::WriteKey {
        dir: auth_dir.clone(),
        source,
    };
    changes
        .before_write(host_root, &auth_dir)
        .map_err(key_error)?;
    files::create_dir_all_mode(&auth_dir, 0o700).map_err(key_error)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(&auth_dir, Some(uid), Some(gid)).map_err(key_error)?;
    }
    let private_dir = host_root
        .join(CLIENT_KEYS.trim_start_matches('/'))
        .join(service);
    let mut done = Vec::new();
    for name in clients {
        let auth = auth_dir.join(format!("{name}.auth"));
        if fs_err::symlink_metadata(&auth).is_ok() {
            done.push(Client {
                name: name.clone(),
                private_file: None,
            });
            continue;
        }
        let key = ClientKey::generate()?;
        let private = private_dir.join(format!("{name}.auth_private"));
        let private_error = |source| OnionError::WriteKey {
            dir: private_dir.clone(),
            source,
        };
        changes
            .before_write(host_root, &private)
            .map_err(private_error)?;
        files::create_dir_all_mode(&private_dir, 0o700).map_err(private_error)?;
        files::write_atomic(
            &private,
            key.auth_private_line(address).as_bytes(),
            Perms::mode(0o600),
        )
        .map_err(private_error)?;
        changes.before_write(host_root, &auth).map_err(key_error)?;
        files::write_atomic(
            &auth,
            key.auth_line().as_bytes(),
            Perms { mode: 0o600, owner },
        )
        .map_err(key_error)?;
        done.push(Client {
            name: name.clone(),
            private_file: Some(private),
        });
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_tors_shape() {
        let key = ClientKey::from_secret([7; 32]);
        let auth = key.auth_line();
        let public = auth
            .strip_prefix("descriptor:x25519:")
            .expect("prefix")
            .trim_end();
        assert_eq!(public.len(), 52);
        let private = key.auth_private_line("abc.onion");
        let fields: Vec<&str> = private.trim_end().split(':').collect();
        assert_eq!(fields[..3], ["abc", "descriptor", "x25519"]);
        assert_eq!(fields[3].len(), 52);
        // The public half is the base point times the clamped secret.
        let secret: [u8; 32] = data_encoding::BASE32_NOPAD
            .decode(fields[3].as_bytes())
            .expect("base32")
            .try_into()
            .expect("32 bytes");
        let derived = x25519_dalek::x25519(secret, x25519_dalek::X25519_BASEPOINT_BYTES);
        assert_eq!(data_encoding::BASE32_NOPAD.encode(&derived), public);
    }

    #[test]
    fn client_names_are_file_names() {
        assert!(is_client_name("alice-laptop_2"));
        for bad in ["", "a/b", "..", "a b", "a.auth", &"x".repeat(65)] {
            assert!(!is_client_name(bad), "{bad}");
        }
    }
}
