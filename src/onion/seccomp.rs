//! The system-call filter of nginx started without systemd: takes nothing; gives a seccomp BPF
//! program that makes a short list of calls nginx never makes fail with EPERM (tracing other
//! processes, mounts and namespaces, chroot, kernel modules and kexec, BPF, the kernel keyring,
//! swap, reboot, clocks, host names), and every call of another ABI than the native one (x32 or
//! i386 on amd64), as systemd's `SystemCallArchitectures=native` does.
//!
//! A deny list rather than systemd's `@system-service` allow list: it is a few lines to keep
//! true, and what it leaves open is what nginx's master already needs. The unit uses systemd's
//! filter instead (see `unit.rs`).

/// The calls refused. Each exists on every architecture Debian releases for (kexec_file_load is
/// missing on 32-bit arm and i386, hence its own list).
const DENIED: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_open_by_handle_at,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
];

#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "powerpc64",
    target_arch = "s390x",
    target_arch = "riscv64"
))]
const DENIED_64: &[libc::c_long] = &[libc::SYS_kexec_file_load];
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "powerpc64",
    target_arch = "s390x",
    target_arch = "riscv64"
)))]
const DENIED_64: &[libc::c_long] = &[];

/// The kernel's name of this architecture in `seccomp_data.arch` (linux/audit.h).
#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "x86")]
const NATIVE_ARCH: u32 = 0x4000_0003;
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 0xC000_00B7;
#[cfg(target_arch = "arm")]
const NATIVE_ARCH: u32 = 0x4000_0028;
#[cfg(target_arch = "riscv64")]
const NATIVE_ARCH: u32 = 0xC000_00F3;
#[cfg(all(target_arch = "powerpc64", target_endian = "little"))]
const NATIVE_ARCH: u32 = 0xC000_0015;
#[cfg(all(target_arch = "powerpc64", target_endian = "big"))]
const NATIVE_ARCH: u32 = 0x8000_0015;
#[cfg(target_arch = "s390x")]
const NATIVE_ARCH: u32 = 0x8000_0016;

/// On amd64, x32 calls carry the native arch with this bit set in their number.
const X32_BIT: u32 = 0x4000_0000;

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

fn op(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf: 0, k }
}

/// The filter's program: a foreign ABI or a denied call returns EPERM, the rest is allowed.
pub(crate) fn program() -> Vec<libc::sock_filter> {
    let denied: Vec<u32> = DENIED
        .iter()
        .chain(DENIED_64)
        .map(|&nr| u32::try_from(nr).expect("system call numbers are small and positive"))
        .collect();
    let deny = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let mut prog = vec![
        op(LD_W_ABS, ARCH_OFFSET),
        // Native: skip the refusal that follows.
        libc::sock_filter {
            code: JEQ_K,
            jt: 1,
            jf: 0,
            k: NATIVE_ARCH,
        },
        op(RET_K, deny),
        op(LD_W_ABS, NR_OFFSET),
    ];
    // Each check jumps to the refusal at the end: after it come the remaining checks, the
    // allow, then the refusal.
    let checks = denied.len() + usize::from(cfg!(target_arch = "x86_64"));
    let mut left = checks;
    let mut to_deny = || {
        left -= 1;
        u8::try_from(left + 1).expect("fewer than 255 checks")
    };
    if cfg!(target_arch = "x86_64") {
        prog.push(jump(JGE_K, X32_BIT, to_deny()));
    }
    for nr in denied {
        prog.push(jump(JEQ_K, nr, to_deny()));
    }
    prog.push(op(RET_K, libc::SECCOMP_RET_ALLOW));
    prog.push(op(RET_K, deny));
    prog
}

/// Installs `prog` on the calling thread, inherited by what it executes and forks. Called
/// between fork and exec, after no_new_privs is set: it only makes one system call.
pub(crate) fn install(prog: &[libc::sock_filter]) -> std::io::Result<()> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).expect("a short program"),
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel copies the program.
    let done = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &fprog as *const libc::sock_fprog as libc::c_ulong,
            0,
            0,
        )
    };
    if done != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt as _;
    use std::process::Command;

    /// Runs `program` with `args` under the filter (with no_new_privs, as `start` sets it).
    fn run_filtered(program: &str, args: &[&str]) -> std::process::Output {
        let prog = super::program();
        let mut cmd = Command::new(program);
        cmd.args(args);
        // SAFETY: prctl calls only, on a program built before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                install(&prog)
            });
        }
        cmd.output().expect("run the program")
    }

    #[test]
    fn every_jump_lands_on_the_refusal() {
        let prog = program();
        let deny = prog.len() - 1;
        for (at, insn) in prog.iter().enumerate().skip(4) {
            if insn.code == JEQ_K || insn.code == JGE_K {
                assert_eq!(at + 1 + usize::from(insn.jt), deny, "instruction {at}");
            }
        }
        assert_eq!(prog[deny].k, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32);
        assert_eq!(prog[deny - 1].k, libc::SECCOMP_RET_ALLOW);
    }

    /// A real program under the filter: `unshare` (util-linux) gets EPERM for unshare(2), which
    /// the same program without the filter is allowed (a user namespace needs no privilege
    /// here); `true` still runs.
    #[test]
    fn a_real_program_under_the_filter_gets_eperm() {
        let allowed = Command::new("unshare")
            .args(["--user", "true"])
            .output()
            .expect("unshare (util-linux)");
        assert!(
            allowed.status.success(),
            "without the filter unshare --user must work for this test to show anything: {allowed:?}"
        );
        let refused = run_filtered("unshare", &["--user", "true"]);
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "unshare ran: {said}");
        assert!(said.contains("Operation not permitted"), "{said}");
        let fine = run_filtered("true", &[]);
        assert!(fine.status.success(), "{fine:?}");
    }
}
