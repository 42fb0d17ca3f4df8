//! The command line: clap's types, parsing into a BuildConfig, dispatch and signal handling;
//! the terminal rendering is in `render.rs`. All the work is in the library.

mod render;

use std::num::NonZeroU16;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use debstrap_onion::config::{self, BuildConfig, OnionConfig, Output, StopAfter, Variant};
use debstrap_onion::hooks::{Hook, HookPoint, Hooks};
use debstrap_onion::onion;
use debstrap_onion::userns;
use render::{fail, print_report, Progress};

/// Exit status of a build or command that failed.
const EXIT_FAILURE: u8 = 1;
/// Exit status of a usage or configuration error (bad option, no mirror, not root).
const EXIT_USAGE: u8 = 2;
/// Exit status of `status` when nginx does not answer (the LSB code for "not running").
const EXIT_NOT_RUNNING: u8 = 3;
/// Exit status after SIGINT or SIGTERM, as shells report a signal-killed job.
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser, Debug)]
#[command(
    name = "debstrap-onion",
    version,
    about = "Build a Debian chroot without debootstrap and publish it as a Tor onion web service",
    long_about = "Build a Debian chroot without debootstrap and publish it as a Tor onion web service.\n\n\
        debstrap-onion verifies the suite's signed InRelease against Debian's archive keys, resolves \
        the package set of a variant, downloads and checks every .deb in parallel, unpacks each one \
        confined to the target root, configures it through chroot(2), and by default installs nginx \
        and publishes it as a v3 onion service on the host's tor.",
    after_help = "Exit status: 0 success, 1 build failure, 2 usage or configuration error, \
        3 `status`: nginx not answering, 130 interrupted.",
    propagate_version = true
)]
struct Cli {
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// More detail: -v for each step, -vv for debugging.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build a Debian root (and, unless --no-onion, an onion web service in it).
    #[command(after_help = BUILD_EXAMPLES)]
    Build(Box<BuildArgs>),
    /// Start nginx in NAME's chroot and ask a running tor to reload: through systemd
    /// (debstrap-onion-NAME.service) when it runs, else in this program's own sandbox.
    Start(ServiceArgs),
    /// Stop nginx in NAME's chroot (systemctl stop when systemd runs) and undo its mounts.
    Stop(ServiceArgs),
    /// Report whether nginx in NAME's chroot answers on its local port, with the onion address.
    Status(ServiceArgs),
    /// Rotate NAME's nginx logs (keeping a week) and have nginx reopen them; a daily timer does
    /// the same under systemd.
    RotateLogs(ServiceArgs),
    /// Enable NAME's systemd unit and its log-rotation timer, so the service starts at boot
    /// (each missing link is made; run `systemctl daemon-reload` then).
    Enable(ServiceArgs),
    /// List the onion services built here (tab-separated): name, address, chroot, running or
    /// not, in torrc or not, whether the running tor has it loaded (asked through Debian's
    /// control socket /run/tor/control), whether the hostname file matches the key.
    List(HostRootArgs),
    /// Stop NAME and remove its torrc block and schroot files; the chroot stays, and the key
    /// (the address) too unless --purge.
    Remove(RemoveArgs),
    /// Print a shell completion script to standard output.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to standard output.
    Man,
}

const BUILD_EXAMPLES: &str = "Examples:
  # trixie with an nginx onion service, in /srv/chroot/onion
  debstrap-onion build
  # a plain minbase chroot, like debootstrap
  debstrap-onion build --no-onion bookworm /srv/chroot/b
  # list the package set and exit
  debstrap-onion build --print-packages --variant buildd
  # a reproducible tarball of the base system
  SOURCE_DATE_EPOCH=1700000000 debstrap-onion build --no-onion trixie b.tar.zst

The mirror is the MIRROR argument, else --mirror, else $DEBSTRAP_MIRROR, else the first Debian \
archive in the host's apt sources (/etc/apt/sources.list.d/*.sources, then sources.list).";

#[derive(Args, Debug)]
struct ServiceArgs {
    /// The name given to `build --name`.
    #[arg(default_value = config::DEFAULT_NAME)]
    name: String,
    /// Where the build wrote the host-side files (schroot definition, tor key).
    #[arg(long, value_name = "DIR", default_value = "/")]
    host_root: PathBuf,
}

#[derive(Args, Debug)]
struct HostRootArgs {
    /// Where the builds wrote the host-side files.
    #[arg(long, value_name = "DIR", default_value = "/")]
    host_root: PathBuf,
}

#[derive(Args, Debug)]
struct RemoveArgs {
    #[command(flatten)]
    service: ServiceArgs,
    /// Also delete the key directory: the onion address is lost for good.
    #[arg(long)]
    purge: bool,
}

#[derive(Args, Debug)]
struct BuildArgs {
    /// Debian codename or suite name.
    #[arg(default_value = config::DEFAULT_SUITE)]
    suite: String,
    /// Directory to build in (default /srv/chroot/NAME; an empty mount point is built in place);
    /// a name ending in .tar, .tar.gz, .tgz, .tar.xz or .tar.zst that is not an existing
    /// directory, or `-` for standard output (a file or pipe), writes a tarball instead;
    /// .squashfs or .sqfs a squashfs image (needs mksquashfs), .ext4 an ext4 image (needs
    /// mke2fs), .oci an OCI image archive.
    target: Option<PathBuf>,
    /// Mirror URL (http://, https:// or file://); overrides --mirror.
    #[arg(value_name = "MIRROR")]
    mirror_arg: Option<String>,

    /// Mirror URL, used when no MIRROR argument is given [env: DEBSTRAP_MIRROR; default: the
    /// host's apt sources].
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
    /// Name of the chroot, its schroot entry and its onion service.
    #[arg(long, default_value = config::DEFAULT_NAME)]
    name: String,
    /// Package set, as debootstrap defines it.
    #[arg(long, value_enum, default_value_t = VariantArg::Minbase)]
    variant: VariantArg,
    /// Also install these packages (comma-separated; repeatable).
    #[arg(long, value_name = "PKG[,PKG...]", value_delimiter = ',')]
    include: Vec<String>,
    /// Leave these packages out of the variant's seed set (comma-separated; repeatable).
    #[arg(long, value_name = "PKG[,PKG...]", value_delimiter = ',')]
    exclude: Vec<String>,
    /// Archive components to use (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "main")]
    components: Vec<String>,
    /// Debian architecture of the root [default: the host's]; further architectures after a
    /// comma become dpkg foreign architectures, whose packages --include PKG:ARCH installs.
    #[arg(long, value_name = "ARCH[,ARCH...]", value_delimiter = ',')]
    arch: Vec<String>,
    /// Trust exactly the keys in this keyring (binary or armored; repeatable) instead of the
    /// built-in Debian archive keys.
    #[arg(long, value_name = "FILE")]
    keyring: Vec<PathBuf>,
    /// Where verified .debs and indices are kept between builds [default:
    /// /var/cache/debstrap-onion as root, else $XDG_CACHE_HOME/debstrap-onion or
    /// ~/.cache/debstrap-onion].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// How the build gets root's powers: `root` needs sudo; `unshare` runs as a normal user in a
    /// new user namespace with the user's /etc/subuid and /etc/subgid ranges (needs newuidmap
    /// from Debian's uidmap package); `auto` is root as root, else unshare.
    #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
    mode: ModeArg,
    /// Resolve, print one `NAME VERSION` line per package and exit without touching TARGET.
    #[arg(long, conflicts_with = "download_only")]
    print_packages: bool,
    /// Stop once every .deb is verified in the cache.
    #[arg(long)]
    download_only: bool,
    /// Build the base system only: no nginx, no onion service (a debootstrap replacement).
    #[arg(long)]
    no_onion: bool,
    /// Accept a Release whose Valid-Until has passed (for snapshot archives).
    #[arg(long)]
    ignore_valid_until: bool,
    /// Replace an existing non-empty TARGET directory.
    #[arg(long)]
    force: bool,
    /// Clamp timestamps to this time and drop volatile files, for reproducible output.
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    source_date_epoch: Option<i64>,
    /// Write a directory TARGET as an OCI image layout instead of a root (`oci`).
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<FormatArg>,
    /// Also write an SPDX 2.3 JSON bill of materials of the installed packages to FILE (OCI
    /// images always carry one).
    #[arg(long, value_name = "FILE")]
    sbom: Option<PathBuf>,

    /// User created in the chroot (if missing) and let into it by schroot, as an ordinary user.
    #[arg(long, help_heading = "Onion service")]
    user: Option<String>,
    /// Also let --user run commands as root in the chroot (schroot's root-users=); root there
    /// can stop nginx, change the site and read the chroot's secrets.
    #[arg(long, requires = "user", help_heading = "Onion service")]
    user_root: bool,
    /// Directory copied to the web root [default: a generated index.html].
    #[arg(long, value_name = "DIR", help_heading = "Onion service")]
    site: Option<PathBuf>,
    /// The onion service's virtual port.
    #[arg(long, default_value = "80", value_parser = port, help_heading = "Onion service")]
    onion_port: NonZeroU16,
    /// Listen on 127.0.0.1:PORT (TCP) instead of the unix socket in the chroot that only tor
    /// and nginx can use: any local user can then reach the site.
    #[arg(long, value_name = "PORT", value_parser = port, help_heading = "Onion service")]
    local_port: Option<NonZeroU16>,
    /// Where host-side files (torrc, /var/lib/tor, schroot) are written, like DESTDIR; paths
    /// inside them stay as seen from / [default: / for a directory TARGET; for a tarball,
    /// /var/lib/debstrap-onion/host inside the image, leaving the host alone].
    #[arg(long, value_name = "DIR", help_heading = "Onion service")]
    host_root: Option<PathBuf>,
    /// Import an existing onion service key directory instead of generating a key.
    #[arg(long, value_name = "DIR", help_heading = "Onion service")]
    onion_key: Option<PathBuf>,
    /// Only this client may reach the service (repeatable): an x25519 key pair per client, the
    /// client's .auth_private line written 0600 under /var/lib/debstrap-onion/clients/NAME/.
    #[arg(long, value_name = "CLIENT", help_heading = "Onion service")]
    auth_client: Vec<String>,
    /// Enable the service's systemd unit (debstrap-onion-NAME.service), so it starts at boot.
    /// The unit runs the chroot's nginx in systemd's sandbox and needs no debstrap-onion
    /// program on the host that runs it.
    #[arg(long, help_heading = "Onion service")]
    enable: bool,

    /// Run COMMAND (or a special form: copy-in, tar-in, upload, sync-in, ...) on the empty root,
    /// before anything is unpacked; $1 is the root (repeatable).
    #[arg(long, value_name = "COMMAND", help_heading = "Hooks (as mmdebstrap's)")]
    setup_hook: Vec<String>,
    /// Run COMMAND once every package is unpacked, before configuration (repeatable).
    #[arg(long, value_name = "COMMAND", help_heading = "Hooks (as mmdebstrap's)")]
    extract_hook: Vec<String>,
    /// Run COMMAND once the essential packages are configured, before the others (repeatable).
    #[arg(long, value_name = "COMMAND", help_heading = "Hooks (as mmdebstrap's)")]
    essential_hook: Vec<String>,
    /// Run COMMAND at the end, before the onion service and the output (repeatable).
    #[arg(long, value_name = "COMMAND", help_heading = "Hooks (as mmdebstrap's)")]
    customize_hook: Vec<String>,
    /// Run the executables in DIR named setup*, extract*, essential* and customize* at their
    /// points, in name order, where this option stands among the hook options (repeatable).
    #[arg(
        long,
        visible_alias = "hook-dir",
        value_name = "DIR",
        help_heading = "Hooks (as mmdebstrap's)"
    )]
    hook_directory: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModeArg {
    /// As root (sudo).
    Root,
    /// As the calling user, in a user namespace.
    Unshare,
    /// root when run as root, else unshare.
    Auto,
}

impl From<ModeArg> for userns::Mode {
    fn from(m: ModeArg) -> userns::Mode {
        match m {
            ModeArg::Root => userns::Mode::Root,
            ModeArg::Unshare => userns::Mode::Unshare,
            ModeArg::Auto => userns::Mode::Auto,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    /// An OCI image layout (a directory TARGET) or archive (an .oci TARGET).
    Oci,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum VariantArg {
    /// Only --include packages and their dependencies, unpacked, never configured.
    Extract,
    /// Essential: yes packages.
    Essential,
    /// Priority: required packages and apt.
    Minbase,
    /// minbase and build-essential.
    Buildd,
    /// Priority: required and important packages.
    Important,
}

impl From<VariantArg> for Variant {
    fn from(v: VariantArg) -> Variant {
        match v {
            VariantArg::Extract => Variant::Extract,
            VariantArg::Essential => Variant::Essential,
            VariantArg::Minbase => Variant::Minbase,
            VariantArg::Buildd => Variant::Buildd,
            VariantArg::Important => Variant::Important,
        }
    }
}

/// glibc gives each thread that allocates its own arena (up to eight per core) and trims none
/// of them well: after the downloads and the unpacking, freed memory scattered over five arenas
/// kept the build at 45 MB while dpkg ran beside it (16 MB with one arena). Two arenas keep
/// the two unpacking threads from queueing on one lock. Set before any thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before any other thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    // The keeper of a rootless build's namespaces does nothing else.
    if let Some(code) = userns::keeper() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let matches = Cli::command().get_matches();
    let cli =
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Cli::command()).exit());
    let progress = Progress::new(cli.quiet, cli.verbose);
    match cli.command {
        Command::Build(args) => {
            let hook_args = matches
                .subcommand_matches("build")
                .map(hook_args)
                .unwrap_or_default();
            run_build(*args, &hook_args, &progress)
        }
        Command::Start(args) => service(&progress, || onion::start(&args.name, &args.host_root)),
        Command::Stop(args) => service(&progress, || onion::stop(&args.name, &args.host_root)),
        Command::Status(args) => {
            let mut answering = false;
            let code = service(&progress, || {
                let report = onion::status(&args.name, &args.host_root)?;
                answering = report.http_status.is_some();
                Ok(report)
            });
            if code == ExitCode::SUCCESS && !answering {
                ExitCode::from(EXIT_NOT_RUNNING)
            } else {
                code
            }
        }
        Command::RotateLogs(args) => service(&progress, || {
            onion::rotate_logs(&args.name, &args.host_root)
        }),
        Command::Enable(args) => service(&progress, || {
            onion::enable(&args.host_root, &args.name).map(|link| {
                format!(
                    "enabled: {} (run `systemctl daemon-reload` on that host)",
                    link.display()
                )
            })
        }),
        Command::List(args) => service(&progress, || {
            let services = onion::list(&args.host_root);
            let lines: Vec<String> = services.iter().map(ToString::to_string).collect();
            Ok(lines.join("\n"))
        }),
        Command::Remove(args) => service(&progress, || {
            let ServiceArgs { name, host_root } = &args.service;
            onion::remove(name, host_root, args.purge)
        }),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "debstrap-onion",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man => {
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(
                    &progress,
                    &anyhow::Error::new(err).context("cannot write the manual page"),
                    EXIT_FAILURE,
                ),
            }
        }
    }
}

/// Runs a start / stop / status command and prints its report.
fn service<R: std::fmt::Display>(
    progress: &Progress,
    command: impl FnOnce() -> Result<R, onion::OnionError>,
) -> ExitCode {
    if !rustix::process::geteuid().is_root() {
        let err = anyhow::anyhow!("this command chroots and mounts: run it as root (sudo)");
        return fail(progress, &err, EXIT_USAGE);
    }
    match command() {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => fail(progress, &anyhow::Error::new(err), EXIT_FAILURE),
    }
}

fn run_build(args: BuildArgs, hook_args: &[HookArg], progress: &Progress) -> ExitCode {
    let mode = args.mode.into();
    let config = match build_config(args, hook_args, progress.verbosity) {
        Ok(config) => config,
        Err(err) => return fail(progress, &err, EXIT_USAGE),
    };
    // Printing and downloading need no privileges and run where they are.
    if config.stop_after == StopAfter::Complete {
        match userns::plan(mode) {
            Ok(userns::Plan::AsRoot | userns::Plan::Inside) => {}
            Ok(userns::Plan::Unshare(ids)) => {
                if let Err(err) = config.check_rootless() {
                    return fail(progress, &anyhow::Error::new(err), EXIT_USAGE);
                }
                // Judged with the host's ids, which the namespace no longer shows.
                if let Err(err) = debstrap_onion::check_place(&config) {
                    return fail(progress, &anyhow::Error::new(err), EXIT_FAILURE);
                }
                return match userns::run_unshared(&ids) {
                    Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                    Err(err) => fail(progress, &anyhow::Error::new(err), EXIT_FAILURE),
                };
            }
            Err(err) => return fail(progress, &anyhow::Error::new(err), EXIT_USAGE),
        }
    }
    // Modes of what the build and maintainer scripts create follow the umask: Debian's tools
    // expect 022 (debootstrap and mmdebstrap set it too), and the root must not carry the
    // caller's (umask 077 made var/lib/dpkg/triggers 0700 and changed the tarball's bytes).
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o022));
    install_signal_handlers();
    match debstrap_onion::build(&config, progress) {
        Ok(report) => {
            progress.clear();
            print_report(&config, &report, progress);
            ExitCode::SUCCESS
        }
        Err(err) => {
            let interrupted = debstrap_onion::cancel::is_requested();
            let err = anyhow::Error::new(err);
            fail(
                progress,
                &err,
                if interrupted {
                    EXIT_INTERRUPTED
                } else {
                    EXIT_FAILURE
                },
            )
        }
    }
}

fn build_config(
    args: BuildArgs,
    hook_args: &[HookArg],
    verbosity: u8,
) -> anyhow::Result<BuildConfig> {
    let hooks = hooks(hook_args, verbosity)?;
    let env_mirror = std::env::var("DEBSTRAP_MIRROR").ok();
    let explicit = args.mirror_arg.as_deref().or(args.mirror.as_deref());
    let mirror = config::discover_mirror(
        explicit,
        env_mirror.as_deref(),
        std::path::Path::new("/etc/apt"),
    )?;
    let mut config = BuildConfig::new(args.suite, mirror);
    config.name = args.name;
    config.output = match args.target {
        Some(target) => Output::from_target(&target)?,
        None => Output::Directory(PathBuf::from(config::DEFAULT_CHROOT_PARENT).join(&config.name)),
    };
    if let Some(FormatArg::Oci) = args.format {
        config.output = config.output.as_oci()?;
    }
    config.sbom = args.sbom;
    config.variant = args.variant.into();
    config.include = args.include.into_iter().filter(|s| !s.is_empty()).collect();
    config.exclude = args.exclude.into_iter().filter(|s| !s.is_empty()).collect();
    config.components = config::unique_components(args.components);
    let mut archs = args.arch.into_iter().filter(|s| !s.is_empty());
    config.arch = match archs.next() {
        Some(arch) => arch,
        None => config::host_arch()?,
    };
    config.foreign_archs = archs.collect();
    config.keyrings = args.keyring;
    config.cache_dir = args.cache_dir.unwrap_or_else(config::default_cache_dir);
    config.stop_after = if args.print_packages {
        StopAfter::PrintPackages
    } else if args.download_only {
        StopAfter::DownloadOnly
    } else {
        StopAfter::Complete
    };
    config.publish_onion = !args.no_onion;
    config.ignore_valid_until = args.ignore_valid_until;
    config.force = args.force;
    config.source_date_epoch = args.source_date_epoch;
    config.onion = OnionConfig {
        user: args.user,
        user_root: args.user_root,
        site: args.site,
        onion_port: args.onion_port,
        local_port: args.local_port,
        host_root: args.host_root,
        onion_key: args.onion_key,
        auth_clients: args.auth_client,
        enable: args.enable,
    };
    config.hooks = hooks;
    config.validate()?;
    Ok(config)
}

/// One hook option as given on the command line.
#[derive(Debug, Clone)]
enum HookArg {
    /// `--setup-hook` and the like: a point and its command (or special form).
    Hook(HookPoint, String),
    /// `--hook-directory`.
    Directory(PathBuf),
}

/// The hook options of `build` in command-line order (clap keeps each option's values apart,
/// their indices put them back in order).
fn hook_args(matches: &clap::ArgMatches) -> Vec<HookArg> {
    let mut placed: Vec<(usize, HookArg)> = Vec::new();
    for (id, point) in [
        ("setup_hook", HookPoint::Setup),
        ("extract_hook", HookPoint::Extract),
        ("essential_hook", HookPoint::Essential),
        ("customize_hook", HookPoint::Customize),
    ] {
        if let (Some(values), Some(indices)) =
            (matches.get_many::<String>(id), matches.indices_of(id))
        {
            for (text, index) in values.zip(indices) {
                placed.push((index, HookArg::Hook(point, text.clone())));
            }
        }
    }
    // A directory's name is kept as given: its scripts run by that path, as mmdebstrap's do.
    if let (Some(values), Some(indices)) = (
        matches.get_many::<PathBuf>("hook_directory"),
        matches.indices_of("hook_directory"),
    ) {
        for (dir, index) in values.zip(indices) {
            placed.push((index, HookArg::Directory(dir.clone())));
        }
    }
    placed.sort_by_key(|(index, _)| *index);
    placed.into_iter().map(|(_, arg)| arg).collect()
}

/// The hooks, read as mmdebstrap reads its options: in command-line order, each
/// `--hook-directory` adding its scripts (in name order, point by point) where it stands among
/// the hook options; each point then runs its hooks in that order.
fn hooks(args: &[HookArg], verbosity: u8) -> anyhow::Result<Hooks> {
    let mut hooks = Hooks {
        list: Vec::new(),
        verbosity,
    };
    for arg in args {
        match arg {
            HookArg::Hook(point, text) => hooks.list.push((*point, Hook::parse(text)?)),
            HookArg::Directory(dir) => hooks.add_directory(dir)?,
        }
    }
    Ok(hooks)
}

/// A TCP port: 1 to 65535.
fn port(text: &str) -> Result<NonZeroU16, String> {
    text.parse::<NonZeroU16>()
        .map_err(|_| format!("{text:?} is not a port: give a port between 1 and 65535"))
}

/// SIGINT and SIGTERM ask the build to stop at its next check; a second one ends at once.
fn install_signal_handlers() {
    extern "C" fn on_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
        if debstrap_onion::cancel::is_requested() {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(EXIT_INTERRUPTED as i32) };
        }
        debstrap_onion::cancel::request();
    }
    // SAFETY: the handler only touches an atomic flag and calls _exit, both signal-safe.
    if let Err(err) =
        unsafe { debstrap_onion::sys::handle_signals(&[libc::SIGINT, libc::SIGTERM], on_signal) }
    {
        tracing::warn!("cannot handle SIGINT and SIGTERM: {err}");
    }
}
