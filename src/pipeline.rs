//! [`build`]: the one function that chains the stages, and the guard that keeps a failed build
//! from leaving a half-built root behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{BuildConfig, ImageFormat, Output, StopAfter, Variant};
use crate::fetch::{self, CachedDeb, Fetcher, Keyring};
use crate::hooks::{self, HookPoint};
use crate::output::place::{BuildDir, BuildPlace};
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
        BuildPlace::decide(config, false)?;
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
    // The parsed indices were the largest thing in memory; downloads and unpacking come next.
    release_freed_memory();
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
    let build_dir = BuildDir::create(
        BuildPlace::decide(config, false)?,
        &config.output,
        config.force,
    )?;
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
        libc::malloc_trim(0);
    }
}

/// Checks where the root would be built (TARGET, its parents, the filesystem) and creates
/// nothing. A rootless build runs this as the calling user before entering its namespace, where
/// the owners of directories outside it can no longer be told apart.
pub fn check_place(config: &BuildConfig) -> Result<(), Error> {
    BuildPlace::decide(config, true).map(|_| ())
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
    let chroot_path = match &config.output {
        Output::Directory(path) => std::path::absolute(path).unwrap_or_else(|_| path.clone()),
        _ => Path::new(crate::config::DEFAULT_CHROOT_PARENT).join(&config.name),
    };
    // An image never changes the host it is built on: without an explicit --host-root its
    // host-side files (key, torrc block, schroot definition) go inside the image.
    let mut onion_config = config.onion.clone();
    let in_image =
        onion_config.host_root.is_none() && !matches!(config.output, Output::Directory(_));
    // Held open (and so reachable by its pinned name) until the onion stage is done.
    let image_host_root = in_image.then(|| onion::image_host_root(held)).transpose()?;
    if let Some(image) = &image_host_root {
        onion_config.host_root = Some(image.path().to_path_buf());
    }
    let mut configured = onion::configure(&onion::OnionRequest {
        name: &config.name,
        root: held,
        chroot_path: &chroot_path,
        suite: &config.suite,
        config: &onion_config,
    })?;
    // Files inside the image go with its root on failure: nothing there is to be undone.
    if let Some(image) = &image_host_root {
        configured.keep_now(image);
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
