//! nginx inside the chroot: takes NAME, the onion address, the local port and an optional site
//! directory; gives /etc/nginx/sites-available/NAME (enabled, the package's default site
//! disabled) listening on 127.0.0.1 only, and the web root /var/www/NAME.

use std::os::fd::AsFd as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, OFlags};

use super::site_copy;
use super::OnionError;
use crate::root::{self, NewFile, Root};

/// The web root of NAME inside the chroot.
pub fn web_root(name: &str) -> PathBuf {
    Path::new("/var/www").join(name)
}

/// The site file of NAME inside the chroot.
pub fn site_path(name: &str) -> PathBuf {
    Path::new("/etc/nginx/sites-available").join(name)
}

/// The unix socket nginx listens on by default, inside the chroot; its directory is
/// [`SOCKET_DIR`].
pub const SOCKET: &str = "/run/onion/nginx.sock";
/// The socket's directory inside the chroot: root and the host's tor group may pass (0710),
/// nobody else, since nginx creates the socket itself 0666.
pub const SOCKET_DIR: &str = "/run/onion";

/// Where nginx listens: the unix socket (the default) or, on explicit request, a TCP port on
/// 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Socket,
    Tcp(u16),
}

impl Listen {
    /// The `listen` parameter of the site.
    fn nginx(self) -> String {
        match self {
            Listen::Socket => format!("unix:{SOCKET}"),
            Listen::Tcp(port) => format!("127.0.0.1:{port}"),
        }
    }

    /// The target of tor's `HiddenServicePort`, with the socket as the host sees it under the
    /// chroot at `chroot_path`.
    pub fn tor_target(self, chroot_path: &Path) -> String {
        match self {
            Listen::Socket => format!("unix:{}", socket_on_host(chroot_path).display()),
            Listen::Tcp(port) => format!("127.0.0.1:{port}"),
        }
    }
}

/// The socket as seen from the host, for the chroot at `chroot`.
pub fn socket_on_host(chroot: &Path) -> PathBuf {
    chroot.join(SOCKET.trim_start_matches('/'))
}

/// The headers every answer carries, following the onion-site checklist: no referrer leaves
/// the site (a link out would name the onion address), no sniffing, no framing by other sites,
/// no cross-origin window or resource sharing, and no powerful browser features.
pub const HEADERS: [(&str, &str); 6] = [
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "SAMEORIGIN"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    (
        "Permissions-Policy",
        "camera=(), geolocation=(), microphone=()",
    ),
];

/// The access log of NAME inside the chroot.
pub fn access_log(name: &str) -> PathBuf {
    PathBuf::from(format!("/var/log/nginx/{name}.access.log"))
}

/// The nginx server block of NAME (and its log format, at the http level).
pub fn site(name: &str, address: &str, listen: Listen) -> String {
    let headers: String = HEADERS
        .iter()
        .map(|(header, value)| format!("\tadd_header {header} \"{value}\" always;\n"))
        .collect();
    format!(
        "# Onion service {name}, written by debstrap-onion: reachable only through the host's tor.\n\
         \n\
         # What a visit leaves in the log: when, what was asked (without its query string), the\n\
         # answer. No address (tor's connections all come from the socket anyway), no user agent,\n\
         # no referrer.\n\
         log_format onion_{name} '[$time_local] \"$request_method $uri\" $status $body_bytes_sent';\n\
         \n\
         server {{\n\
         \tlisten {listen};\n\
         \tserver_name {address};\n\
         \n\
         \t# Do not tell visitors which nginx version serves them, list directories or send\n\
         \t# redirects naming a host: a relative Location stays on the onion address.\n\
         \tserver_tokens off;\n\
         \tautoindex off;\n\
         \tabsolute_redirect off;\n\
         \n\
         {headers}\
         \n\
         \taccess_log {log} onion_{name};\n\
         \terror_log /var/log/nginx/{name}.error.log;\n\
         \n\
         \troot {root};\n\
         \tindex index.html index.htm;\n\
         \n\
         \tlocation / {{\n\
         \t\ttry_files $uri $uri/ =404;\n\
         \t}}\n\
         }}\n",
        listen = listen.nginx(),
        log = access_log(name).display(),
        root = web_root(name).display(),
    )
}

/// Where a site file listens (`listen unix:PATH;` or `listen 127.0.0.1:PORT;`), with the
/// socket's path inside the chroot.
pub fn parse_listen(site: &str) -> Option<Listen> {
    site.lines().find_map(|line| {
        let value = line
            .trim()
            .strip_prefix("listen ")?
            .trim_end_matches(';')
            .trim();
        if value == format!("unix:{SOCKET}") {
            return Some(Listen::Socket);
        }
        value
            .strip_prefix("127.0.0.1:")?
            .parse()
            .ok()
            .map(Listen::Tcp)
    })
}

/// The index.html written when no site directory is given.
pub fn default_index(name: &str, suite: &str, address: &str) -> String {
    format!(
        "<!DOCTYPE html>\n\
         <html lang=\"en\">\n\
         <head>\n\
         <meta charset=\"utf-8\">\n\
         <title>{name}</title>\n\
         </head>\n\
         <body>\n\
         <h1>{name}</h1>\n\
         <p>This is the onion service <code>{address}</code>, served by nginx from a Debian \
         {suite} chroot.</p>\n\
         </body>\n\
         </html>\n",
        name = html_escape(name),
        suite = html_escape(suite),
        address = html_escape(address),
    )
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The error for the chroot at `path` itself.
pub(crate) fn in_chroot_at(path: &Path) -> impl Fn(std::io::Error) -> OnionError {
    let path = path.to_path_buf();
    move |source| OnionError::WriteChroot {
        path: path.clone(),
        source,
    }
}

/// The error for `rel` inside the chroot `root`.
pub(crate) fn in_chroot(
    root: &Root,
    rel: impl AsRef<[u8]>,
) -> impl Fn(std::io::Error) -> OnionError {
    let path = root.host_path(rel);
    move |source| OnionError::WriteChroot {
        path: path.clone(),
        source,
    }
}

/// Writes the site, enables it and disables the package's default site.
pub(crate) fn write_site(
    root: &Root,
    name: &str,
    address: &str,
    listen: Listen,
) -> Result<PathBuf, OnionError> {
    const AVAILABLE: &str = "etc/nginx/sites-available";
    const ENABLED: &str = "etc/nginx/sites-enabled";
    for dir in [AVAILABLE, ENABLED] {
        root.create_dir_all(dir.as_bytes(), 0o755)
            .map_err(in_chroot(root, dir))?;
    }
    let available = format!("{AVAILABLE}/{name}");
    root.write_file(
        available.as_bytes(),
        site(name, address, listen).as_bytes(),
        0o644,
    )
    .map_err(in_chroot(root, &available))?;
    // Enabled as Debian's package enables its default site: an absolute symlink (a file left
    // there by hand is replaced; a directory is not).
    let link = format!("{ENABLED}/{name}");
    let target = site_path(name);
    if root
        .file_type(link.as_bytes())
        .map_err(in_chroot(root, &link))?
        == Some(FileType::RegularFile)
    {
        root.remove_file(link.as_bytes())
            .map_err(in_chroot(root, &link))?;
    }
    root.symlink(target.as_os_str().as_bytes(), link.as_bytes())
        .map_err(in_chroot(root, &link))?;
    // The default site listens on 0.0.0.0:80; nothing but the onion service may listen.
    if name != "default" {
        let default = format!("{ENABLED}/default");
        root.remove_file(default.as_bytes())
            .map_err(in_chroot(root, &default))?;
    }
    Ok(root.host_path(available))
}

/// Creates the socket's directory [`SOCKET_DIR`] in the chroot, 0710 and owned by root and
/// the host's tor group (`tor_gid`; root's when there is none): nginx's master (root) makes
/// the socket in it, tor (in that group) may reach it, no user in the chroot or on the host can.
pub(crate) fn write_socket_dir(root: &Root, tor_gid: Option<u32>) -> Result<PathBuf, OnionError> {
    let rel = SOCKET_DIR.trim_start_matches('/');
    let write_error = in_chroot(root, rel);
    // Owner and mode go on the directory's descriptor: a symlink there leads inside the root.
    let dir = root
        .create_dir_all(rel.as_bytes(), 0o710)
        .map_err(&write_error)?;
    if rustix::process::geteuid().is_root() {
        root::chown_fd(&dir, 0, tor_gid.unwrap_or(0)).map_err(&write_error)?;
    }
    root::chmod_fd(&dir, 0o710).map_err(&write_error)?;
    Ok(root.host_path(rel))
}

/// Fills /var/www/NAME from `site` (regular files and directories only) or with a generated
/// index.html, in a new directory that replaces the previous web root in one rename.
pub(crate) fn write_web_root(
    root: &Root,
    name: &str,
    site: Option<&Path>,
    index: &str,
) -> Result<PathBuf, OnionError> {
    const PARENT: &str = "var/www";
    let dest = format!("{PARENT}/{name}");
    let parent = root
        .create_dir_all(PARENT.as_bytes(), 0o755)
        .map_err(in_chroot(root, PARENT))?;
    let staging = root.temp_name();
    let staging_rel = [PARENT.as_bytes(), b"/", &staging].concat();
    let staging_error = in_chroot(root, &staging_rel);
    rustix::fs::mkdirat(
        &parent,
        staging.as_slice(),
        rustix::fs::Mode::from_raw_mode(0o700),
    )
    .map_err(|e| staging_error(e.into()))?;
    let filled = (|| {
        let dir = rustix::fs::openat(
            &parent,
            staging.as_slice(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| staging_error(e.into()))?;
        match site {
            Some(site) => {
                let site_fd = site_copy::open_site(site)?;
                let source = site_copy::Site {
                    path: site,
                    root: site_fd.as_fd(),
                };
                let dest = site_copy::Dest {
                    root,
                    dir: dir.as_fd(),
                    rel: staging_rel.clone(),
                };
                site_copy::copy_dir(&source, site_fd.as_fd(), Path::new(""), &dest)?;
            }
            None => root
                .write_in(
                    dir.as_fd(),
                    b"index.html",
                    index.as_bytes(),
                    NewFile::mode(0o644),
                )
                .map_err(&staging_error)?,
        }
        root::chmod_fd(&dir, 0o755).map_err(&staging_error)?;
        // Exchanged with the old web root when there is one, so the site is never missing.
        let replaced = rustix::fs::renameat_with(
            &parent,
            staging.as_slice(),
            &parent,
            name,
            rustix::fs::RenameFlags::EXCHANGE,
        );
        match replaced {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::NOENT) => {
                rustix::fs::renameat(&parent, staging.as_slice(), &parent, name)
                    .map_err(|e| in_chroot(root, &dest)(e.into()))
            }
            Err(e) => Err(in_chroot(root, &dest)(e.into())),
        }
    })();
    // After an exchange the staging name holds the old web root; after a failure, the new one.
    match root::remove_tree(parent.as_fd(), &staging) {
        Err(e)
            if filled.is_ok()
                && e.raw_os_error() != Some(rustix::io::Errno::NOENT.raw_os_error()) =>
        {
            return Err(staging_error(e))
        }
        _ => {}
    }
    filled?;
    Ok(root.host_path(dest))
}

/// Why a site directory cannot be published.
#[derive(Debug, thiserror::Error)]
pub enum SiteProblem {
    #[error("cannot read it")]
    Unreadable(#[source] std::io::Error),
    #[error("it is not a directory")]
    NotADirectory,
    #[error("{link} is a symlink leading outside the site (to {target})")]
    EscapingSymlink { link: PathBuf, target: PathBuf },
    #[error("{link} is a symlink to a directory; copy the directory itself into the site")]
    DirectorySymlink { link: PathBuf },
    #[error("{path} is neither a regular file nor a directory")]
    SpecialFile { path: PathBuf },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_is_read_back_from_the_site() {
        let text = site("onion", "x.onion", Listen::Tcp(2345));
        assert_eq!(parse_listen(&text), Some(Listen::Tcp(2345)));
        let text = site("onion", "x.onion", Listen::Socket);
        assert_eq!(parse_listen(&text), Some(Listen::Socket));
        assert_eq!(parse_listen("listen 80;"), None);
    }

    #[test]
    fn site_listens_on_the_socket_or_loopback_only() {
        for (listen, expected) in [
            (Listen::Socket, "listen unix:/run/onion/nginx.sock;"),
            (Listen::Tcp(2001), "listen 127.0.0.1:2001;"),
        ] {
            let text = site("onion", "x.onion", listen);
            let listens: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("listen"))
                .collect();
            assert_eq!(listens, [expected]);
        }
    }
}
