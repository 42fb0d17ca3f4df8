//! The target root as a directory descriptor: paths in, descriptors and new files out, every
//! path resolved by the kernel inside the root as if it were `/` (openat2 RESOLVE_IN_ROOT).
//!
//! Only directories are ever opened through a path; the last component of anything created is
//! made relative to its parent's descriptor with calls that never follow a final symlink, so a
//! symlink planted by a package (absolute or relative) cannot carry a write outside the root.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{Mode, OFlags, RenameFlags, ResolveFlags};
use rustix::io::Errno;

use super::path::RelPath;
use crate::HeldRoot;

/// How every path below the root is resolved: `/` and `..` stop at the root, and /proc magic
/// links (which point anywhere) are refused.
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// openat2 fails with EAGAIN when a rename elsewhere races a `..` lookup; it is safe to retry.
const EAGAIN_RETRIES: usize = 64;

/// An open target root.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    /// Makes temporary names unguessable, so no archive entry can race one of ours.
    temp_token: u64,
    temp_counter: AtomicU64,
}

impl Root {
    /// Creates the root directory if needed; says whether it had to be created.
    pub fn create(path: &Path) -> io::Result<bool> {
        match fs_err::create_dir(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs_err::create_dir_all(path)?;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// The held root, through a duplicate of its descriptor: the path is never looked up again.
    pub fn held(root: &HeldRoot) -> io::Result<Root> {
        let fd = root.fd().try_clone_to_owned()?;
        let temp_token = getrandom::u64().map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Root {
            fd,
            path: root.path().to_owned(),
            temp_token,
            temp_counter: AtomicU64::new(0),
        })
    }

    /// The root's host path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root's descriptor.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Opens `path` (following symlinks inside the root) with `flags`.
    pub fn open(&self, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
        openat2(&self.fd, path, flags | OFlags::CLOEXEC, Mode::empty())
    }

    /// Opens `path` with `flags | O_CREAT`, a new file getting `mode` (less the umask).
    pub fn open_create(&self, path: &[u8], flags: OFlags, mode: u32) -> io::Result<OwnedFd> {
        openat2(
            &self.fd,
            path,
            flags | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
    }

    /// What `path` resolves to inside the root (every symlink followed, as the chroot's
    /// realpath would), as its parent directory and its name there; `None` for the root itself.
    /// The name is checked to still give the same file, so the pair names exactly it.
    pub fn resolve_parent(&self, path: &[u8]) -> io::Result<(OwnedFd, Option<Vec<u8>>)> {
        use std::os::unix::ffi::OsStrExt;
        let target = self.open(path, OFlags::PATH)?;
        let same = |a: &rustix::fs::Stat, b: &rustix::fs::Stat| {
            (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
        };
        let found = rustix::fs::fstat(&target)?;
        if same(&found, &rustix::fs::fstat(&self.fd)?) {
            return Ok((self.open_dir(b".")?, None));
        }
        // The kernel's name for both, in this thread's mount namespace: the resolved path
        // below the root is the difference, and has no symlink left in it.
        let name_of = |fd: &OwnedFd| {
            let link = format!(
                "/proc/thread-self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(fd)
            );
            fs_err::read_link(link)
        };
        let (full, base) = (name_of(&target)?, name_of(&self.fd)?);
        let rel = full
            .strip_prefix(&base)
            .map_err(|_| io::Error::other("the resolved path is not below the root"))?;
        let name = rel
            .file_name()
            .ok_or_else(|| io::Error::other("the resolved path has no name"))?;
        let parent = match rel.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.as_os_str().as_bytes(),
            _ => b".",
        };
        let dir = self.open_dir(parent)?;
        let there = rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
        if !same(&found, &there) {
            return Err(io::Error::other("it changed while it was resolved"));
        }
        Ok((dir, Some(name.as_bytes().to_vec())))
    }

    /// Opens a directory (O_PATH) inside the root, following symlinks as the chroot would.
    pub fn open_dir(&self, path: &[u8]) -> io::Result<OwnedFd> {
        self.open(path, OFlags::PATH | OFlags::DIRECTORY)
    }

    /// Opens `path` without following its last component if that is a symlink.
    pub fn open_nofollow(&self, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
        self.open(path, flags | OFlags::NOFOLLOW)
    }

    /// Opens a directory, creating missing components (mode 0755) the way `mkdir -p` would,
    /// each one relative to its already resolved parent.
    pub fn open_dir_all(&self, path: &[u8]) -> io::Result<OwnedFd> {
        match self.open_dir(path) {
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {}
            other => return other,
        }
        let mut parent = self.open_dir(b".")?;
        let mut prefix = Vec::with_capacity(path.len());
        for component in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(component);
            parent = match self.open_dir(&prefix) {
                Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                    match rustix::fs::mkdirat(&parent, component, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    self.open_dir(&prefix)?
                }
                other => other?,
            };
        }
        Ok(parent)
    }

    /// A fresh name, unique in this run and unguessable, for building an object before it is
    /// renamed into place.
    pub fn temp_name(&self) -> Vec<u8> {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        format!(".debstrap-{:016x}-{n}", self.temp_token).into_bytes()
    }

    /// Writes a whole file at `path` (temp name, then rename), creating parent directories.
    pub fn write_file(&self, path: &RelPath, contents: &[u8], mode: u32) -> io::Result<()> {
        self.write_file_dated(path, contents, mode, None)
    }

    /// [`Root::write_file`], with the file's mtime (and atime) set to `mtime` when given.
    pub fn write_file_dated(
        &self,
        path: &RelPath,
        contents: &[u8],
        mode: u32,
        mtime: Option<i64>,
    ) -> io::Result<()> {
        use std::io::Write;
        let dir = self.open_dir_all(path.parent())?;
        let temp = self.temp_name();
        let fd = rustix::fs::openat(
            &dir,
            temp.as_slice(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut file = std::fs::File::from(fd);
        let written = file
            .write_all(contents)
            .and_then(|()| rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(Into::into))
            .and_then(|()| match mtime {
                Some(secs) => {
                    let t = rustix::fs::Timespec {
                        tv_sec: secs,
                        tv_nsec: 0,
                    };
                    let times = rustix::fs::Timestamps {
                        last_access: t,
                        last_modification: t,
                    };
                    rustix::fs::futimens(&file, &times).map_err(Into::into)
                }
                None => Ok(()),
            })
            .and_then(|()| {
                rustix::fs::renameat(&dir, temp.as_slice(), &dir, path.file_name())
                    .map_err(Into::into)
            });
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&dir, temp.as_slice(), rustix::fs::AtFlags::empty());
        }
        written
    }

    /// Creates an empty file at `path` unless something is already there.
    pub fn create_if_absent(&self, path: &RelPath, mode: u32) -> io::Result<()> {
        let dir = self.open_dir_all(path.parent())?;
        match rustix::fs::openat(
            &dir,
            path.file_name(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        ) {
            Ok(fd) => rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(Into::into),
            Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Makes `name` in `dir` a hard link to the file open as `file`, by descriptor: no path to the
/// file is looked up again. linkat's AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH in the host's user
/// namespace on most kernels (it answers ENOENT without it), so a rootless build links through
/// the file's /proc/self/fd entry instead, which AT_SYMLINK_FOLLOW resolves to the same inode.
pub fn hard_link(file: impl AsFd, dir: impl AsFd, name: &[u8]) -> rustix::io::Result<()> {
    use rustix::fs::AtFlags;
    match rustix::fs::linkat(&file, c"", &dir, name, AtFlags::EMPTY_PATH) {
        Err(rustix::io::Errno::NOENT) => hard_link_via_proc(file, dir, name),
        other => other,
    }
}

/// [`hard_link`] through /proc/self/fd, which needs no capability.
fn hard_link_via_proc(file: impl AsFd, dir: impl AsFd, name: &[u8]) -> rustix::io::Result<()> {
    use std::os::fd::AsRawFd;
    let proc_path = format!("/proc/self/fd/{}", file.as_fd().as_raw_fd());
    rustix::fs::linkat(
        rustix::fs::CWD,
        proc_path.as_str(),
        &dir,
        name,
        rustix::fs::AtFlags::SYMLINK_FOLLOW,
    )
}

/// Renames `from` to `to` in `dir` unless `to` exists (then `Ok(false)`).
pub fn rename_noreplace(dir: impl AsFd, from: &[u8], to: &[u8]) -> io::Result<bool> {
    let dir = dir.as_fd();
    match rustix::fs::renameat_with(dir, from, dir, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn openat2(dir: &OwnedFd, path: &[u8], flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    retrying(|| rustix::fs::openat2(dir, path, flags, mode, RESOLVE))
}

/// Calls `open` again while it fails with EAGAIN or EINTR, at most [`EAGAIN_RETRIES`] times more.
fn retrying(mut open: impl FnMut() -> rustix::io::Result<OwnedFd>) -> io::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match open() {
            Err(Errno::AGAIN | Errno::INTR) if tries < EAGAIN_RETRIES => tries += 1,
            other => return other.map_err(Into::into),
        }
    }
}

#[cfg(test)]
// Tests state their expectations with unwrap(); a panic there is the failure report.
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::{symlink, MetadataExt as _};

    use super::*;

    /// A scratch directory holding `root/` and, beside it, `outside/`: where an escape from the
    /// root would land.
    struct Scene {
        _dir: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    impl Scene {
        fn new() -> Scene {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("root");
            let outside = dir.path().join("outside");
            fs_err::create_dir(&root).unwrap();
            fs_err::create_dir(&outside).unwrap();
            Scene {
                _dir: dir,
                root,
                outside,
            }
        }

        fn open(&self) -> Root {
            Root::held(&HeldRoot::open(&self.root).unwrap()).unwrap()
        }

        /// What `outside/` holds: an escape writes here.
        fn outside_names(&self) -> Vec<String> {
            let mut names: Vec<String> = fs_err::read_dir(&self.outside)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    fn close_on_exec(fd: impl AsFd) -> bool {
        rustix::io::fcntl_getfd(fd)
            .unwrap()
            .contains(rustix::io::FdFlags::CLOEXEC)
    }

    fn same_file(fd: impl AsFd, path: &Path) -> bool {
        let st = rustix::fs::fstat(fd).unwrap();
        let meta = fs_err::symlink_metadata(path).unwrap();
        (st.st_dev, st.st_ino) == (meta.dev(), meta.ino())
    }

    fn errno(e: &io::Error) -> Option<i32> {
        e.raw_os_error()
    }

    #[test]
    fn create_makes_missing_parents_and_says_whether_it_made_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/root");
        assert!(Root::create(&path).unwrap(), "made");
        assert!(path.is_dir());
        assert!(!Root::create(&path).unwrap(), "already there");
        // A root that cannot be made is an error, not a root that is "already there".
        fs_err::write(dir.path().join("file"), b"").unwrap();
        let err = Root::create(&dir.path().join("file/root")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotADirectory, "{err}");
        assert!(!dir.path().join("file/root").exists());
    }

    #[test]
    fn symlinks_resolve_inside_the_root_absolute_relative_or_dot_dot() {
        let scene = Scene::new();
        fs_err::create_dir(scene.root.join("etc")).unwrap();
        fs_err::write(scene.root.join("etc/f"), b"inside").unwrap();
        fs_err::write(scene.outside.join("f"), b"outside").unwrap();
        symlink("/etc", scene.root.join("abs")).unwrap();
        symlink("../../../etc", scene.root.join("rel")).unwrap();
        let root = scene.open();
        for path in [
            &b"abs/f"[..],
            b"rel/f",
            b"../etc/f",
            b"/etc/f",
            b"../../etc/f",
        ] {
            let fd = root.open(path, OFlags::RDONLY).unwrap();
            assert!(same_file(&fd, &scene.root.join("etc/f")), "{path:?}");
            assert!(close_on_exec(&fd), "{path:?}");
        }
        // /proc's magic links point anywhere: refused, not followed.
        symlink("/proc/self/cwd", scene.root.join("magic")).unwrap();
        assert!(root.open(b"magic", OFlags::PATH).is_err());
    }

    #[test]
    fn open_create_makes_the_file_inside_the_root_through_a_symlink() {
        let scene = Scene::new();
        fs_err::create_dir(scene.root.join("run")).unwrap();
        symlink("/run", scene.root.join("var_run")).unwrap();
        let root = scene.open();
        let fd = root
            .open_create(b"var_run/pid", OFlags::WRONLY, 0o600)
            .unwrap();
        assert!(close_on_exec(&fd));
        assert!(same_file(&fd, &scene.root.join("run/pid")));
        assert!(scene.outside_names().is_empty());
    }

    #[test]
    fn open_dir_refuses_what_is_not_a_directory() {
        let scene = Scene::new();
        fs_err::write(scene.root.join("file"), b"").unwrap();
        let root = scene.open();
        let err = root.open_dir(b"file").unwrap_err();
        assert_eq!(errno(&err), Some(Errno::NOTDIR.raw_os_error()), "{err}");
        let dir = root.open_dir(b".").unwrap();
        assert!(close_on_exec(&dir));
        assert!(same_file(&dir, &scene.root));
    }

    #[test]
    fn open_nofollow_gives_the_symlink_itself() {
        let scene = Scene::new();
        fs_err::write(scene.root.join("target"), b"").unwrap();
        symlink("target", scene.root.join("link")).unwrap();
        let root = scene.open();
        let link = root.open_nofollow(b"link", OFlags::PATH).unwrap();
        assert!(same_file(&link, &scene.root.join("link")));
        assert!(close_on_exec(&link));
        let err = root.open_nofollow(b"link", OFlags::RDONLY).unwrap_err();
        assert_eq!(errno(&err), Some(Errno::LOOP.raw_os_error()), "{err}");
    }

    #[test]
    fn resolve_parent_names_the_final_file_and_its_real_directory() {
        let scene = Scene::new();
        fs_err::create_dir_all(scene.root.join("usr/bin")).unwrap();
        fs_err::write(scene.root.join("usr/bin/sh"), b"").unwrap();
        fs_err::write(scene.root.join("top"), b"").unwrap();
        symlink("/usr/bin", scene.root.join("bin")).unwrap();
        let root = scene.open();

        let (dir, name) = root.resolve_parent(b"bin/sh").unwrap();
        assert_eq!(name.as_deref(), Some(&b"sh"[..]));
        assert!(same_file(&dir, &scene.root.join("usr/bin")));

        let (dir, name) = root.resolve_parent(b"top").unwrap();
        assert_eq!(name.as_deref(), Some(&b"top"[..]));
        assert!(same_file(&dir, &scene.root));

        let (dir, name) = root.resolve_parent(b"usr/..").unwrap();
        assert_eq!(name, None, "the root itself");
        assert!(same_file(&dir, &scene.root));
    }

    #[test]
    fn open_dir_all_makes_each_missing_directory_inside_the_root() {
        let scene = Scene::new();
        fs_err::create_dir(scene.root.join("real")).unwrap();
        symlink("/real", scene.root.join("abs")).unwrap();
        symlink("../outside", scene.root.join("up")).unwrap();
        let root = scene.open();

        let dir = root.open_dir_all(b"a//b/c/").unwrap();
        assert!(same_file(&dir, &scene.root.join("a/b/c")));
        let mode = fs_err::metadata(scene.root.join("a/b")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o755 & !current_umask());

        let dir = root.open_dir_all(b"abs/x/y").unwrap();
        assert!(same_file(&dir, &scene.root.join("real/x/y")));
        // `up` leads to the root's own (missing) /outside, never to the one beside the root.
        assert!(root.open_dir_all(b"up/z").is_err());
        assert!(
            scene.outside_names().is_empty(),
            "nothing made beside the root"
        );

        let dir = root.open_dir_all(b"real").unwrap();
        assert!(same_file(&dir, &scene.root.join("real")), "an existing one");
        fs_err::write(scene.root.join("file"), b"").unwrap();
        let err = root.open_dir_all(b"file/sub").unwrap_err();
        assert_eq!(errno(&err), Some(Errno::NOTDIR.raw_os_error()), "{err}");
    }

    fn current_umask() -> u32 {
        let mask = rustix::process::umask(Mode::from_raw_mode(0o022));
        rustix::process::umask(mask);
        mask.bits()
    }

    #[test]
    fn temporary_names_differ_within_a_run_and_between_roots() {
        let scene = Scene::new();
        let (a, b) = (scene.open(), scene.open());
        let names = [a.temp_name(), a.temp_name(), b.temp_name()];
        assert_ne!(names[0], names[1]);
        assert_ne!(names[0], names[2], "each root draws its own token");
        for name in &names {
            assert!(name.starts_with(b".debstrap-"), "{name:?}");
            assert!(!name.contains(&0) && !name.contains(&b'/'), "{name:?}");
        }
    }

    #[test]
    fn write_file_dated_writes_contents_mode_and_time_through_symlinks_inside() {
        let scene = Scene::new();
        fs_err::create_dir_all(scene.root.join("var/lib")).unwrap();
        symlink("/var/lib", scene.root.join("lib")).unwrap();
        let root = scene.open();
        let path = RelPath::from_clean("lib/dpkg/status");
        root.write_file_dated(&path, b"Package: a\n", 0o640, Some(1_000_000))
            .unwrap();
        let file = scene.root.join("var/lib/dpkg/status");
        // (Looked at before the file is read, which would move its atime.)
        let meta = fs_err::metadata(&file).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!((meta.mtime(), meta.atime()), (1_000_000, 1_000_000));
        assert_eq!(fs_err::read(&file).unwrap(), b"Package: a\n");
        // Written again: replaced whole, and no temporary file left beside it.
        root.write_file(&path, b"x", 0o644).unwrap();
        assert_eq!(fs_err::read(&file).unwrap(), b"x");
        let names: Vec<_> = fs_err::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["status"]);
    }

    #[test]
    fn a_symlink_planted_at_the_next_temporary_name_is_not_written_through() {
        let scene = Scene::new();
        let root = scene.open();
        // The name the next write will use, as if an archive entry had guessed it.
        let next = format!(
            ".debstrap-{:016x}-{}",
            root.temp_token,
            root.temp_counter.load(Ordering::Relaxed)
        );
        symlink(scene.outside.join("x"), scene.root.join(&next)).unwrap();
        let _ = root.write_file(&RelPath::from_clean("f"), b"data", 0o644);
        assert!(scene.outside_names().is_empty(), "written outside the root");
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let scene = Scene::new();
        fs_err::create_dir(scene.root.join("d")).unwrap();
        fs_err::write(scene.root.join("d/keep"), b"").unwrap();
        let root = scene.open();
        // Renaming a file over a non-empty directory fails after the temporary file is written.
        let err = root
            .write_file(&RelPath::from_clean("d"), b"data", 0o644)
            .unwrap_err();
        assert!(err.raw_os_error().is_some(), "{err}");
        let names: Vec<_> = fs_err::read_dir(&scene.root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["d"]);
    }

    #[test]
    fn create_if_absent_makes_an_empty_file_once_and_never_follows_a_symlink() {
        let scene = Scene::new();
        let root = scene.open();
        let path = RelPath::from_clean("var/lib/dpkg/available");
        root.create_if_absent(&path, 0o600).unwrap();
        let file = scene.root.join("var/lib/dpkg/available");
        assert_eq!(fs_err::metadata(&file).unwrap().len(), 0);
        assert_eq!(fs_err::metadata(&file).unwrap().mode() & 0o7777, 0o600);
        fs_err::write(&file, b"kept").unwrap();
        root.create_if_absent(&path, 0o600).unwrap();
        assert_eq!(fs_err::read(&file).unwrap(), b"kept", "left as it was");

        // A symlink at the name, pointing outside: left alone, nothing made where it points.
        symlink(scene.outside.join("made"), scene.root.join("planted")).unwrap();
        let _ = root.create_if_absent(&RelPath::from_clean("planted"), 0o644);
        assert!(scene.outside_names().is_empty(), "created outside the root");
    }

    /// An open that fails with `errno` `failures` times, then succeeds; counts its calls and
    /// gives up (succeeding) after 1000, so a retry without bound ends the test instead of hanging.
    fn flaky(errno: Errno, failures: usize, calls: &mut usize) -> rustix::io::Result<OwnedFd> {
        *calls += 1;
        if *calls <= failures && *calls < 1000 {
            Err(errno)
        } else {
            rustix::fs::open("/", OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        }
    }

    #[test]
    fn a_raced_lookup_is_retried_a_bounded_number_of_times() {
        for errno in [Errno::AGAIN, Errno::INTR] {
            let mut calls = 0;
            retrying(|| flaky(errno, EAGAIN_RETRIES, &mut calls)).unwrap();
            assert_eq!(
                calls,
                EAGAIN_RETRIES + 1,
                "{errno:?}: retried until it worked"
            );

            let mut calls = 0;
            let err = retrying(|| flaky(errno, usize::MAX, &mut calls)).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(errno.raw_os_error()));
            assert_eq!(calls, EAGAIN_RETRIES + 1, "{errno:?}: then given up");
        }
        // Any other error is final at once.
        let mut calls = 0;
        assert!(retrying(|| flaky(Errno::NOENT, 1, &mut calls)).is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn rename_noreplace_never_replaces() {
        let scene = Scene::new();
        fs_err::write(scene.root.join("a"), b"a").unwrap();
        fs_err::write(scene.root.join("b"), b"b").unwrap();
        let root = scene.open();
        let dir = root.open_dir(b".").unwrap();
        assert!(!rename_noreplace(&dir, b"a", b"b").unwrap());
        assert_eq!(fs_err::read(scene.root.join("b")).unwrap(), b"b");
        assert!(rename_noreplace(&dir, b"a", b"c").unwrap());
        assert_eq!(fs_err::read(scene.root.join("c")).unwrap(), b"a");
        assert!(!scene.root.join("a").exists());
    }

    #[test]
    fn a_hard_link_through_proc_names_the_open_file_even_after_its_path_moved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = dir.path().join("first");
        fs_err::write(&first, b"contents").expect("write");
        let file = fs_err::File::open(&first).expect("open");
        // The path the file was opened by now names another file: only the descriptor leads to
        // the first one.
        fs_err::rename(&first, dir.path().join("moved")).expect("rename");
        fs_err::write(&first, b"impostor").expect("write impostor");
        let dir_fd = fs_err::File::open(dir.path()).expect("open dir");
        hard_link_via_proc(&file, &dir_fd, b"link").expect("link");
        let link = fs_err::metadata(dir.path().join("link")).expect("stat link");
        let moved = fs_err::metadata(dir.path().join("moved")).expect("stat moved");
        assert_eq!(link.ino(), moved.ino());
        assert_eq!(
            fs_err::read(dir.path().join("link")).expect("read"),
            b"contents"
        );
        hard_link(&file, &dir_fd, b"link2").expect("link either way");
        let link2 = fs_err::metadata(dir.path().join("link2")).expect("stat link2");
        assert_eq!(link2.ino(), moved.ino());
    }
}
