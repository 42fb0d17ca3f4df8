//! Helpers shared by the integration tests; each test binary uses only part of them.
#![allow(dead_code)]

pub mod deb;
pub mod front;
pub mod host;
pub mod image;
pub mod repo;
pub mod rootless;
pub mod server;
pub mod sign;
pub mod skip;
pub mod strict;
pub mod sys;
pub mod tor;
pub mod tree;

/// The host's dpkg architecture (`dpkg --print-architecture`, or the one this tool derives
/// when the host has no dpkg): offline fixtures are built for it, so the suite does not assume
/// amd64 and the build's native-architecture check passes on any host.
pub fn native_arch() -> String {
    static ARCH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ARCH.get_or_init(|| {
        std::process::Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|arch| arch.trim().to_string())
            .filter(|arch| !arch.is_empty())
            .unwrap_or_else(|| {
                debstrap_onion::config::host_arch().expect("a host architecture this tool knows")
            })
    })
    .clone()
}

/// The multiarch library directory name of the host (`lib/TUPLE`), for fixtures that ship
/// into it.
pub fn multiarch_tuple() -> &'static str {
    match native_arch().as_str() {
        "amd64" => "x86_64-linux-gnu",
        "arm64" => "aarch64-linux-gnu",
        "i386" => "i386-linux-gnu",
        "armhf" => "arm-linux-gnueabihf",
        "armel" => "arm-linux-gnueabi",
        "ppc64el" => "powerpc64le-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        "loong64" => "loongarch64-linux-gnu",
        _ => "unknown-linux-gnu",
    }
}
