//! The .deb container: a file in, its control members (in memory) and its data.tar stream out.
//!
//! A .deb is an ar archive of `debian-binary` ("2.0"), `control.tar[.gz|.xz|.zst]` and
//! `data.tar[.gz|.xz|.zst]`; members whose names start with `_` may sit between them and are
//! skipped, as dpkg does.

use std::cell::Cell;
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::path::RelPath;
use super::{FormatProblem, UnpackError};

/// Control members larger than this are refused rather than read into memory.
const MAX_CONTROL_MEMBER: u64 = 64 << 20;

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

/// Reads the .deb at `path`: checks its format, reads the control archive, then passes the
/// decompressed data.tar (and its member name) to `extract`.
pub fn read_deb<T>(
    package: &str,
    path: &Path,
    extract: impl FnOnce(&[ControlMember], &str, &mut dyn Read) -> Result<T, UnpackError>,
) -> Result<(Vec<ControlMember>, T), UnpackError> {
    let file = fs_err::File::open(path).map_err(|source| UnpackError::Open {
        package: package.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    let format = |problem| UnpackError::Format {
        package: package.to_owned(),
        path: path.to_owned(),
        problem,
    };
    let ar_error = |source| UnpackError::Ar {
        package: package.to_owned(),
        path: path.to_owned(),
        source,
    };
    let mut archive = ar::Archive::new(BufReader::with_capacity(256 << 10, file));

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
        let mut reader = compression
            .decoder(Counted {
                inner: &mut entry,
                read: &count,
            })
            .map_err(|source| member_error(package, &name, source))?;
        if is_data {
            let control = control.expect("checked above: data.tar follows control.tar");
            let extracted = extract(&control, &name, &mut reader)?;
            drain(package, &name, reader, &count, size)?;
            return Ok((control, extracted));
        }
        control = Some(read_control(package, &name, &mut reader)?);
        drain(package, &name, reader, &count, size)?;
    }
    Err(format(if control.is_some() {
        FormatProblem::NoData
    } else {
        FormatProblem::NoControl
    }))
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
