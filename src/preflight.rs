//! Whether this host can run the root's programs, checked before anything is downloaded: the
//! target architecture and the host's, and for a foreign architecture the kernel's binfmt_misc
//! handlers. Gives how the root's programs will run ([`Runs`]), or one error that names the
//! Debian package to install and the command that enables it.
//!
//! The build never copies a host interpreter into the root: a handler with the `F` flag (the
//! kernel opened its interpreter when it was registered, as qemu-user-static's are) works in
//! any chroot; one without it works only when the root itself holds the interpreter, which
//! [`check_root`] checks once the packages are unpacked.

use std::path::{Path, PathBuf};

/// Where the kernel's binfmt_misc handlers are listed.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// Why the root's programs cannot run on this host.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "cannot run {arch} programs on this {host} host: binfmt_misc is not mounted ({dir}/status \
         is missing); mount it with `mount -t binfmt_misc binfmt_misc {dir}`, install Debian's \
         qemu-user-static and run `update-binfmts --enable {handler}`"
    )]
    NotMounted {
        arch: String,
        host: String,
        dir: PathBuf,
        handler: String,
    },
    #[error(
        "cannot run {arch} programs on this {host} host: binfmt_misc is disabled ({dir}/status); \
         enable it with `echo 1 > {dir}/status`, then `update-binfmts --enable {handler}`"
    )]
    Disabled {
        arch: String,
        host: String,
        dir: PathBuf,
        handler: String,
    },
    #[error(
        "cannot run {arch} programs on this {host} host: {dir} has no enabled handler for {arch} \
         ELF binaries; install Debian's qemu-user-static (or qemu-user-binfmt) and run \
         `update-binfmts --enable {handler}`"
    )]
    NoHandler {
        arch: String,
        host: String,
        dir: PathBuf,
        handler: String,
    },
    #[error(
        "cannot run {arch} programs in the root: the binfmt_misc handler {entry} has no F flag, \
         so its interpreter {interpreter} must be inside the root, and it is not; install \
         Debian's qemu-user-static, whose handlers have the F flag, and run \
         `update-binfmts --enable {handler}`"
    )]
    InterpreterOutsideRoot {
        arch: String,
        entry: PathBuf,
        interpreter: PathBuf,
        handler: String,
    },
    #[error(
        "cannot run {arch} programs on this {host} host, and cannot check for an emulator: \
         {arch} is not an architecture whose ELF signature debstrap-onion knows"
    )]
    UnknownMachine { arch: String, host: String },
    #[error("{path}: cannot read the binfmt_misc handlers")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How the root's programs will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runs {
    /// The host's CPU and kernel run them.
    Natively,
    /// A binfmt_misc handler runs them through `interpreter`.
    Emulated {
        /// The handler's file under the binfmt_misc directory.
        entry: PathBuf,
        interpreter: PathBuf,
        /// Whether the kernel holds the interpreter open (flag `F`); otherwise the interpreter
        /// is looked up inside the root when a program starts.
        fixed: bool,
    },
}

/// Checks that programs of `arch` can run on a `host` machine, reading the handlers under
/// `binfmt_dir` (normally [`BINFMT_DIR`]).
pub fn check(arch: &str, host: &str, binfmt_dir: &Path) -> Result<Runs, PreflightError> {
    if runs_natively(host, arch) {
        return Ok(Runs::Natively);
    }
    let Some(machine) = Machine::of(arch) else {
        return Err(PreflightError::UnknownMachine {
            arch: arch.to_string(),
            host: host.to_string(),
        });
    };
    let handler = format!("qemu-{}", machine.qemu);
    let status = binfmt_dir.join("status");
    let enabled = match fs_err::read_to_string(&status) {
        Ok(text) => text.trim() == "enabled",
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(PreflightError::NotMounted {
                arch: arch.to_string(),
                host: host.to_string(),
                dir: binfmt_dir.to_path_buf(),
                handler,
            })
        }
        Err(source) => {
            return Err(PreflightError::Read {
                path: status,
                source,
            })
        }
    };
    if !enabled {
        return Err(PreflightError::Disabled {
            arch: arch.to_string(),
            host: host.to_string(),
            dir: binfmt_dir.to_path_buf(),
            handler,
        });
    }
    let header = machine.elf_header();
    let mut found: Option<Runs> = None;
    for entry in handlers(binfmt_dir)? {
        let runs_both = [ElfType::Executable, ElfType::Shared]
            .iter()
            .all(|&kind| entry.matches(&header(kind)));
        if !entry.enabled || !runs_both {
            continue;
        }
        let runs = Runs::Emulated {
            entry: entry.path,
            interpreter: entry.interpreter,
            fixed: entry.fixed,
        };
        // A fixed handler is the one that needs nothing in the root: prefer it.
        if matches!(runs, Runs::Emulated { fixed: true, .. }) {
            return Ok(runs);
        }
        found.get_or_insert(runs);
    }
    found.ok_or(PreflightError::NoHandler {
        arch: arch.to_string(),
        host: host.to_string(),
        dir: binfmt_dir.to_path_buf(),
        handler,
    })
}

/// For a handler without the `F` flag, checks that its interpreter is inside `root` (the
/// kernel looks it up there when a program of the root starts).
pub fn check_root(runs: &Runs, arch: &str, root: &Path) -> Result<(), PreflightError> {
    let Runs::Emulated {
        entry,
        interpreter,
        fixed: false,
    } = runs
    else {
        return Ok(());
    };
    let inside = root.join(interpreter.strip_prefix("/").unwrap_or(interpreter));
    // symlink_metadata: a link in the root points into the root, never at the host's file.
    if fs_err::symlink_metadata(&inside).is_ok() {
        return Ok(());
    }
    Err(PreflightError::InterpreterOutsideRoot {
        arch: arch.to_string(),
        entry: entry.clone(),
        interpreter: interpreter.clone(),
        handler: Machine::of(arch).map_or_else(
            || "qemu-ARCH".to_string(),
            |machine| format!("qemu-{}", machine.qemu),
        ),
    })
}

/// Whether a `host` machine runs `arch` programs without help: its own architecture, and the
/// 32-bit architectures its kernel runs in compatibility mode.
fn runs_natively(host: &str, arch: &str) -> bool {
    match (host, arch) {
        _ if host == arch => true,
        ("amd64", "i386") => true,
        // Many arm64 CPUs have no AArch32 at all; the kernel refuses the 32-bit personality on
        // those (and on mixed systems), so asking for it tells.
        ("arm64", "armhf" | "armel") => kernel_runs_32_bit(),
        _ => false,
    }
}

/// Whether the kernel accepts the 32-bit personality (PER_LINUX32), asked from a short-lived
/// thread so that the build's own threads keep theirs.
fn kernel_runs_32_bit() -> bool {
    std::thread::spawn(|| {
        const PER_LINUX32: libc::c_ulong = 0x0008;
        // SAFETY: personality(2) changes only the calling thread's execution domain, and this
        // thread ends right after without running anything else.
        unsafe { libc::personality(PER_LINUX32) != -1 }
    })
    .join()
    .unwrap_or(false)
}

/// One handler under the binfmt_misc directory, as the kernel prints it.
#[derive(Debug)]
struct Handler {
    path: PathBuf,
    enabled: bool,
    interpreter: PathBuf,
    fixed: bool,
    offset: usize,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

impl Handler {
    /// Parses the kernel's listing of one handler; `None` for an extension handler or text
    /// that is not one.
    fn parse(path: PathBuf, text: &str) -> Option<Handler> {
        let mut lines = text.lines();
        let enabled = lines.next()? == "enabled";
        let (mut interpreter, mut fixed, mut offset, mut magic, mut mask) =
            (None, false, 0, None, None);
        for line in lines {
            if let Some(value) = line.strip_prefix("interpreter ") {
                interpreter = Some(PathBuf::from(value));
            } else if let Some(value) = line.strip_prefix("flags:") {
                fixed = value.trim().contains('F');
            } else if let Some(value) = line.strip_prefix("offset ") {
                offset = value.trim().parse().ok()?;
            } else if let Some(value) = line.strip_prefix("magic ") {
                magic = Some(hex(value.trim())?);
            } else if let Some(value) = line.strip_prefix("mask ") {
                mask = Some(hex(value.trim())?);
            }
        }
        let magic = magic?;
        let mask = mask.unwrap_or_else(|| vec![0xff; magic.len()]);
        Some(Handler {
            path,
            enabled,
            interpreter: interpreter?,
            fixed,
            offset,
            magic,
            mask,
        })
    }

    /// Whether the kernel would hand a file starting with `header` to this handler.
    fn matches(&self, header: &[u8]) -> bool {
        let Some(bytes) = header.get(self.offset..self.offset + self.magic.len()) else {
            return false;
        };
        bytes
            .iter()
            .zip(&self.magic)
            .zip(self.mask.iter().chain(std::iter::repeat(&0xff)))
            .all(|((byte, magic), mask)| byte & mask == magic & mask)
    }
}

/// Every handler listed under `dir` (not `register` and `status`).
fn handlers(dir: &Path) -> Result<Vec<Handler>, PreflightError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PreflightError::Read { path, source }
    };
    let mut handlers = Vec::new();
    for entry in fs_err::read_dir(dir).map_err(read_err(dir))? {
        let path = entry.map_err(read_err(dir))?.path();
        if path
            .file_name()
            .is_some_and(|n| n == "register" || n == "status")
        {
            continue;
        }
        // A handler removed while the directory is read is simply not there.
        let Ok(text) = fs_err::read_to_string(&path) else {
            continue;
        };
        handlers.extend(Handler::parse(path, &text));
    }
    handlers.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(handlers)
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum ElfType {
    /// ET_EXEC
    Executable = 2,
    /// ET_DYN: shared objects and position-independent executables.
    Shared = 3,
}

/// What an architecture's ELF header says, and the name qemu gives the architecture.
#[derive(Debug, Clone, Copy)]
struct Machine {
    bits64: bool,
    big_endian: bool,
    e_machine: u16,
    qemu: &'static str,
}

impl Machine {
    /// Debian's architectures (release and ports) by the ELF header their programs carry.
    fn of(arch: &str) -> Option<Machine> {
        let (bits64, big_endian, e_machine, qemu) = match arch {
            "amd64" => (true, false, 62, "x86_64"),
            "i386" => (false, false, 3, "i386"),
            "arm64" => (true, false, 183, "aarch64"),
            "armhf" | "armel" => (false, false, 40, "arm"),
            "ppc64el" => (true, false, 21, "ppc64le"),
            "ppc64" => (true, true, 21, "ppc64"),
            "powerpc" => (false, true, 20, "ppc"),
            "riscv64" => (true, false, 243, "riscv64"),
            "s390x" => (true, true, 22, "s390x"),
            "mips64el" => (true, false, 8, "mips64el"),
            "mipsel" => (false, false, 8, "mipsel"),
            "loong64" => (true, false, 258, "loongarch64"),
            "alpha" => (true, false, 0x9026, "alpha"),
            "hppa" => (false, true, 15, "hppa"),
            "m68k" => (false, true, 4, "m68k"),
            "sh4" => (false, false, 42, "sh4"),
            "sparc64" => (true, true, 43, "sparc64"),
            _ => return None,
        };
        Some(Machine {
            bits64,
            big_endian,
            e_machine,
            qemu,
        })
    }

    /// The first 64 bytes of a program of this machine (the rest of the header zero).
    fn elf_header(self) -> impl Fn(ElfType) -> [u8; 64] {
        move |kind| {
            let mut header = [0u8; 64];
            header[..4].copy_from_slice(b"\x7fELF");
            header[4] = if self.bits64 { 2 } else { 1 };
            header[5] = if self.big_endian { 2 } else { 1 };
            header[6] = 1; // EI_VERSION
            let half = |value: u16| {
                if self.big_endian {
                    value.to_be_bytes()
                } else {
                    value.to_le_bytes()
                }
            };
            header[16..18].copy_from_slice(&half(kind as u16));
            header[18..20].copy_from_slice(&half(self.e_machine));
            header
        }
    }
}

#[cfg(test)]
// Tests state their expectations with unwrap(); a panic there is the failure report.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// qemu-user-static's handlers as Debian registers them (copied from a host's listing).
    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n\
        flags: PF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";
    const ARM: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/arm-binfmt-P\nflags: PF\n\
        offset 0\nmagic 7f454c4601010100000000000000000002002800\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";
    const S390X: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/s390x-binfmt-P\n\
        flags: PF\noffset 0\nmagic 7f454c4602020100000000000000000000020016\n\
        mask fffffffffffffffcfffffffffffffffffffeffff\n";
    const MIPSEL: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/mipsel-binfmt-P\n\
        flags: PF\noffset 0\n\
        magic 7f454c46010101000000000000000000020008000000000000000000000000000000000000\n\
        mask ffffffffffffff00fefffffffffffffffeffffff0000000000000000000000000000000020\n";
    const JAR: &str = "enabled\ninterpreter /usr/bin/jexec\nflags: \noffset 0\nmagic 504b0304\n";

    fn binfmt(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("status"), "enabled\n").unwrap();
        fs_err::write(dir.path().join("register"), "").unwrap();
        for (name, text) in entries {
            fs_err::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn qemu_handlers_match_the_architectures_they_emulate() {
        let dir = binfmt(&[
            ("qemu-aarch64", AARCH64),
            ("qemu-arm", ARM),
            ("qemu-s390x", S390X),
            ("qemu-mipsel", MIPSEL),
            ("jar", JAR),
        ]);
        for (arch, entry) in [
            ("arm64", "qemu-aarch64"),
            ("armhf", "qemu-arm"),
            ("armel", "qemu-arm"),
            ("s390x", "qemu-s390x"),
            ("mipsel", "qemu-mipsel"),
        ] {
            assert_eq!(
                check(arch, "riscv64", dir.path()).unwrap(),
                Runs::Emulated {
                    entry: dir.path().join(entry),
                    interpreter: PathBuf::from(format!(
                        "/usr/libexec/qemu-binfmt/{}-binfmt-P",
                        entry.trim_start_matches("qemu-")
                    )),
                    fixed: true,
                },
                "{arch}"
            );
        }
        for arch in ["ppc64el", "i386", "amd64"] {
            let err = check(arch, "riscv64", dir.path()).unwrap_err();
            assert!(
                matches!(err, PreflightError::NoHandler { .. }),
                "{arch}: {err}"
            );
        }
    }

    #[test]
    fn a_missing_handler_names_the_package_and_the_command() {
        let dir = binfmt(&[("qemu-arm", ARM), ("jar", JAR)]);
        let err = check("arm64", "amd64", dir.path()).unwrap_err().to_string();
        assert!(err.contains("qemu-user-static"), "{err}");
        assert!(
            err.contains("`update-binfmts --enable qemu-aarch64`"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn a_disabled_handler_or_binfmt_misc_does_not_count() {
        let dir = binfmt(&[("qemu-aarch64", &AARCH64.replacen("enabled", "disabled", 1))]);
        let err = check("arm64", "amd64", dir.path()).unwrap_err();
        assert!(matches!(err, PreflightError::NoHandler { .. }), "{err}");

        let dir = binfmt(&[("qemu-aarch64", AARCH64)]);
        fs_err::write(dir.path().join("status"), "disabled\n").unwrap();
        let err = check("arm64", "amd64", dir.path()).unwrap_err();
        assert!(matches!(err, PreflightError::Disabled { .. }), "{err}");

        let empty = tempfile::tempdir().unwrap();
        let err = check("arm64", "amd64", empty.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("mount -t binfmt_misc"), "{err}");
    }

    #[test]
    fn native_and_compatible_architectures_need_no_handler() {
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            check("amd64", "amd64", empty.path()).unwrap(),
            Runs::Natively
        );
        assert_eq!(
            check("i386", "amd64", empty.path()).unwrap(),
            Runs::Natively
        );
        let err = check("amd64", "i386", empty.path()).unwrap_err();
        assert!(matches!(err, PreflightError::NotMounted { .. }), "{err}");
    }

    #[test]
    fn an_unfixed_handler_needs_its_interpreter_in_the_root() {
        let unfixed = "enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: \noffset 0\n\
            magic 7f454c460201010000000000000000000200b700\n\
            mask ffffffffffffff00fffffffffffffffffeffffff\n";
        let dir = binfmt(&[("qemu-aarch64", unfixed)]);
        let runs = check("arm64", "amd64", dir.path()).unwrap();
        assert!(
            matches!(runs, Runs::Emulated { fixed: false, .. }),
            "{runs:?}"
        );
        let root = tempfile::tempdir().unwrap();
        let err = check_root(&runs, "arm64", root.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("/usr/bin/qemu-aarch64"), "{err}");
        fs_err::create_dir_all(root.path().join("usr/bin")).unwrap();
        fs_err::write(root.path().join("usr/bin/qemu-aarch64"), "").unwrap();
        check_root(&runs, "arm64", root.path()).unwrap();
    }
}
