//! Generates the list of built-in archive keyrings from the `*.gpg` files in `keyrings/`, so
//! adding or refreshing a keyring (scripts/refresh-keyrings.sh) needs no edit to the code.

#![allow(clippy::disallowed_methods)] // build scripts panic with the path in the message; fs-err is not a build dependency

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("keyrings");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".gpg"))
        .collect();
    assert!(
        !names.is_empty(),
        "{} holds no *.gpg keyring",
        dir.display()
    );
    // Sorted, so the binary does not depend on the order the filesystem lists them in.
    names.sort();
    let mut list = String::from("&[\n");
    for name in &names {
        println!("cargo:rerun-if-changed={}", dir.join(name).display());
        writeln!(
            list,
            "    ({name:?}, include_bytes!({path:?}) as &[u8]),",
            path = dir.join(name)
        )
        .expect("writing to a String cannot fail");
    }
    list.push(']');
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("builtin_keyrings.rs");
    std::fs::write(&out, list).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
