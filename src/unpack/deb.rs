//! The .deb container: a file in, its control members (in memory) and its data.tar stream out.
//!
//! A .deb is an ar archive of `debian-binary` ("2.0"), `control.tar[.gz|.xz|.zst]` and
//! `data.tar[.gz|.xz|.zst]`; members whose names start with `_` may sit between them and are
//! skipped, as dpkg does.

use std::cell::{Cell, RefCell};
use std::io::{self, BufReader, Read};
use std::os::fd::BorrowedFd;

use super::path::RelPath;
use super::{FormatProblem, LimitProblem, UnpackError};
use crate::fetch::CachedDeb;

/// Control members larger than this are refused rather than read into memory.
const MAX_CONTROL_MEMBER: u64 = 32 << 20;
/// All control members of one package together may not be larger than this.
pub const MAX_CONTROL_TOTAL: u64 = 64 << 20;
/// A package's decompressed data.tar may not be larger than this.
pub const MAX_DATA_TAR: u64 = 16 << 30;
/// Extraction stops when the target's file system has less than this much space left.
pub const MIN_FREE: u64 = 32 << 20;
/// Extraction stops when the target's file system has fewer free inodes than this.
pub const MIN_FREE_INODES: u64 = 1024;
/// How many decompressed bytes pass between two checks of the free space.
const SPACE_CHECK_STEP: u64 = 4 << 20;

/// A file of the control archive (`control`, `md5sums`, `postinst`, ...).
#[derive(Debug, Clone)]
pub struct ControlMember {
    pub name: String,
    pub mode: u32,
    /// The member's modification time, which dpkg keeps on its copy in /var/lib/dpkg/info.
    pub mtime: i64,
    pub data: Vec<u8>,
}

/// How a member is compressed, from its name's suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    fn from_suffix(suffix: &str) -> Option<Compression> {
        match suffix {
            "" => Some(Compression::None),
            ".gz" => Some(Compression::Gzip),
            ".xz" => Some(Compression::Xz),
            ".zst" => Some(Compression::Zstd),
            _ => None,
        }
    }

    fn decoder<'r>(self, reader: impl Read + 'r) -> io::Result<Box<dyn Read + 'r>> {
        Ok(match self {
            Compression::None => Box::new(reader),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(reader)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
        })
    }
}

/// Reads the verified .deb `deb`: checks its format, reads the control archive, then passes the
/// decompressed data.tar (and its member name) to `extract`, stopping it when the data grows
/// past [`MAX_DATA_TAR`] or the file system of `target` (the root) runs short of space. Every
/// byte is hashed as it is read; the result stands only if the file was the verified one.
pub fn read_deb<T>(
    deb: &CachedDeb,
    target: BorrowedFd<'_>,
    extract: impl FnOnce(&[ControlMember], &str, &mut dyn Read) -> Result<T, UnpackError>,
) -> Result<(Vec<ControlMember>, T), UnpackError> {
    let package = deb.package().name.as_str();
    let path = deb.path();
    let cached = |source| UnpackError::Cached {
        package: package.to_owned(),
        source,
    };
    let mut file = deb.open();
    let result = read_members(package, path, &mut file, target, extract);
    // Stopped by Ctrl-C or by a limit: reading the rest of the file to hash it would only delay
    // the error (a limit is a reason to stop whatever the bytes are).
    if matches!(
        result,
        Err(UnpackError::Cancelled(_) | UnpackError::Limit { .. })
    ) {
        return result;
    }
    // A hashing failure explains any other: the bytes were not the ones verified.
    file.finish().map_err(cached)?;
    result
}

fn read_members<T>(
    package: &str,
    path: &std::path::Path,
    file: &mut dyn Read,
    target: BorrowedFd<'_>,
    extract: impl FnOnce(&[ControlMember], &str, &mut dyn Read) -> Result<T, UnpackError>,
) -> Result<(Vec<ControlMember>, T), UnpackError> {
    let format = |problem| UnpackError::Format {
        package: package.to_owned(),
        path: path.to_owned(),
        problem,
    };
    let refused = RefCell::new(None);
    let ar_error = |source| match refused.borrow_mut().take() {
        Some(name) => format(FormatProblem::ArExtension(name)),
        None => UnpackError::Ar {
            package: package.to_owned(),
            path: path.to_owned(),
            source,
        },
    };
    let guarded = ArGuard::new(file, &refused);
    let mut archive = ar::Archive::new(BufReader::with_capacity(256 << 10, guarded));

    let mut first = archive
        .next_entry()
        .ok_or_else(|| format(FormatProblem::Empty))?
        .map_err(ar_error)?;
    if member_name(first.header().identifier()) != "debian-binary" {
        return Err(format(FormatProblem::NoDebianBinary));
    }
    let mut version = String::new();
    (&mut first)
        .take(64)
        .read_to_string(&mut version)
        .map_err(|source| member_error(package, "debian-binary", source))?;
    let version = version.trim_end();
    if version != "2.0" {
        return Err(format(FormatProblem::Version(version.to_owned())));
    }
    drop(first);

    let mut control: Option<Vec<ControlMember>> = None;
    while let Some(entry) = archive.next_entry() {
        let mut entry = entry.map_err(ar_error)?;
        let name = member_name(entry.header().identifier());
        if name.starts_with('_') {
            continue;
        }
        let (is_data, suffix) = if let Some(suffix) = name.strip_prefix("control.tar") {
            if control.is_some() {
                return Err(format(FormatProblem::Unexpected(name)));
            }
            (false, suffix)
        } else if let Some(suffix) = name.strip_prefix("data.tar") {
            if control.is_none() {
                return Err(format(FormatProblem::NoControl));
            }
            (true, suffix)
        } else {
            return Err(format(FormatProblem::Unexpected(name)));
        };
        let compression = compression(package, &name, suffix)?;
        let size = entry.header().size();
        let count = Cell::new(0);
        let reader = compression
            .decoder(Counted {
                inner: &mut entry,
                read: &count,
            })
            .map_err(|source| member_error(package, &name, source))?;
        let limited = |reader, limit, target| {
            TarGuard::new(Bounded {
                inner: reader,
                read: 0,
                limit,
                target,
                next_check: 0,
            })
        };
        let lift = |err| lift_limit(err, package, &name);
        if is_data {
            let control = control.expect("checked above: data.tar follows control.tar");
            let mut reader = limited(reader, MAX_DATA_TAR, Some(target));
            let extracted = extract(&control, &name, &mut reader).map_err(lift)?;
            drain(package, &name, Box::new(reader), &count, size).map_err(lift)?;
            return Ok((control, extracted));
        }
        // Room for every member's tar header and padding besides the members' own cap.
        let mut reader = limited(reader, 2 * MAX_CONTROL_TOTAL, None);
        control = Some(read_control(package, &name, &mut reader).map_err(lift)?);
        drain(package, &name, Box::new(reader), &count, size).map_err(lift)?;
    }
    Err(format(if control.is_some() {
        FormatProblem::NoData
    } else {
        FormatProblem::NoControl
    }))
}

/// A member's decompressed stream, stopped at `limit` bytes and, when it is written into
/// `target`, when that file system runs short of space.
struct Bounded<'t, R> {
    inner: R,
    read: u64,
    limit: u64,
    target: Option<BorrowedFd<'t>>,
    next_check: u64,
}

impl<R: Read> Read for Bounded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(target) = self.target.filter(|_| self.read >= self.next_check) {
            let stat = rustix::fs::fstatvfs(target)?;
            if let Some(problem) = space_problem(&stat) {
                return Err(io::Error::other(problem));
            }
            self.next_check = self.read + SPACE_CHECK_STEP;
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(LimitProblem::TooLarge {
                limit: self.limit,
            }));
        }
        Ok(n)
    }
}

/// Why the target's file system cannot take more files: too few bytes, or too few inodes (a
/// package of many small files runs out of those first). A file system that reports no inode
/// count (btrfs) is judged by its bytes alone.
fn space_problem(stat: &rustix::fs::StatVfs) -> Option<LimitProblem> {
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free < MIN_FREE {
        return Some(LimitProblem::NoSpace { free });
    }
    if stat.f_files > 0 && stat.f_favail < MIN_FREE_INODES {
        return Some(LimitProblem::NoInodes {
            free: stat.f_favail,
        });
    }
    None
}

/// Turns an I/O failure that is really a [`Bounded`] limit into its own error.
fn lift_limit(err: UnpackError, package: &str, member: &str) -> UnpackError {
    let source = match &err {
        UnpackError::Member { source, .. } | UnpackError::Extract { source, .. } => source,
        _ => return err,
    };
    match find_limit(source) {
        Some(problem) => UnpackError::Limit {
            package: package.to_owned(),
            member: member.to_owned(),
            problem: problem.clone(),
        },
        None => err,
    }
}

/// The largest GNU long-name or long-link entry, or pax header, accepted in a package's tar
/// archives: the tar crate reads these whole into memory, so a larger one is refused first.
pub const MAX_TAR_EXTENSION: u64 = 1 << 20;

/// Walks the 512-byte headers of a tar stream as it passes to the tar crate, and refuses a GNU
/// long name or long link (`L`, `K`) or a pax header (`x`, `g`) larger than
/// [`MAX_TAR_EXTENSION`] before the tar crate buffers it. It follows the sizes the tar crate
/// will use (a pax `size` record overrides the next entry's header) and stops looking at the
/// end-of-archive block or a header the tar crate will refuse anyway.
struct TarGuard<R> {
    inner: R,
    /// Bytes passed on so far.
    pos: u64,
    /// Where the next header starts.
    next_header: u64,
    /// The header being collected.
    header: Vec<u8>,
    /// A pax `x` header's records being collected, and where they end.
    pax: Option<(Vec<u8>, u64)>,
    /// A pax `size` for the next entry that is not itself an extension.
    pending_size: Option<u64>,
    done: bool,
}

impl<R> TarGuard<R> {
    fn new(inner: R) -> Self {
        TarGuard {
            inner,
            pos: 0,
            next_header: 0,
            header: Vec::with_capacity(512),
            pax: None,
            pending_size: None,
            done: false,
        }
    }

    fn inspect(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() && !self.done {
            if self.pos < self.next_header {
                let n = usize::try_from(self.next_header - self.pos)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                if let Some((records, end)) = &mut self.pax {
                    let want = usize::try_from(end.saturating_sub(self.pos)).unwrap_or(usize::MAX);
                    records.extend_from_slice(&data[..n.min(want)]);
                }
                self.pos += n as u64;
                data = &data[n..];
                continue;
            }
            let n = (512 - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            self.pos += n as u64;
            data = &data[n..];
            if self.header.len() == 512 {
                self.header_done()?;
                self.header.clear();
            }
        }
        Ok(())
    }

    fn header_done(&mut self) -> io::Result<()> {
        if let Some((records, _)) = self.pax.take() {
            self.pending_size = pax_size(&records).or(self.pending_size);
        }
        if self.header.iter().all(|&b| b == 0) {
            self.done = true;
            return Ok(());
        }
        let Some(size) = tar_size(&self.header[124..136]) else {
            self.done = true;
            return Ok(());
        };
        let kind = self.header[156];
        let data_size = match kind {
            b'L' | b'K' | b'x' | b'g' => {
                if size > MAX_TAR_EXTENSION {
                    return Err(io::Error::other(LimitProblem::TarExtension {
                        kind: char::from(kind),
                        size,
                        limit: MAX_TAR_EXTENSION,
                    }));
                }
                if kind == b'x' {
                    self.pax = Some((Vec::new(), self.pos + size));
                }
                size
            }
            _ => self.pending_size.take().unwrap_or(size),
        };
        let Some(padded) = data_size.checked_next_multiple_of(512) else {
            self.done = true;
            return Ok(());
        };
        self.next_header = self.pos.saturating_add(padded);
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.inspect(&buf[..n])?;
        Ok(n)
    }
}

/// A tar size field: octal digits, or base-256 when the first byte's high bit is set.
fn tar_size(field: &[u8]) -> Option<u64> {
    if field.first()? & 0x80 != 0 {
        let mut size = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            size = size.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(size);
    }
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c| c == ' ' || c == '\0');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

/// The `size` record of pax extended header records (`LEN key=value\n` each), if any.
fn pax_size(mut records: &[u8]) -> Option<u64> {
    let mut size = None;
    while !records.is_empty() {
        let space = records.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&records[..space]).ok()?.parse().ok()?;
        if len <= space || len > records.len() {
            break;
        }
        let record = &records[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(value) = record.strip_prefix(b"size=") {
            size = std::str::from_utf8(value).ok()?.parse().ok();
        }
        records = &records[len..];
    }
    size
}

/// Walks the 60-byte member headers of an ar stream as it passes to the ar crate, and refuses
/// GNU name tables and GNU long names (`//`, `/N`, symbol tables `/`) and BSD long names
/// (`#1/N`) before the ar crate allocates for them: a .deb never has any of them. The refused
/// name is left in `refused`.
struct ArGuard<'c, R> {
    inner: R,
    pos: u64,
    next_header: u64,
    header: Vec<u8>,
    refused: &'c RefCell<Option<String>>,
    done: bool,
}

impl<'c, R> ArGuard<'c, R> {
    fn new(inner: R, refused: &'c RefCell<Option<String>>) -> Self {
        ArGuard {
            inner,
            pos: 0,
            // After the global header, `!<arch>\n`.
            next_header: 8,
            header: Vec::with_capacity(60),
            refused,
            done: false,
        }
    }

    fn inspect(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() && !self.done {
            if self.pos < self.next_header {
                let n = usize::try_from(self.next_header - self.pos)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.pos += n as u64;
                data = &data[n..];
                continue;
            }
            let n = (60 - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            self.pos += n as u64;
            data = &data[n..];
            if self.header.len() == 60 {
                let name = self.header[..16].trim_ascii_end();
                if name.starts_with(b"/") || name.starts_with(b"#1/") {
                    let name = String::from_utf8_lossy(name).into_owned();
                    let message = format!("member name {name:?} is refused");
                    *self.refused.borrow_mut() = Some(name);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, message));
                }
                let size = std::str::from_utf8(&self.header[48..58])
                    .ok()
                    .and_then(|s| s.trim_end().parse::<u64>().ok());
                match size {
                    // Members are padded to an even length.
                    Some(size) => self.next_header = self.pos + size + (size & 1),
                    None => self.done = true,
                }
                self.header.clear();
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for ArGuard<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.inspect(&buf[..n])?;
        Ok(n)
    }
}

/// The [`LimitProblem`] behind an I/O error, however deep the tar crate wrapped it.
fn find_limit(err: &io::Error) -> Option<&LimitProblem> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = err
        .get_ref()
        .map(|e| e as &(dyn std::error::Error + 'static));
    while let Some(e) = next {
        if let Some(problem) = e.downcast_ref::<LimitProblem>() {
            return Some(problem);
        }
        next = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Counts the bytes read from an ar member, to tell a complete member from a truncated one.
struct Counted<'c, R> {
    inner: R,
    read: &'c Cell<u64>,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// Reads a member's stream to its end, so the decompressor checks its trailer (a tar archive
/// ends before its compressed stream does), and checks that the whole member was there.
fn drain(
    package: &str,
    member: &str,
    mut reader: Box<dyn Read + '_>,
    count: &Cell<u64>,
    size: u64,
) -> Result<(), UnpackError> {
    io::copy(&mut reader, &mut io::sink())
        .map_err(|source| member_error(package, member, source))?;
    drop(reader);
    if count.get() != size {
        return Err(member_error(
            package,
            member,
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the archive ends after {} of {size} bytes", count.get()),
            ),
        ));
    }
    Ok(())
}

fn member_name(identifier: &[u8]) -> String {
    // GNU ar ends names with '/'; the ar crate already trims the padding spaces.
    let name = identifier.strip_suffix(b"/").unwrap_or(identifier);
    String::from_utf8_lossy(name).into_owned()
}

fn compression(package: &str, member: &str, suffix: &str) -> Result<Compression, UnpackError> {
    Compression::from_suffix(suffix).ok_or_else(|| UnpackError::Compression {
        package: package.to_owned(),
        member: member.to_owned(),
    })
}

/// An I/O failure inside a member (decompression, tar headers, truncation).
pub fn member_error(package: &str, member: &str, source: io::Error) -> UnpackError {
    UnpackError::Member {
        package: package.to_owned(),
        member: member.to_owned(),
        source,
    }
}

/// Reads every file of the control archive into memory.
fn read_control(
    package: &str,
    member: &str,
    reader: impl Read,
) -> Result<Vec<ControlMember>, UnpackError> {
    let io_error = |source| member_error(package, member, source);
    let mut archive = tar::Archive::new(reader);
    let mut members = Vec::new();
    let mut total = 0u64;
    for entry in archive.entries().map_err(io_error)? {
        let mut entry = entry.map_err(io_error)?;
        let raw_name = entry.path_bytes().into_owned();
        let entry_error = |problem| UnpackError::Entry {
            package: package.to_owned(),
            entry: format!("{member}:{}", String::from_utf8_lossy(&raw_name)),
            problem,
        };
        let name = RelPath::from_entry_name(&raw_name)
            .map_err(|p| entry_error(super::EntryProblem::Path(p)))?;
        match entry.header().entry_type() {
            tar::EntryType::Directory if name.is_root() => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            _ => return Err(entry_error(super::EntryProblem::ControlMemberType)),
        }
        if name.is_root() || name.as_bytes().contains(&b'/') {
            return Err(entry_error(super::EntryProblem::ControlMemberType));
        }
        if entry.size() > MAX_CONTROL_MEMBER {
            return Err(entry_error(super::EntryProblem::TooLarge));
        }
        total = total.saturating_add(entry.size());
        if total > MAX_CONTROL_TOTAL {
            return Err(entry_error(super::EntryProblem::ControlTooLarge));
        }
        let header = entry.header();
        let mode = header.mode().map_err(io_error)? & 0o7777;
        let mtime = i64::try_from(header.mtime().map_err(io_error)?).unwrap_or(i64::MAX);
        let mut data = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        entry.read_to_end(&mut data).map_err(io_error)?;
        if data.len() as u64 != entry.size() {
            return Err(io_error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside a control file",
            )));
        }
        members.push(ControlMember {
            name: name.display(),
            mode,
            mtime,
            data,
        });
    }
    Ok(members)
}

#[cfg(test)]
// Tests state their expectations with unwrap(); a panic there is the failure report.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn statvfs(bavail: u64, files: u64, favail: u64) -> rustix::fs::StatVfs {
        rustix::fs::StatVfs {
            f_bsize: 4096,
            f_frsize: 4096,
            f_blocks: 1 << 30,
            f_bfree: bavail,
            f_bavail: bavail,
            f_files: files,
            f_ffree: favail,
            f_favail: favail,
            f_fsid: 0,
            f_flag: rustix::fs::StatVfsMountFlags::empty(),
            f_namemax: 255,
        }
    }

    #[test]
    fn extraction_stops_when_bytes_or_inodes_run_short() {
        let plenty = 1 << 20;
        assert_eq!(space_problem(&statvfs(plenty, plenty, plenty)), None);
        assert_eq!(
            space_problem(&statvfs(10, plenty, plenty)),
            Some(LimitProblem::NoSpace { free: 40960 })
        );
        assert_eq!(
            space_problem(&statvfs(plenty, plenty, 10)),
            Some(LimitProblem::NoInodes { free: 10 })
        );
        // btrfs reports no inode counts at all.
        assert_eq!(space_problem(&statvfs(plenty, 0, 0)), None);
    }

    #[test]
    fn a_member_stops_one_byte_past_its_limit() {
        let data = [7u8; 20];
        let mut reader = Bounded {
            inner: &data[..],
            read: 0,
            limit: 10,
            target: None,
            next_check: 0,
        };
        let err = io::copy(&mut reader, &mut io::sink()).unwrap_err();
        let problem = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<LimitProblem>())
            .unwrap();
        assert_eq!(*problem, LimitProblem::TooLarge { limit: 10 });
        let mut within = Bounded {
            inner: &data[..10],
            read: 0,
            limit: 10,
            target: None,
            next_check: 0,
        };
        assert_eq!(io::copy(&mut within, &mut io::sink()).unwrap(), 10);
    }
}
