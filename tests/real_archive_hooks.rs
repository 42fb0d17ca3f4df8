//! Hooks against the real archive, as root: three recipes from mmdebstrap's manual page (add a
//! user and set the hostname; copy a file in and a log out; preseed tzdata at the essential
//! point), a mark at every hook point, two hook directories among the hook options, and what
//! dpkg knows at the essential point, given unchanged to mmdebstrap and to us in one trixie
//! minbase build each; the files the hooks made or changed, in the roots and outside them, and
//! the order the hooks ran in, must be the same.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::host::{host_mirror, require_program, require_root};

/// The hook options, with `{out}` standing for a directory outside the root, `{motd}` for a
/// file copied in, and `{one}` and `{two}` for hook directories ([`hook_directories`]).
const HOOKS: &[(&str, &str)] = &[
    (
        "--setup-hook",
        r#"echo "setup-option-1 $MMDEBSTRAP_HOOK" >> "$1/hook-order""#,
    ),
    ("--hook-directory", "{one}"),
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
        r#"test -e "$1/proc/self/status" && test -c "$1/dev/null" && echo "$MMDEBSTRAP_HOOK" > "$1/essential-ran""#,
    ),
    // What dpkg knows at the essential point: the essential set, configured, nothing else.
    (
        "--essential-hook",
        r#"chroot "$1" dpkg-query -W -f '${Package} ${db:Status-Abbrev}\n' | sort > "$1/essential-known""#,
    ),
    // Recipe 3: the manual's timezone example. Our root has /etc/localtime -> UTC before
    // configuration, as debootstrap makes it, and tzdata keeps an existing one: removing it
    // first makes the recipe work with both tools (mmdebstrap has none yet).
    ("--essential-hook", r#"rm -f "$1/etc/localtime""#),
    (
        "--essential-hook",
        r#"echo tzdata tzdata/Areas select Europe | chroot "$1" debconf-set-selections"#,
    ),
    (
        "--essential-hook",
        r#"echo tzdata tzdata/Zones/Europe select Berlin | chroot "$1" debconf-set-selections"#,
    ),
    (
        "--extract-hook",
        r#"echo "extract-option-2 $MMDEBSTRAP_HOOK" >> "$1/hook-order""#,
    ),
    ("--hook-directory", "{two}"),
    (
        "--essential-hook",
        r#"echo "essential-option-3 $MMDEBSTRAP_HOOK" >> "$1/hook-order""#,
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
    (
        "--customize-hook",
        r#"echo "customize-option-4 $MMDEBSTRAP_HOOK" >> "$1/hook-order""#,
    ),
];

/// Two hook directories under `dir`, each script recording its name and point in the root's
/// hook-order file; besides them a file named like a hook that is not executable.
fn hook_directories(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let (one, two) = (dir.join("hooks-one"), dir.join("hooks-two"));
    for (d, names) in [
        (
            &one,
            &[
                "setup01-a",
                "setup02-b",
                "extract01-a",
                "essential01-a",
                "customize01-a",
            ][..],
        ),
        (
            &two,
            &["setup00-c", "essential00-c", "customize00-c", "customize0A"][..],
        ),
    ] {
        fs_err::create_dir_all(d).expect("hook directory");
        let label = d.file_name().expect("named").to_string_lossy();
        for name in names {
            let path = d.join(name);
            fs_err::write(
                &path,
                format!(
                    "#!/bin/sh\necho \"{label}/{name} $MMDEBSTRAP_HOOK\" >> \"$1/hook-order\"\n"
                ),
            )
            .expect("script");
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }
    fs_err::write(two.join("setup-not-executable"), "#!/bin/sh\nexit 1\n").expect("file");
    (one, two)
}

fn hook_args(out: &Path, motd: &Path, dirs: &(PathBuf, PathBuf)) -> Vec<String> {
    HOOKS
        .iter()
        .map(|(option, text)| {
            let text = text
                .replace("{out}", &out.display().to_string())
                .replace("{motd}", &motd.display().to_string())
                .replace("{one}", &dirs.0.display().to_string())
                .replace("{two}", &dirs.1.display().to_string());
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
    let dirs = hook_directories(scratch.path());
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
                .arg(support::host::shared_cache());
            c
        };
        let started = std::time::Instant::now();
        let output = command
            .args(hook_args(&out, &motd, &dirs))
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
        "hook-order",
        "essential-known",
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
    // mmdebstrap's order, as its manual describes it: each directory's scripts (in name order)
    // where the directory stands among the options of their point.
    assert_eq!(
        fs_err::read_to_string(ours.join("hook-order")).expect("hook order"),
        "setup-option-1 setup\nhooks-one/setup01-a setup\nhooks-one/setup02-b setup\n\
         hooks-two/setup00-c setup\n\
         hooks-one/extract01-a extract\nextract-option-2 extract\n\
         hooks-one/essential01-a essential\nhooks-two/essential00-c essential\n\
         essential-option-3 essential\n\
         hooks-one/customize01-a customize\nhooks-two/customize00-c customize\n\
         hooks-two/customize0A customize\ncustomize-option-4 customize\n"
    );
    // The essential hooks ran before the rest of the packages were known to dpkg (apt is not
    // essential) and before tzdata was configured (the preseed took).
    let known = fs_err::read_to_string(ours.join("essential-known")).expect("known");
    assert!(known.contains("\ndpkg ii \n"), "{known}");
    assert!(!known.contains("\napt "), "{known}");
    for root in [&ours, &theirs] {
        assert_eq!(
            fs_err::read_link(root.join("etc/localtime")).expect("localtime"),
            Path::new("/usr/share/zoneinfo/Europe/Berlin"),
            "{}",
            root.display()
        );
    }
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

#[test]
fn real_archive_root_a_failing_essential_hook_stops_the_build_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let Some(mirror) = host_mirror() else {
        return;
    };
    let scratch = tempfile::tempdir().expect("temp dir");
    let parent = scratch.path().join("builds");
    fs_err::create_dir(&parent).expect("builds");
    let target = parent.join("root");
    let hook = "echo about to fail; exit 4";
    let output = Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
        .args(["build", "--no-onion", "--variant", "minbase", "--cache-dir"])
        .arg(support::host::shared_cache())
        .arg(format!("--essential-hook={hook}"))
        .arg("trixie")
        .arg(&target)
        .arg(&mirror)
        .output()
        .expect("run the builder");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let first = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "error: essential hook `{hook}` failed (exit status: 4); last lines of its output:"
        )
    );
    assert!(stderr.contains("about to fail"), "{stderr}");
    assert!(!target.exists());
    assert_eq!(fs_err::read_dir(&parent).expect("builds").count(), 0);
    let mounts = fs_err::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let scratch_path = scratch.path().display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&scratch_path)),
        "a mount remains under {scratch_path}"
    );
}

#[test]
fn real_archive_root_ctrl_c_during_an_essential_hook_stops_it_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let Some(mirror) = host_mirror() else {
        return;
    };
    let scratch = tempfile::tempdir().expect("temp dir");
    let parent = scratch.path().join("builds");
    fs_err::create_dir(&parent).expect("builds");
    let target = parent.join("root");
    // The hook's child writes its host pid to a pipe the build inherits, then sleeps; the hook
    // waits for it, so only a kill ends them (see tests/hooks.rs for the offline twin).
    let (reader, writer) = rustix::pipe::pipe().expect("pipe");
    let hook = format!(
        "sh -c 'read pid rest < /proc/self/stat; echo $pid > /proc/self/fd/{}; exec sleep 1000' & wait",
        std::os::fd::AsRawFd::as_raw_fd(&writer)
    );
    let child = Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
        .args(["build", "--no-onion", "--variant", "minbase", "--cache-dir"])
        .arg(support::host::shared_cache())
        .arg(format!("--essential-hook={hook}"))
        .arg("trixie")
        .arg(&target)
        .arg(&mirror)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(writer);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(std::fs::File::from(reader)),
        &mut line,
    )
    .expect("read the pipe");
    let Ok(pid) = line.trim().parse::<i32>() else {
        let output = child.wait_with_output().expect("wait");
        panic!(
            "the hook never ran: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    support::sys::signal(child.id(), support::sys::Signal::INT).expect("SIGINT");
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let state = fs_err::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let alive = state
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .is_some_and(|s| s != "Z" && s != "X");
    assert!(!alive, "the hook's child {pid} survived: {state}");
    assert!(!target.exists());
    assert_eq!(fs_err::read_dir(&parent).expect("builds").count(), 0);
    let mounts = fs_err::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let scratch_path = scratch.path().display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&scratch_path)),
        "a mount remains under {scratch_path}"
    );
}
