//! Hooks against the real archive, as root: two recipes from mmdebstrap's manual page (add a
//! user and set the hostname; copy a file in and a log out), plus a mark at every hook point,
//! given unchanged to mmdebstrap and to us in one trixie minbase build each; the files the hooks
//! made or changed, in the roots and outside them, must be the same.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::host::{host_mirror, require_program, require_root};

/// The hook options, with `{out}` standing for a directory outside the root and `{motd}` for a
/// file copied in.
const HOOKS: &[(&str, &str)] = &[
    (
        "--setup-hook",
        r#"echo "$MMDEBSTRAP_HOOK $MMDEBSTRAP_MODE" > "$1/setup-ran""#,
    ),
    (
        "--extract-hook",
        r#"echo "$MMDEBSTRAP_HOOK" > "$1/extract-ran""#,
    ),
    (
        "--essential-hook",
        r#"echo "$MMDEBSTRAP_HOOK" > "$1/essential-ran""#,
    ),
    // Recipe 1: the manual's autopkgtest example.
    ("--customize-hook", r#"chroot "$1" passwd --delete root"#),
    (
        "--customize-hook",
        r#"chroot "$1" useradd --home-dir /home/user --create-home user"#,
    ),
    ("--customize-hook", r#"chroot "$1" passwd --delete user"#),
    ("--customize-hook", r#"echo host > "$1/etc/hostname""#),
    (
        "--customize-hook",
        r#"echo "127.0.0.1 localhost host" > "$1/etc/hosts""#,
    ),
    // Recipe 2: a file in, a log and a tree out.
    ("--customize-hook", "copy-in {motd} /etc"),
    (
        "--customize-hook",
        r#"chroot "$1" sh -c 'id user; cat /etc/motd-hook' > "$1/var/log/user.log""#,
    ),
    (
        "--customize-hook",
        "copy-out /var/log/user.log /home/user {out}",
    ),
    ("--customize-hook", "download /etc/hostname {out}/hostname"),
];

fn hook_args(out: &Path, motd: &Path) -> Vec<String> {
    HOOKS
        .iter()
        .map(|(option, text)| {
            let text = text
                .replace("{out}", &out.display().to_string())
                .replace("{motd}", &motd.display().to_string());
            format!("{option}={text}")
        })
        .collect()
}

/// The lines of a passwd-style file that are about `user` or `root`, with shadow's day of the
/// last change (volatile: the day the build ran) blanked.
fn entries(path: &Path) -> Vec<String> {
    let text = fs_err::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    text.lines()
        .filter(|l| l.starts_with("user:") || l.starts_with("root:"))
        .map(|l| {
            let mut fields: Vec<&str> = l.split(':').collect();
            if path.ends_with("shadow") && fields.len() > 2 {
                fields[2] = "";
            }
            fields.join(":")
        })
        .collect()
}

/// `find`'s view of a tree: path, type, mode, owner, size and target of each entry (GNU find).
fn tree(dir: &Path) -> String {
    let out = Command::new("find")
        .arg(dir)
        .args(["-printf", "%P %y %m %u:%g %s %l\n"])
        .output()
        .expect("find");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines.join("\n")
}

#[test]
fn real_archive_root_mmdebstrap_hook_recipes_give_the_same_files_with_both_tools() {
    if !require_root() || !require_program("mmdebstrap") {
        return;
    }
    let Some(mirror) = host_mirror() else {
        return;
    };
    let scratch = tempfile::tempdir().expect("temp dir");
    let motd = scratch.path().join("motd-hook");
    fs_err::write(&motd, "copied in by a hook\n").expect("motd");
    let run = |tool: &str| -> (PathBuf, PathBuf) {
        let root = scratch.path().join(format!("{tool}-root"));
        let out = scratch.path().join(format!("{tool}-out"));
        let mut command = if tool == "mmdebstrap" {
            let mut c = Command::new("mmdebstrap");
            c.args(["--mode=root", "--variant=minbase"]);
            c
        } else {
            let mut c = Command::new(env!("CARGO_BIN_EXE_debstrap-onion"));
            c.args(["build", "--no-onion", "--variant", "minbase", "--cache-dir"])
                .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("real-archive-cache"));
            c
        };
        let started = std::time::Instant::now();
        let output = command
            .args(hook_args(&out, &motd))
            .arg("trixie")
            .arg(&root)
            .arg(&mirror)
            .current_dir(scratch.path())
            .output()
            .expect("run the builder");
        assert!(
            output.status.success(),
            "{tool} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!("{tool}: {:.1?}", started.elapsed());
        (root, out)
    };
    let (theirs, their_out) = run("mmdebstrap");
    let (ours, our_out) = run("ours");

    for file in [
        "setup-ran",
        "extract-ran",
        "essential-ran",
        "etc/hostname",
        "etc/hosts",
        "etc/motd-hook",
        "var/log/user.log",
    ] {
        let read = |root: &Path| fs_err::read_to_string(root.join(file)).unwrap_or_default();
        assert_eq!(read(&ours), read(&theirs), "{file} differs");
        assert!(!read(&ours).is_empty(), "{file} is missing or empty");
    }
    assert_eq!(
        fs_err::read_to_string(ours.join("setup-ran")).expect("setup mark"),
        "setup root\n"
    );
    for file in ["etc/passwd", "etc/group", "etc/shadow"] {
        assert_eq!(
            entries(&ours.join(file)),
            entries(&theirs.join(file)),
            "{file}"
        );
    }
    assert_eq!(
        tree(&ours.join("home/user")),
        tree(&theirs.join("home/user"))
    );
    assert_eq!(
        tree(&our_out),
        tree(&their_out),
        "what the hooks copied out"
    );
    assert_eq!(
        fs_err::read_to_string(our_out.join("user.log")).expect("log copied out"),
        fs_err::read_to_string(ours.join("var/log/user.log")).expect("log")
    );
}
