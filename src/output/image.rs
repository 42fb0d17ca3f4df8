//! Filesystem images made by the standard tools: squashfs by `mksquashfs` (squashfs-tools) and
//! ext4 by `mke2fs -d` (e2fsprogs). Takes the finished root and a temporary file beside the
//! destination; gives that file holding the image.
//!
//! Both tools read the root by its path, so it is first walked with the same walk the tarball
//! uses: that refuses any mount inside the root and measures what the image must hold.
//!
//! # Reproducibility
//! - squashfs: mksquashfs 4.4 and later sorts each directory and writes the same bytes on any
//!   number of CPUs; the filesystem's own time is set with `-mkfs-time`, and file times are the
//!   root's, already clamped to SOURCE_DATE_EPOCH. Owners, modes and xattrs are kept as they are
//!   (never `-all-root`: a file owned by `_apt` or group `shadow` must stay so).
//! - ext4: the UUID and the directory hash seed are derived from SOURCE_DATE_EPOCH, every
//!   time mke2fs takes from the clock comes from `E2FSPROGS_FAKE_TIME`, and, since `mke2fs -d`
//!   copies each file's atime and ctime (which no program can set back), a `debugfs -w` pass
//!   then sets both to SOURCE_DATE_EPOCH on every inode in use. mke2fs reads directories sorted.

use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::FileType;

use super::walk;
use super::OutputError;
use crate::config::ImageFormat;
use crate::HeldRoot;

/// ext4 block size.
const BLOCK: u64 = 4096;
/// ext4 inode size.
const INODE_SIZE: u64 = 256;
/// Room added to the measured content of an ext4 image: a fifth more, then 64 MiB for the
/// journal (mke2fs gives at most 64 MiB to filesystems under 16 GiB), group descriptors and
/// bitmaps. What is documented in README.md.
const EXT4_MARGIN_PERCENT: u64 = 20;
const EXT4_MARGIN_FIXED: u64 = 64 << 20;

/// An external program an image format needs, and the Debian package that has it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Program {
    pub name: &'static str,
    pub package: &'static str,
}

const MKSQUASHFS: Program = Program {
    name: "mksquashfs",
    package: "squashfs-tools",
};
const MKE2FS: Program = Program {
    name: "mke2fs",
    package: "e2fsprogs",
};
const DEBUGFS: Program = Program {
    name: "debugfs",
    package: "e2fsprogs",
};
const DUMPE2FS: Program = Program {
    name: "dumpe2fs",
    package: "e2fsprogs",
};

/// The programs `format` runs.
pub(super) fn programs(format: ImageFormat) -> &'static [Program] {
    match format {
        ImageFormat::Squashfs => &[MKSQUASHFS],
        ImageFormat::Ext4 => &[MKE2FS, DEBUGFS, DUMPE2FS],
        ImageFormat::OciArchive | ImageFormat::OciDir => &[],
    }
}

/// Finds `program` on PATH, then in the sbin directories (mke2fs lives in /usr/sbin, which a
/// user's PATH may lack).
pub(super) fn find(program: Program) -> Result<PathBuf, OutputError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program.name))
        .find(|candidate| is_executable(candidate))
        .ok_or(OutputError::MissingProgram {
            program: program.name,
            package: program.package,
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    fs_err::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What a root holds, as an ext4 image needs it counted.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Measure {
    /// 4 KiB blocks of file contents, directories and long symlinks.
    pub blocks: u64,
    /// Entries (an upper bound on the inodes: hard links count once per path).
    pub entries: u64,
}

impl Measure {
    /// The bytes of content and inode table, before any margin.
    pub fn content_bytes(&self) -> u64 {
        self.blocks * BLOCK + self.inodes() * INODE_SIZE
    }

    fn inodes(&self) -> u64 {
        // A few spare inodes beyond lost+found and the reserved ones, for the image's user.
        self.entries + self.entries / 10 + 256
    }

    /// The size an ext4 image of this content is given: the content plus the margin, rounded up
    /// to whole MiB.
    pub fn ext4_size(&self) -> u64 {
        let content = self.content_bytes();
        let sized = content + content * EXT4_MARGIN_PERCENT / 100 + EXT4_MARGIN_FIXED;
        sized.div_ceil(1 << 20) << 20
    }
}

/// Walks `root` (refusing mounts inside it) and counts what an image of it holds.
pub(super) fn measure(root: &HeldRoot) -> Result<Measure, OutputError> {
    let mut measure = Measure::default();
    walk::walk(root, &mut |entry| {
        crate::cancel::check()?;
        measure.entries += 1;
        let size = entry.stat.stx_size;
        measure.blocks += match entry.file_type() {
            FileType::RegularFile | FileType::Directory => size.div_ceil(BLOCK).max(1),
            // Targets under 60 bytes live in the inode.
            FileType::Symlink if size >= 60 => 1,
            _ => 0,
        };
        Ok(())
    })?;
    Ok(measure)
}

/// Writes the squashfs image of `root` to `dest` (an existing empty file, overwritten).
pub(super) fn squashfs(
    root: &HeldRoot,
    dest: &Path,
    source_date_epoch: Option<i64>,
) -> Result<(), OutputError> {
    let mksquashfs = find(MKSQUASHFS)?;
    measure(root)?;
    let mut command = Command::new(&mksquashfs);
    command
        .arg(root.path())
        .arg(dest)
        .args(["-noappend", "-no-progress", "-quiet"]);
    // mksquashfs reads SOURCE_DATE_EPOCH itself and would then set every file's time to it;
    // the root's own (clamped) times are kept instead.
    command.env_remove("SOURCE_DATE_EPOCH");
    if let Some(epoch) = source_date_epoch {
        command.arg("-mkfs-time").arg(epoch.to_string());
    }
    run(MKSQUASHFS, &mut command)
}

/// Writes the ext4 image of `root` to `dest` (an existing empty file, grown to the image's
/// size), after checking that the destination's filesystem can hold it.
pub(super) fn ext4(
    root: &HeldRoot,
    dest: &Path,
    source_date_epoch: Option<i64>,
) -> Result<(), OutputError> {
    let mke2fs = find(MKE2FS)?;
    let measured = measure(root)?;
    let size = measured.ext4_size();
    check_room(dest, size)?;
    let mut command = Command::new(&mke2fs);
    command.args([
        "-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-m", "0",
    ]);
    command
        .arg("-N")
        .arg(measured.inodes().to_string())
        .arg("-d")
        .arg(root.path());
    if let Some(epoch) = source_date_epoch {
        let uuid = uuid_from_epoch(epoch);
        command
            .arg("-U")
            .arg(&uuid)
            .arg("-E")
            .arg(format!("hash_seed={uuid}"))
            .env("E2FSPROGS_FAKE_TIME", epoch.to_string());
    }
    command.arg(dest).arg(format!("{}k", size / 1024));
    run(MKE2FS, &mut command)?;
    if let Some(epoch) = source_date_epoch {
        set_inode_times(dest, epoch)?;
    }
    Ok(())
}

/// Refuses an image the destination's filesystem cannot hold at its full size (the file is
/// sparse, but a copy of it is not, and the journal and metadata are written).
fn check_room(dest: &Path, needed: u64) -> Result<(), OutputError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let Ok(stat) = rustix::fs::statvfs(dir) else {
        return Ok(());
    };
    let available = stat.f_bavail * stat.f_frsize;
    if available < needed {
        return Err(OutputError::NoRoom {
            dir: dir.to_path_buf(),
            needed: needed >> 20,
            available: available >> 20,
        });
    }
    Ok(())
}

/// A version-4-shaped UUID made from the epoch alone, so two builds at the same
/// SOURCE_DATE_EPOCH name their filesystem alike.
fn uuid_from_epoch(epoch: i64) -> String {
    let digest = crate::fetch::Sha256Digest::of(format!("debstrap-onion ext4 {epoch}").as_bytes());
    let mut b: [u8; 16] = digest.0[..16].try_into().expect("a SHA256 has 32 bytes");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Sets atime and ctime of every inode in use (the root, and all past the reserved ones) to
/// `epoch`, with debugfs; the in-use inodes are read from dumpe2fs's free-inode ranges.
fn set_inode_times(image: &Path, epoch: i64) -> Result<(), OutputError> {
    let mut dumpe2fs = Command::new(find(DUMPE2FS)?);
    dumpe2fs.arg(image);
    let listing = output_of(DUMPE2FS, &mut dumpe2fs)?;
    let used = used_inodes(&listing).ok_or_else(|| OutputError::Tool {
        program: DUMPE2FS.name,
        message: "its listing has no inode count or free-inode ranges".to_string(),
    })?;
    let mut script = String::new();
    for inode in used.into_iter().filter(|&i| i == 2 || i >= 11) {
        for field in ["atime", "ctime"] {
            script.push_str(&format!("sif <{inode}> {field} {epoch}\n"));
        }
    }
    let script_file = tempfile::NamedTempFile::new().map_err(|source| OutputError::Write {
        target: "a temporary debugfs script".to_string(),
        source,
    })?;
    fs_err::write(script_file.path(), script).map_err(|source| OutputError::Write {
        target: script_file.path().display().to_string(),
        source,
    })?;
    let mut debugfs = Command::new(find(DEBUGFS)?);
    debugfs
        .arg("-w")
        .arg("-f")
        .arg(script_file.path())
        .arg(image)
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string());
    run(DEBUGFS, &mut debugfs)
}

/// The inodes dumpe2fs's listing shows in use: 1 to `Inode count` less every `Free inodes:`
/// range of the groups.
fn used_inodes(listing: &str) -> Option<Vec<u64>> {
    let count: u64 = listing
        .lines()
        .find_map(|l| l.strip_prefix("Inode count:"))?
        .trim()
        .parse()
        .ok()?;
    let mut free = vec![false; usize::try_from(count).ok()? + 1];
    let mut groups = 0;
    for line in listing.lines() {
        let Some(ranges) = line.trim_start().strip_prefix("Free inodes: ") else {
            continue;
        };
        // The superblock's `Free inodes:` total has no leading blank; the groups' lines do.
        if !line.starts_with(' ') {
            continue;
        }
        groups += 1;
        for range in ranges.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
            for slot in free.get_mut(first..=last)? {
                *slot = true;
            }
        }
    }
    (groups > 0).then(|| (1..=count).filter(|&i| !free[i as usize]).collect())
}

/// Runs `command`, failing with the last line it wrote to standard error.
fn run(program: Program, command: &mut Command) -> Result<(), OutputError> {
    output_of(program, command).map(drop)
}

fn output_of(program: Program, command: &mut Command) -> Result<String, OutputError> {
    crate::cancel::check()?;
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| OutputError::Spawn {
            program: program.name,
            source,
        })?;
    crate::cancel::check()?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        return Err(OutputError::Tool {
            program: program.name,
            message: format!("{} ({})", last.trim(), output.status),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_inodes_are_those_outside_the_free_ranges() {
        let listing = "Inode count:              16\nFree inodes:              9\n\
                       Group 0: (Blocks 0-7)\n  Free inodes: 5-8, 10\n\
                       Group 1: (Blocks 8-15)\n  Free inodes: 13-16\n";
        assert_eq!(
            used_inodes(listing).expect("parsed"),
            [1, 2, 3, 4, 9, 11, 12]
        );
        assert!(used_inodes("Inode count: 4\n").is_none());
    }

    #[test]
    fn the_ext4_uuid_depends_on_the_epoch_only() {
        assert_eq!(uuid_from_epoch(1), uuid_from_epoch(1));
        assert_ne!(uuid_from_epoch(1), uuid_from_epoch(2));
        let uuid = uuid_from_epoch(1);
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
    }

    #[test]
    fn the_ext4_size_has_its_margin() {
        let m = Measure {
            blocks: 1000,
            entries: 100,
        };
        assert!(m.ext4_size() >= m.content_bytes() * 6 / 5 + EXT4_MARGIN_FIXED);
        assert_eq!(m.ext4_size() % (1 << 20), 0);
    }
}
