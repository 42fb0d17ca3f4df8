//! [`build`]: the one function that chains the stages, and the guard that keeps a failed build
//! from leaving a half-built root behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{BuildConfig, ImageFormat, Output, StopAfter, Variant};
use crate::fetch::{self, CachedDeb, Fetcher, Keyring};
use crate::hooks::{self, HookPoint};
use crate::preflight::{self, PreflightError, Runs};
use crate::progress::{Reporter, Stage};
use crate::resolve::{self, Selection};
use crate::{onion, output, stage, target, unpack};

/// The web server the onion stage publishes.
const WEB_SERVER: &str = "nginx";

/// Any stage's failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    /// Boxed: its variants carry several names and paths, and every stage's result holds this.
    #[error(transparent)]
    Preflight(Box<PreflightError>),
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    #[error(transparent)]
    Unpack(#[from] unpack::UnpackError),
    #[error(transparent)]
    Stage(#[from] stage::StageError),
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    #[error(transparent)]
    Onion(#[from] onion::OnionError),
    #[error(transparent)]
    Output(#[from] output::OutputError),
    #[error(transparent)]
    Sbom(#[from] crate::sbom::SbomError),
    #[error("TARGET {path} exists and is not empty; pass --force to replace it, or choose another TARGET")]
    TargetNotEmpty { path: PathBuf },
    #[error("TARGET {path} has mounts inside ({mounts:?}); stop what uses it first (e.g. `debstrap-onion stop NAME`)")]
    TargetMounted { path: PathBuf, mounts: Vec<PathBuf> },
    #[error(
        "TARGET {path} is a mount point holding files; it is built in place, never replaced: \
         empty it (a lone empty lost+found may stay) and retry"
    )]
    MountPointNotEmpty { path: PathBuf },
    #[error(
        "cannot build in {path}: its filesystem, mounted on {mount_point}, has the option \
         {option}, so maintainer scripts cannot run there; remount it without {option}, or choose \
         a TARGET (for `-`, a TMPDIR) on another filesystem"
    )]
    MountOption {
        path: PathBuf,
        mount_point: PathBuf,
        option: &'static str,
    },
    #[error("{path}: cannot prepare the build directory")]
    Target {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Guard(#[from] target::TargetError),
    #[error(transparent)]
    Cancelled(#[from] crate::cancel::Cancelled),
}

impl From<PreflightError> for Error {
    fn from(err: PreflightError) -> Error {
        Error::Preflight(Box::new(err))
    }
}

/// What a build produced.
#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    /// The resolved packages, sorted by name: `(name, version)`.
    pub packages: Vec<(String, String)>,
    /// Where the result is (directory or tarball), unless nothing was built.
    pub target: Option<PathBuf>,
    /// The published onion service, when the onion stage ran.
    pub onion: Option<onion::OnionReport>,
    /// Wall time of each stage that ran, in order.
    pub timings: Vec<(Stage, Duration)>,
}

/// Runs the pipeline as far as `config.stop_after` says.
pub fn build(config: &BuildConfig, reporter: &dyn Reporter) -> Result<BuildReport, Error> {
    config.validate()?;
    // An image whose program is missing is refused before anything is downloaded.
    if config.stop_after == StopAfter::Complete {
        output::check_programs(&config.output)?;
    }
    // Where the root goes is decided, and refused, before any work (and checked again when
    // the build directory is made, in case TARGET changed meanwhile).
    if config.stop_after == StopAfter::Complete {
        BuildPlace::decide(config)?;
    }
    // Whether the root's programs can run here is settled before anything is downloaded; for
    // an architecture whose ELF signature is not known, the archive's word on it comes first.
    let runs = match runs_programs(config) {
        Err(err @ PreflightError::UnknownMachine { .. }) => Err(err),
        Err(err) => return Err(err.into()),
        Ok(runs) => Ok(runs),
    };
    let mut report = BuildReport::default();
    let mut clock = StageClock::new(reporter);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;

    clock.begin(Stage::Index);
    let keyring = if config.keyrings.is_empty() {
        Keyring::builtin().map_err(fetch::FetchError::from)?
    } else {
        Keyring::from_files(&config.keyrings).map_err(fetch::FetchError::from)?
    };
    let fetcher = Fetcher::new()?;
    let (release, index) = runtime.block_on(fetch::index(
        &fetcher,
        fetch::IndexRequest {
            mirror: &config.mirror,
            suite: &config.suite,
            components: &config.components,
            arch: &config.arch,
            foreign_archs: &config.foreign_archs,
            keyring: &keyring,
            ignore_valid_until: config.ignore_valid_until,
            cache_dir: &config.cache_dir,
        },
    ))?;

    let runs = runs?;

    clock.begin(Stage::Resolve);
    let mut include = config.include.clone();
    if config.wants_onion() && !include.iter().any(|p| p == WEB_SERVER) {
        include.push(WEB_SERVER.to_string());
    }
    let selection = Selection {
        variant: config.variant,
        include,
        exclude: config.exclude.clone(),
        arch: config.arch.clone(),
    };
    let resolution = resolve::resolve(&index, &selection)?;
    let available = available_stanzas(&index, &resolution)?;
    drop(index);
    // A package of a foreign architecture is named with it, as dpkg-query names it.
    report.packages = resolution
        .packages
        .iter()
        .map(|p| {
            let foreign = p.architecture != config.arch && p.architecture != "all";
            let name = if foreign {
                format!("{}:{}", p.name, p.architecture)
            } else {
                p.name.clone()
            };
            (name, p.version.clone())
        })
        .collect();
    if config.stop_after == StopAfter::PrintPackages {
        report.timings = clock.end();
        return Ok(report);
    }

    let download = fetch::DownloadRequest {
        mirror: &config.mirror,
        packages: &resolution.packages,
        cache_dir: &config.cache_dir,
        reporter,
        on_ready: &|_, _| {},
    };
    if config.stop_after == StopAfter::DownloadOnly {
        clock.begin(Stage::Download);
        runtime.block_on(fetch::download(&fetcher, download))?;
        report.timings = clock.end();
        return Ok(report);
    }

    // Each stage starts with a check that the build directory is still the one created.
    let build_dir = BuildDir::create(BuildPlace::decide(config)?, &config.output, config.force)?;
    run_hooks(config, &build_dir, HookPoint::Setup, reporter)?;
    let unpacked = download_and_unpack(
        config,
        &runtime,
        &fetcher,
        download,
        build_dir.verify()?,
        &mut clock,
    )?;
    drop(runtime);
    release_freed_memory();
    unpack::write_available(build_dir.verify()?, &available)?;
    unpack::write_foreign_archs(build_dir.verify()?, &config.arch, &config.foreign_archs)?;
    run_hooks(config, &build_dir, HookPoint::Extract, reporter)?;
    // The onion stage's host-side changes are kept only once the root is committed: dropped on
    // any error or stop below, they put the host back (before the build directory goes).
    let onion = finish_root(config, &runs, &unpacked, &build_dir, &mut clock)?;
    // A rootless build's device placeholders become nodes in a tar archive; anything else
    // would keep them as empty files, so they go.
    let tar_written = matches!(
        config.output,
        Output::Tarball { .. }
            | Output::Stdout { .. }
            | Output::Image {
                format: ImageFormat::OciArchive | ImageFormat::OciDir,
                ..
            }
    );
    if crate::userns::inside() && !tar_written && config.variant != Variant::Extract {
        stage::remove_device_placeholders(build_dir.verify()?)?;
    }
    // With SOURCE_DATE_EPOCH caches and logs go and timestamps are clamped, so the bytes
    // repeat; without it the root keeps the build's logs (dpkg.log, the maintainer scripts'
    // output in var/log/debstrap-onion.log), as debootstrap leaves them.
    if let Some(epoch) = config.source_date_epoch {
        crate::cancel::check()?;
        output::make_deterministic(build_dir.verify()?, epoch)?;
    }
    let wants_sbom = config.sbom.is_some()
        || matches!(
            config.output,
            Output::Image {
                format: ImageFormat::OciArchive | ImageFormat::OciDir,
                ..
            }
        );
    let sbom = if wants_sbom {
        crate::sbom::sbom(&crate::sbom::SbomRequest {
            root: build_dir.verify()?,
            name: &config.name,
            release: &release,
            packages: &resolution.packages,
            source_date_epoch: config.source_date_epoch,
        })?
    } else {
        Vec::new()
    };
    if !matches!(config.output, Output::Directory(_)) {
        clock.begin(Stage::Output);
    }
    match &config.output {
        Output::Directory(_) => {}
        Output::Image { path, format } => output::write_image(
            build_dir.verify()?,
            &output::ImageRequest {
                path,
                format: *format,
                source_date_epoch: config.source_date_epoch,
                arch: &config.arch,
                sbom: &sbom,
            },
        )?,
        Output::Tarball { .. } | Output::Stdout { .. } => output::write_tarball(
            build_dir.verify()?,
            &config.output,
            config.source_date_epoch,
        )?,
    }
    // Written in full before the result is committed, so a full disk or a missing directory
    // fails the build with nothing committed; only the rename is left for afterwards.
    let staged_sbom = match &config.sbom {
        Some(path) => Some(crate::sbom::stage_file(path, &sbom)?),
        None => None,
    };
    build_dir.commit()?;
    if let Some(staged) = staged_sbom {
        staged.persist()?;
    }
    report.onion = onion.map(onion::Configured::keep);
    report.target = config.output.path().map(Path::to_path_buf);
    report.timings = clock.end();
    Ok(report)
}

/// Hands the memory the downloads and the unpacking freed back to the kernel: glibc keeps
/// freed heap in its per-thread arenas, and the build's process would otherwise hold tens of
/// MB it no longer uses while dpkg and the maintainer scripts run beside it.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; no allocation is touched.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Checks where the root would be built (TARGET, its parents, the filesystem) and creates
/// nothing. A rootless build runs this as the calling user before entering its namespace, where
/// the owners of directories outside it can no longer be told apart.
pub fn check_place(config: &BuildConfig) -> Result<(), Error> {
    BuildPlace::decide(config).map(|_| ())
}

/// How the root's programs will run, when the build runs any (configuring the root does;
/// printing, downloading and `--variant extract` do not).
fn runs_programs(config: &BuildConfig) -> Result<Runs, PreflightError> {
    if config.stop_after != StopAfter::Complete || config.variant == Variant::Extract {
        return Ok(Runs::Natively);
    }
    // An unknown host runs nothing but its own kind, which is then not known either.
    let host = crate::config::host_arch().unwrap_or_default();
    preflight::check(&config.arch, &host, &config.binfmt_dir)
}

/// dpkg's `available` as debootstrap writes it: the index stanza of every version the index
/// lists of each chosen package, not only the chosen version.
fn available_stanzas(
    index: &fetch::RepoIndex,
    resolution: &resolve::Resolution,
) -> Result<String, Error> {
    let chosen: std::collections::HashSet<(&str, &str)> = resolution
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.architecture.as_str()))
        .collect();
    let listed = index
        .packages()
        .filter(|p| chosen.contains(&(p.name, p.architecture)))
        .map(|p| p.stanza);
    Ok(index.stanzas(listed).map_err(fetch::FetchError::from)?)
}

/// Downloads and unpacks side by side: each .deb is extracted as soon as it is verified in the
/// cache, largest first on both sides. A download failure is the error reported, even when
/// unpacking stopped because of it.
fn download_and_unpack(
    config: &BuildConfig,
    runtime: &tokio::runtime::Runtime,
    fetcher: &Fetcher,
    download: fetch::DownloadRequest<'_>,
    root: &target::HeldRoot,
    clock: &mut StageClock,
) -> Result<unpack::Unpacked, Error> {
    let gate = ReadyGate::new(download.packages.len());
    let reporter = clock.reporter;
    let started = Instant::now();
    clock.begin(Stage::Download);
    reporter.stage(Stage::Unpack);
    let ((downloaded, download_time), unpacked) = std::thread::scope(|scope| {
        let downloading = scope.spawn(|| {
            let on_ready = |i, deb: &CachedDeb| gate.open(i, deb);
            let result = runtime.block_on(fetch::download(
                fetcher,
                fetch::DownloadRequest {
                    on_ready: &on_ready,
                    ..download
                },
            ));
            if result.is_err() {
                gate.fail();
            }
            (result, started.elapsed())
        });
        let request = unpack::PendingRequest {
            root,
            packages: download.packages,
            arch: &config.arch,
        };
        let unpacked = unpack::unpack_when_ready(&request, &|i| gate.wait(i), reporter);
        (
            downloading
                .join()
                .expect("the download thread does not panic"),
            unpacked,
        )
    });
    clock.split(Stage::Download, download_time, Stage::Unpack);
    downloaded?;
    Ok(unpacked?)
}

/// The downloads verified in the cache, for unpacking threads waiting on them.
struct ReadyGate {
    /// One slot per package, and whether the downloads failed.
    state: std::sync::Mutex<(Vec<Option<CachedDeb>>, bool)>,
    changed: std::sync::Condvar,
}

impl ReadyGate {
    fn new(count: usize) -> ReadyGate {
        ReadyGate {
            state: std::sync::Mutex::new((vec![None; count], false)),
            changed: std::sync::Condvar::new(),
        }
    }

    fn open(&self, index: usize, deb: &CachedDeb) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0[index] = Some(deb.clone());
        self.changed.notify_all();
    }

    fn fail(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.changed.notify_all();
    }

    /// Blocks until package `index` is verified in the cache; `Err` when it never will be.
    fn wait(&self, index: usize) -> Result<CachedDeb, crate::cancel::Cancelled> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(deb) = &state.0[index] {
                return Ok(deb.clone());
            }
            if state.1 {
                return Err(crate::cancel::Cancelled);
            }
            crate::cancel::check()?;
            // Woken by every download; the timeout only bounds how late a Ctrl-C is seen.
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Configures and (when asked) publishes the unpacked root at `root`; the host-side changes
/// stay pending in what it returns.
fn finish_root(
    config: &BuildConfig,
    runs: &Runs,
    unpacked: &unpack::Unpacked,
    build_dir: &BuildDir,
    clock: &mut StageClock,
) -> Result<Option<onion::Configured>, Error> {
    if config.variant == Variant::Extract {
        return Ok(None);
    }
    clock.begin(Stage::Configure);
    preflight::check_root(runs, &config.arch, build_dir.verify()?.path())?;
    // The essential hooks run where mmdebstrap runs them: once the essential packages are
    // configured, before the others.
    let reporter = clock.reporter;
    let essential_hooks = |here: &stage::RootDir| {
        let request = hook_request(config, build_dir.verify()?, HookPoint::Essential);
        hooks::run_mounted(&request, here, reporter)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    };
    stage::stage_with(
        &stage::StageRequest {
            root: build_dir.verify()?,
            unpacked,
            mirror: &config.mirror,
            suite: &config.suite,
            components: &config.components,
            hostname: &config.name,
            source_date_epoch: config.source_date_epoch,
        },
        // Without essential hooks the phases stay exactly debootstrap's.
        config
            .hooks
            .any_at(HookPoint::Essential)
            .then_some(&essential_hooks as &stage::Interlude),
        clock.reporter,
    )?;
    run_hooks(config, build_dir, HookPoint::Customize, clock.reporter)?;
    if !config.wants_onion() {
        return Ok(None);
    }
    clock.begin(Stage::Onion);
    crate::cancel::check()?;
    let held = build_dir.verify()?;
    let root = held.path();
    let chroot_path = match &config.output {
        Output::Directory(path) => std::path::absolute(path).unwrap_or_else(|_| path.clone()),
        _ => Path::new(crate::config::DEFAULT_CHROOT_PARENT).join(&config.name),
    };
    // An image never changes the host it is built on: without an explicit --host-root its
    // host-side files (key, torrc block, schroot definition) go inside the image.
    let mut onion_config = config.onion.clone();
    let in_image =
        onion_config.host_root.is_none() && !matches!(config.output, Output::Directory(_));
    if in_image {
        onion_config.host_root = Some(onion::image_host_root(root)?);
    }
    let mut configured = onion::configure(&onion::OnionRequest {
        name: &config.name,
        root: held,
        chroot_path: &chroot_path,
        suite: &config.suite,
        config: &onion_config,
    })?;
    // Files inside the image go with its root on failure: nothing there is to be undone.
    if in_image {
        configured.keep_now();
    }
    Ok(Some(configured))
}

/// Runs the hooks given for `point` on the build directory.
fn run_hooks(
    config: &BuildConfig,
    build_dir: &BuildDir,
    point: HookPoint,
    reporter: &dyn Reporter,
) -> Result<(), Error> {
    if !config.hooks.any_at(point) {
        return Ok(());
    }
    hooks::run(&hook_request(config, build_dir.verify()?, point), reporter)?;
    Ok(())
}

/// What the hooks of `point` are given.
fn hook_request<'a>(
    config: &'a BuildConfig,
    root: &'a target::HeldRoot,
    point: HookPoint,
) -> hooks::HookRequest<'a> {
    let format = match config.output {
        Output::Directory(_) => "directory",
        _ => "tar",
    };
    hooks::HookRequest {
        root,
        point,
        hooks: &config.hooks,
        facts: hooks::BuildFacts {
            arch: &config.arch,
            suite: &config.suite,
            variant: config.variant.name(),
            format,
            include: &config.include,
            name: &config.name,
        },
    }
}

/// Times stages and tells the reporter when one begins.
struct StageClock<'a> {
    reporter: &'a dyn Reporter,
    current: Option<(Stage, Instant)>,
    done: Vec<(Stage, Duration)>,
}

impl<'a> StageClock<'a> {
    fn new(reporter: &'a dyn Reporter) -> Self {
        StageClock {
            reporter,
            current: None,
            done: Vec::new(),
        }
    }

    fn begin(&mut self, stage: Stage) {
        self.close();
        self.reporter.stage(stage);
        self.current = Some((stage, Instant::now()));
    }

    fn close(&mut self) {
        if let Some((stage, started)) = self.current.take() {
            self.done.push((stage, started.elapsed()));
        }
    }

    /// Ends two stages that ran side by side since the current one began: the first took
    /// `first`, the second is charged only the time it ran past the first's end.
    fn split(&mut self, first_stage: Stage, first: Duration, second_stage: Stage) {
        if let Some((_, started)) = self.current.take() {
            let total = started.elapsed();
            self.done.push((first_stage, first));
            self.done.push((second_stage, total.saturating_sub(first)));
        }
    }

    fn end(mut self) -> Vec<(Stage, Duration)> {
        self.close();
        std::mem::take(&mut self.done)
    }
}

/// Where a root is built, decided from what TARGET is: beside a directory TARGET (renamed into
/// place at the end), in a mount point TARGET itself (a mount point is never renamed), or in a
/// temporary directory for tarballs.
#[derive(Debug)]
enum BuildPlace {
    Beside {
        parent: PathBuf,
        target: PathBuf,
    },
    InPlace {
        target: PathBuf,
    },
    Temporary {
        parent: PathBuf,
        prefix: &'static str,
    },
}

impl BuildPlace {
    /// Checks TARGET and the filesystem the root will be on; creates nothing.
    fn decide(config: &BuildConfig) -> Result<BuildPlace, Error> {
        let place = match &config.output {
            Output::Directory(target) => Self::for_directory(target, config.force)?,
            // The layout replaces TARGET at the end, as a directory build would.
            Output::Image {
                path,
                format: ImageFormat::OciDir,
            } if !config.force && is_non_empty_dir(path) => {
                return Err(Error::TargetNotEmpty { path: path.clone() });
            }
            // Beside the tarball, unless another user could swap the root there: then in the
            // system's temporary directory, which gets the same checks below.
            Output::Tarball { path, .. } | Output::Image { path, .. } => {
                match target::check_parents(path, &parent_of(path)) {
                    Ok(()) => BuildPlace::Temporary {
                        parent: parent_of(path),
                        prefix: ".debstrap-onion-root-",
                    },
                    Err(unsafe_parent) => {
                        let parent = std::env::temp_dir();
                        tracing::warn!(
                            "{unsafe_parent}; building the root in {} instead",
                            parent.display()
                        );
                        target::check_parents(path, &parent)?;
                        BuildPlace::Temporary {
                            parent,
                            prefix: "debstrap-onion-root-",
                        }
                    }
                }
            }
            Output::Stdout { .. } => BuildPlace::Temporary {
                parent: std::env::temp_dir(),
                prefix: "debstrap-onion-root-",
            },
        };
        if config.variant != Variant::Extract {
            check_scripts_can_run(place.dir())?;
        }
        Ok(place)
    }

    fn for_directory(target: &Path, force: bool) -> Result<BuildPlace, Error> {
        let mounted = stage::mounts_under(target);
        if !mounted.is_empty() {
            return Err(Error::TargetMounted {
                path: target.to_path_buf(),
                mounts: mounted,
            });
        }
        if stage::is_mount_point(target) {
            if !is_empty_filesystem(target) {
                return Err(Error::MountPointNotEmpty {
                    path: target.to_path_buf(),
                });
            }
            return Ok(BuildPlace::InPlace {
                target: target.to_path_buf(),
            });
        }
        if !force && is_non_empty_dir(target) {
            return Err(Error::TargetNotEmpty {
                path: target.to_path_buf(),
            });
        }
        // The root is renamed into place from beside TARGET, so that place must be one nobody
        // else can swap it in.
        target::check_parents(target, &parent_of(target))?;
        Ok(BuildPlace::Beside {
            parent: parent_of(target),
            target: target.to_path_buf(),
        })
    }

    /// The directory the root is made in (or is).
    fn dir(&self) -> &Path {
        match self {
            BuildPlace::Beside { parent, .. } | BuildPlace::Temporary { parent, .. } => parent,
            BuildPlace::InPlace { target } => target,
        }
    }
}

/// Refuses a filesystem mounted `noexec` (nothing could run in the chroot), naming its mount
/// point; `nodev` is worked around while scripts run (see [`stage::ChrootMounts`]). The nearest
/// existing ancestor stands for a directory not made yet.
fn check_scripts_can_run(dir: &Path) -> Result<(), Error> {
    use nix::sys::statvfs::FsFlags;
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let Some(existing) = absolute.ancestors().find(|p| p.exists()) else {
        return Ok(());
    };
    let Ok(stat) = nix::sys::statvfs::statvfs(existing) else {
        return Ok(());
    };
    if stat.flags().contains(FsFlags::ST_NOEXEC) {
        return Err(Error::MountOption {
            path: dir.to_path_buf(),
            mount_point: stage::mount_point_of(existing),
            option: "noexec",
        });
    }
    Ok(())
}

/// The directory a root is built in: beside a directory TARGET (moved into place on success), a
/// mount point TARGET itself, or a temporary one for tarballs. Dropped without
/// [`BuildDir::commit`], it removes what it made: the whole directory, or, built in place,
/// everything in it.
///
/// It holds TARGET's lock for its whole life, so a second build of the same TARGET is refused
/// while this one runs, and it checks before each stage that its path still names the
/// directory it created.
struct BuildDir {
    root: PathBuf,
    held: target::HeldRoot,
    /// Where a directory build is moved on success.
    target: Option<PathBuf>,
    in_place: bool,
    /// Whether an existing non-empty TARGET may be replaced; decided again at the commit.
    force: bool,
    committed: bool,
    _lock: Option<target::TargetLock>,
}

impl BuildDir {
    fn create(place: BuildPlace, output: &Output, force: bool) -> Result<BuildDir, Error> {
        let locked = output.path();
        let (parent, prefix, target) = match place {
            BuildPlace::InPlace { target } => return BuildDir::in_place(target, force),
            BuildPlace::Beside { parent, target } => (
                parent,
                format!(".{}.build-", file_name(&target)),
                Some(target),
            ),
            BuildPlace::Temporary { parent, prefix } => (parent, prefix.to_string(), None),
        };
        let err = |source| Error::Target {
            path: parent.clone(),
            source,
        };
        // A directory TARGET's parent is refused before any of it is made: a directory created
        // as root inside another user's tree would be theirs to swap.
        if let (Some(path), Some(_)) = (locked, &target) {
            target::check_parents(path, &parent)?;
        }
        fs_err::create_dir_all(&parent).map_err(err)?;
        if let Output::Tarball { path, .. } | Output::Image { path, .. } = output {
            let dir = parent_of(path);
            fs_err::create_dir_all(&dir).map_err(|source| Error::Target { path: dir, source })?;
        }
        // Checked again now that it exists (and in case it changed since the build was planned).
        if let Some(path) = locked {
            target::check_parents(path, &parent)?;
        }
        let lock = match locked {
            Some(path) => Some(target::TargetLock::acquire(
                path,
                &parent,
                &file_name(path),
            )?),
            None => None,
        };
        if let Some(target) = &target {
            check_target_free(target, force)?;
        }
        // Removal is ours (Drop below), after checking that nothing is mounted inside.
        let root = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&parent)
            .map_err(err)?
            .keep();
        let held = match target::HeldRoot::open(&root) {
            Ok(held) => held,
            Err(e) => {
                remove_tree(&root);
                return Err(e.into());
            }
        };
        Ok(BuildDir {
            root,
            held,
            target,
            in_place: false,
            force,
            committed: false,
            _lock: lock,
        })
    }

    /// A root built in the mount point TARGET itself, under TARGET's lock.
    fn in_place(target: PathBuf, force: bool) -> Result<BuildDir, Error> {
        let parent = parent_of(&target);
        // TARGET itself too: whoever owns the root directory could rename what the build puts
        // in it (usr, say) and have root run their own files in its place.
        if let Err(unsafe_parent) = target::check_parents(&target, &target) {
            return Err(unsafe_parent.into());
        }
        let lock = target::TargetLock::acquire(&target, &parent, &file_name(&target))?;
        // Decided again under the lock: another build may have filled it, or it may have been
        // unmounted, since the first look; a failure here must not empty what is there now.
        match BuildPlace::for_directory(&target, force) {
            Ok(BuildPlace::InPlace { .. }) => {}
            Ok(_) => {
                return Err(Error::Target {
                    path: target,
                    source: std::io::Error::other("it is no longer a mount point"),
                })
            }
            Err(e) => return Err(e),
        }
        let held = target::HeldRoot::open(&target)?;
        Ok(BuildDir {
            root: target,
            held,
            target: None,
            in_place: true,
            force,
            committed: false,
            _lock: Some(lock),
        })
    }

    /// The build directory, held by the descriptor opened when it was created; fails unless
    /// its path still names that directory, so a swap is reported at the next stage even though
    /// no stage looks the path up.
    fn verify(&self) -> Result<&target::HeldRoot, Error> {
        self.held.verify()?;
        Ok(&self.held)
    }

    /// Moves a directory build into place. Whether an existing TARGET may be replaced is decided
    /// here, against what is there now, not only at the start; nothing is committed once a stop
    /// was requested. A tarball build's root is removed on drop; one built in place stays.
    fn commit(mut self) -> Result<(), Error> {
        crate::cancel::check()?;
        self.held.verify()?;
        let Some(target) = self.target.clone() else {
            self.committed = self.in_place;
            return Ok(());
        };
        check_target_free(&target, self.force)?;
        let err = |source| Error::Target {
            path: target.clone(),
            source,
        };
        let old = parent_of(&target).join(format!(
            ".{}.old-{}",
            file_name(&target),
            std::process::id()
        ));
        let replacing = fs_err::symlink_metadata(&target).is_ok();
        if replacing {
            fs_err::rename(&target, &old).map_err(err)?;
        }
        if let Err(e) = fs_err::rename(&self.root, &target) {
            // The old TARGET goes back to its name rather than stay hidden beside it.
            if replacing {
                if let Err(back) = fs_err::rename(&old, &target) {
                    tracing::error!("{back}");
                    crate::cancel::left_behind(old.clone());
                }
            }
            return Err(err(e));
        }
        self.committed = true;
        if replacing {
            remove_tree(&old);
        }
        Ok(())
    }
}

/// Refuses a TARGET that is occupied (without --force) or that has mounts inside.
fn check_target_free(target: &Path, force: bool) -> Result<(), Error> {
    if !force && is_non_empty_dir(target) {
        return Err(Error::TargetNotEmpty {
            path: target.to_path_buf(),
        });
    }
    let mounted = stage::mounts_under(target);
    if !mounted.is_empty() {
        return Err(Error::TargetMounted {
            path: target.to_path_buf(),
            mounts: mounted,
        });
    }
    Ok(())
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // A directory put in its place is someone else's: it is not ours to delete, and ours
        // is wherever it was moved to.
        if let Err(err) = self.held.verify() {
            tracing::error!("{err}");
            crate::cancel::moved_away(self.root.clone());
            return;
        }
        if self.in_place {
            empty_in_place(&self.root);
        } else {
            remove_tree(&self.root);
        }
    }
}

/// Removes everything a failed build made in a mount point TARGET, keeping `lost+found`, and
/// nothing while something is still mounted inside; what stays is recorded as left behind.
fn empty_in_place(root: &Path) {
    let mounted = stage::mounts_under(root);
    if !mounted.is_empty() {
        tracing::error!(
            "{}: not emptied, still mounted inside: {mounted:?}",
            root.display()
        );
        crate::cancel::left_behind(root.to_path_buf());
        return;
    }
    let entries = match fs_err::read_dir(root) {
        Ok(entries) => entries,
        Err(err) => {
            tracing::error!("cannot empty {}: {err}", root.display());
            crate::cancel::left_behind(root.to_path_buf());
            return;
        }
    };
    for entry in entries.flatten() {
        if entry.file_name() == LOST_AND_FOUND {
            continue;
        }
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(kind) if kind.is_dir() => fs_err::remove_dir_all(&path),
            _ => fs_err::remove_file(&path),
        };
        if let Err(err) = removed {
            tracing::error!("cannot remove {}: {err}", path.display());
            crate::cancel::left_behind(path);
        }
    }
}

/// What mkfs.ext4 leaves at the top of a new filesystem.
const LOST_AND_FOUND: &str = "lost+found";

/// Whether a mount point holds nothing, or only an empty `lost+found`.
fn is_empty_filesystem(path: &Path) -> bool {
    let Ok(entries) = fs_err::read_dir(path) else {
        return false;
    };
    entries.flatten().all(|entry| {
        entry.file_name() == LOST_AND_FOUND
            && entry.file_type().is_ok_and(|t| t.is_dir())
            && !is_non_empty_dir(&entry.path())
    })
}

/// Removes a build tree, but never one with something still mounted inside: deleting through a
/// mount would reach the host.
fn remove_tree(path: &Path) {
    if !path.exists() {
        return;
    }
    let mounted = stage::mounts_under(path);
    if !mounted.is_empty() {
        tracing::error!(
            "{}: not removed, still mounted inside: {mounted:?}",
            path.display()
        );
        crate::cancel::left_behind(path.to_path_buf());
        return;
    }
    if let Err(err) = fs_err::remove_dir_all(path) {
        tracing::error!("cannot remove {}: {err}", path.display());
        crate::cancel::left_behind(path.to_path_buf());
    }
}

fn is_non_empty_dir(path: &Path) -> bool {
    match fs_err::read_dir(path) {
        Ok(mut entries) => entries.next().is_some(),
        // A file or anything else unreadable at TARGET counts as occupied.
        Err(err) => err.kind() != std::io::ErrorKind::NotFound,
    }
}

fn parent_of(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "target".to_string())
}
