//! The tar encoding: 512-byte ustar headers plus pax extended headers, laid out byte for byte as
//! GNU tar writes them with `--format=pax --numeric-owner --pax-option=exthdr.name=%d/PaxHeaders/%f,
//! delete=atime,delete=ctime` (and `--mtime=@SDE --clamp-mtime` when a SOURCE_DATE_EPOCH is given).
//!
//! Matching GNU tar is what makes the layout checkable: a test archives the same tree with both
//! and compares the bytes, so every choice below (which fields go to pax records, in which order,
//! what the pax header block holds) is GNU tar's and not a guess of ours.

use std::io::{self, Write};

/// One tar block.
pub(super) const BLOCK: usize = 512;
/// GNU tar's default record (blocking factor 20): archives are padded to a multiple of it.
pub(super) const RECORD: usize = 20 * BLOCK;

/// Largest value of the 7-digit octal fields (mode, uid, gid, devmajor, devminor).
const MAX_OCTAL_7: u64 = 0o7777777;
/// Largest value of the 11-digit octal fields (size, mtime).
const MAX_OCTAL_11: u64 = 0o77777777777;

/// The kind of an archive member, as its typeflag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Regular,
    HardLink,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
}

impl Kind {
    fn typeflag(self) -> u8 {
        match self {
            Kind::Regular => b'0',
            Kind::HardLink => b'1',
            Kind::Symlink => b'2',
            Kind::CharDevice => b'3',
            Kind::BlockDevice => b'4',
            Kind::Directory => b'5',
            Kind::Fifo => b'6',
        }
    }
}

/// A modification time, seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Mtime {
    pub sec: i64,
    pub nsec: u32,
}

impl Mtime {
    /// `min(self, sde)`, as GNU tar's `--clamp-mtime` compares them (nanoseconds included).
    pub fn clamp(self, source_date_epoch: Option<i64>) -> Mtime {
        match source_date_epoch {
            Some(sde) if self > (Mtime { sec: sde, nsec: 0 }) => Mtime { sec: sde, nsec: 0 },
            _ => self,
        }
    }
}

/// Everything the header of one member says.
#[derive(Debug, Clone)]
pub(super) struct Member<'a> {
    /// The archive name: `./` then the path, directories ending in `/`.
    pub name: &'a [u8],
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 07777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Content size; zero for everything but regular files.
    pub size: u64,
    /// Already clamped.
    pub mtime: Mtime,
    /// Symlink target or, for hard links, the archive name of the first path.
    pub link: &'a [u8],
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes, sorted by name.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Writes the header block(s) of `member`: a pax extended header first when a field does not fit
/// ustar, then the ustar header. `pax_mtime` is the time GNU tar puts in the pax header block.
pub(super) fn write_header(
    out: &mut impl Write,
    member: &Member,
    pax_mtime: i64,
) -> io::Result<()> {
    let mut records = Vec::new();
    // GNU tar's order: linkpath, path, uid, gid, size, mtime, then the xattrs.
    if member.link.len() > 100 {
        pax_record(&mut records, b"linkpath", member.link);
    }
    if member.name.len() > 100 || !member.name.is_ascii() {
        pax_record(&mut records, b"path", member.name);
    }
    if u64::from(member.uid) > MAX_OCTAL_7 {
        pax_record(&mut records, b"uid", member.uid.to_string().as_bytes());
    }
    if u64::from(member.gid) > MAX_OCTAL_7 {
        pax_record(&mut records, b"gid", member.gid.to_string().as_bytes());
    }
    if member.size > MAX_OCTAL_11 {
        pax_record(&mut records, b"size", member.size.to_string().as_bytes());
    }
    let mtime_fits = (0..=MAX_OCTAL_11 as i64).contains(&member.mtime.sec);
    if !mtime_fits || member.mtime.nsec != 0 {
        pax_record(&mut records, b"mtime", format_time(member.mtime).as_bytes());
    }
    // Device numbers never need pax records on Linux: majors are 12 bits, minors 20 bits.
    for (key, value) in member.xattrs {
        let mut keyword = b"SCHILY.xattr.".to_vec();
        keyword.extend(encode_xattr_name(key));
        pax_record(&mut records, &keyword, value);
    }

    if !records.is_empty() {
        let mut pax = [0u8; BLOCK];
        put_bytes(&mut pax[0..100], &pax_header_name(member.name));
        put_octal(&mut pax[100..108], 0o644);
        put_octal(&mut pax[108..116], 0);
        put_octal(&mut pax[116..124], 0);
        put_octal(&mut pax[124..136], records.len() as u64);
        put_octal(
            &mut pax[136..148],
            pax_mtime.clamp(0, MAX_OCTAL_11 as i64) as u64,
        );
        pax[156] = b'x';
        pax[257..265].copy_from_slice(b"ustar\x0000");
        finish_checksum(&mut pax);
        out.write_all(&pax)?;
        out.write_all(&records)?;
        write_padding(out, records.len() as u64)?;
    }

    let mut header = [0u8; BLOCK];
    put_bytes(&mut header[0..100], member.name);
    put_octal(&mut header[100..108], u64::from(member.mode & 0o7777));
    put_octal(
        &mut header[108..116],
        fits_or_zero(member.uid.into(), MAX_OCTAL_7),
    );
    put_octal(
        &mut header[116..124],
        fits_or_zero(member.gid.into(), MAX_OCTAL_7),
    );
    put_octal(
        &mut header[124..136],
        fits_or_zero(member.size, MAX_OCTAL_11),
    );
    let header_mtime = if mtime_fits {
        member.mtime.sec as u64
    } else {
        0
    };
    put_octal(&mut header[136..148], header_mtime);
    header[156] = member.kind.typeflag();
    put_bytes(&mut header[157..257], member.link);
    header[257..265].copy_from_slice(b"ustar\x0000");
    // uname and gname stay empty: owners are numeric only.
    put_octal(&mut header[329..337], member.dev_major.into());
    put_octal(&mut header[337..345], member.dev_minor.into());
    finish_checksum(&mut header);
    out.write_all(&header)
}

/// Writes the zeros that pad `len` bytes of content up to a whole block.
pub(super) fn write_padding(out: &mut impl Write, len: u64) -> io::Result<()> {
    let rest = (len % BLOCK as u64) as usize;
    if rest != 0 {
        out.write_all(&[0u8; BLOCK][..BLOCK - rest])?;
    }
    Ok(())
}

/// Writes the end-of-archive marker (two zero blocks) and pads the archive, `written` bytes so
/// far, to a whole record.
pub(super) fn write_trailer(out: &mut impl Write, written: u64) -> io::Result<u64> {
    let with_marker = written + 2 * BLOCK as u64;
    let total = with_marker.div_ceil(RECORD as u64) * RECORD as u64;
    let zeros = [0u8; RECORD];
    let mut left = total - written;
    while left > 0 {
        let n = left.min(RECORD as u64);
        out.write_all(&zeros[..n as usize])?;
        left -= n;
    }
    Ok(total)
}

/// Appends one pax record, `LEN KEY=VALUE\n`, whose decimal LEN counts the whole record itself.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=' and '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// A pax time: seconds, then `.` and the nanoseconds without trailing zeros when there are any.
fn format_time(time: Mtime) -> String {
    if time.nsec == 0 {
        return time.sec.to_string();
    }
    // A negative time with a fraction is written as -(whole).(fraction) counted from zero.
    let (sign, whole, frac) = if time.sec < 0 {
        ("-", (-(time.sec + 1)) as u64, 1_000_000_000 - time.nsec)
    } else {
        ("", time.sec as u64, time.nsec)
    };
    let digits = format!("{frac:09}");
    format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
}

/// `%` and `=` cannot appear raw in a pax keyword; GNU tar percent-encodes them.
fn encode_xattr_name(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    for &b in name {
        match b {
            b'%' => out.extend_from_slice(b"%25"),
            b'=' => out.extend_from_slice(b"%3D"),
            _ => out.push(b),
        }
    }
    out
}

/// The name of a member's pax header, `%d/PaxHeaders/%f`: its directory, then its base name.
fn pax_header_name(name: &[u8]) -> Vec<u8> {
    let trimmed = match name {
        [rest @ .., b'/'] if !rest.is_empty() => rest,
        _ => name,
    };
    let trimmed = if trimmed.is_empty() { b"." } else { trimmed };
    let (dir, base) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (&b"."[..], trimmed),
    };
    let mut out = dir.to_vec();
    out.extend_from_slice(b"/PaxHeaders/");
    out.extend_from_slice(base);
    out
}

fn fits_or_zero(value: u64, max: u64) -> u64 {
    if value > max {
        0
    } else {
        value
    }
}

/// Copies as much of `value` as fits; a name that fills the field has no terminating NUL.
fn put_bytes(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Zero-padded octal filling all but the last byte, which stays NUL.
fn put_octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let digits = format!("{value:0width$o}");
    put_bytes(&mut field[..width], digits.as_bytes());
    field[width] = 0;
}

/// The checksum is the byte sum with the checksum field read as spaces, written `%06o\0 `.
fn finish_checksum(header: &mut [u8; BLOCK]) {
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    put_octal(&mut header[148..155], sum.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_its_own_digits() {
        let mut out = Vec::new();
        pax_record(&mut out, b"mtime", b"500.25");
        assert_eq!(out, b"16 mtime=500.25\n");
        // 7 bytes of body plus one digit would be 8, but a body of 8 needs... still one digit.
        out.clear();
        pax_record(&mut out, b"a", b"bcd");
        assert_eq!(out, b"8 a=bcd\n");
        // Crossing from one to two digits: body 9 → "10 ..." would be 11 bytes long.
        out.clear();
        pax_record(&mut out, b"a", b"bcdef");
        assert_eq!(out, b"11 a=bcdef\n");
        for n in 0..300 {
            out.clear();
            pax_record(&mut out, b"k", &vec![b'v'; n]);
            let text = String::from_utf8(out.clone()).expect("ascii");
            let (len, _) = text.split_once(' ').expect("length prefix");
            assert_eq!(
                len.parse::<usize>().expect("decimal"),
                out.len(),
                "value length {n}"
            );
        }
    }

    #[test]
    fn times_are_formatted_like_gnu_tar() {
        assert_eq!(
            format_time(Mtime {
                sec: 500,
                nsec: 250_000_000
            }),
            "500.25"
        );
        assert_eq!(
            format_time(Mtime {
                sec: 500,
                nsec: 123
            }),
            "500.000000123"
        );
        assert_eq!(format_time(Mtime { sec: 7, nsec: 0 }), "7");
        assert_eq!(
            format_time(Mtime {
                sec: -2,
                nsec: 500_000_000
            }),
            "-1.5"
        );
    }

    #[test]
    fn clamping_compares_nanoseconds() {
        let sde = Some(1000);
        assert_eq!(
            Mtime { sec: 1000, nsec: 1 }.clamp(sde),
            Mtime { sec: 1000, nsec: 0 }
        );
        assert_eq!(
            Mtime { sec: 999, nsec: 9 }.clamp(sde),
            Mtime { sec: 999, nsec: 9 }
        );
        assert_eq!(
            Mtime { sec: 5000, nsec: 0 }.clamp(None),
            Mtime { sec: 5000, nsec: 0 }
        );
    }

    #[test]
    fn pax_header_names_follow_dir_paxheaders_file() {
        assert_eq!(pax_header_name(b"./"), b"./PaxHeaders/.");
        assert_eq!(pax_header_name(b"./cap"), b"./PaxHeaders/cap");
        assert_eq!(pax_header_name(b"./a/f"), b"./a/PaxHeaders/f");
        assert_eq!(pax_header_name(b"./a/b/"), b"./a/PaxHeaders/b");
    }

    #[test]
    fn xattr_names_escape_percent_and_equals() {
        assert_eq!(encode_xattr_name(b"user.a=b%c"), b"user.a%3Db%25c");
    }

    #[test]
    fn header_checksum_and_fields_are_gnu_shaped() {
        let member = Member {
            name: b"./a/f",
            kind: Kind::Regular,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            size: 3,
            mtime: Mtime { sec: 1000, nsec: 0 },
            link: b"",
            dev_major: 0,
            dev_minor: 0,
            xattrs: &[],
        };
        let mut out = Vec::new();
        write_header(&mut out, &member, 1000).expect("to a Vec");
        assert_eq!(out.len(), BLOCK);
        assert_eq!(&out[100..108], b"0000644\0");
        assert_eq!(&out[124..136], b"00000000003\0");
        assert_eq!(&out[136..148], b"00000001750\0");
        // The sum GNU tar 1.34 wrote for this very header.
        assert_eq!(&out[148..156], b"007740\0 ");
    }

    #[test]
    fn trailer_pads_to_a_whole_record() {
        let mut out = Vec::new();
        let total = write_trailer(&mut out, 3 * BLOCK as u64).expect("to a Vec");
        assert_eq!(total, RECORD as u64);
        assert_eq!(out.len(), RECORD - 3 * BLOCK);
        out.clear();
        let total = write_trailer(&mut out, (RECORD - BLOCK) as u64).expect("to a Vec");
        assert_eq!(total, 2 * RECORD as u64);
    }
}
