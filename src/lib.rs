//! debstrap-onion builds a Debian root filesystem with no host debootstrap, dpkg, apt or perl,
//! and by default publishes it as a sandboxed Tor onion web service.
//!
//! The pipeline, chained only by [`build`]; every stage takes a typed input and gives a typed output:
//!
//! 1. [`fetch::index`]: InRelease (signature checked) → [`fetch::VerifiedRelease`] →
//!    Packages (hash checked) → [`fetch::RepoIndex`].
//! 2. [`resolve::resolve`]: RepoIndex + [`resolve::Selection`] → [`resolve::Resolution`].
//! 3. [`fetch::download`]: Resolution → verified .debs in a content-addressed cache.
//! 4. [`unpack::unpack`]: .debs → files confined under the target root, plus dpkg's database.
//! 5. [`stage::stage`]: chroot(2), mounts, policy-rc.d, maintainer scripts, dpkg's configuration
//!    in debootstrap's phases.
//! 6. [`onion::configure`]: nginx site in the chroot; onion key, torrc and schroot on the host.
//! 7. [`sbom::sbom`]: the root's dpkg status + the Release + the verified .debs → an SPDX
//!    document, when `--sbom` asks for it or an OCI image carries it.
//! 8. [`output`]: the directory as it is, a reproducible tarball, or a squashfs, ext4 or OCI
//!    image.
//!
//! [`hooks::run`] runs the user's hooks (mmdebstrap's) on the root at four points: setup (before
//! unpacking), extract (before configuration), essential (inside configuration, once the
//! essential packages are configured) and customize (after configuration, before the onion
//! stage).

pub mod cancel;
pub mod config;
pub mod deb822;
pub mod fetch;
pub mod hooks;
pub mod onion;
pub mod output;
pub mod preflight;
pub mod progress;
pub mod resolve;
pub(crate) mod root;
pub mod sbom;
pub mod service;
pub mod stage;
pub mod sys;
pub mod unpack;
pub mod userns;

mod pipeline;
mod target;

/// The integration tests' skip rule, shared so that unit tests needing root follow it too.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../tests/support/skip.rs"]
pub(crate) mod test_skip;

pub use config::BuildConfig;
pub use pipeline::{build, check_place, BuildReport, Error};
pub use progress::{Reporter, Silent};
pub use target::{HeldRoot, TargetError};
