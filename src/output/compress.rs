//! Deterministic compression: fixed levels, no names or times in headers, and input handed to
//! the encoder in fixed-size chunks so the output depends on the bytes alone and never on how
//! reads happened to split them.
//!
//! gzip and zstd run single-threaded (zstd's multi-threaded frames differ from single-threaded
//! ones). xz runs liblzma's multi-threaded encoder with a fixed block size: it cuts the input into
//! blocks of that size and compresses each on its own, so the bytes are the same for any number
//! of threads (a unit test holds it to that) while the work spreads over the CPUs. liblzma is
//! linked statically from the crate's bundled sources, so the bytes do not depend on the host's
//! liblzma either.

use std::io::{self, Write};

use crate::config::Compression;

/// Size of the chunks the encoder is fed.
const CHUNK: usize = 256 * 1024;
/// gzip's and xz's default levels, as their command-line tools use them.
const GZIP_LEVEL: u32 = 6;
const XZ_PRESET: u32 = 6;
/// zstd's command-line default level.
const ZSTD_LEVEL: i32 = 3;
/// xz block size: liblzma's own choice for preset 6 (three times its 8 MiB dictionary), fixed
/// here so a liblzma that changes its default does not change our bytes.
const XZ_BLOCK_SIZE: u64 = 24 << 20;
/// At most this many xz threads: each holds about three blocks of memory.
const XZ_MAX_THREADS: u32 = 8;

/// A compressing writer; [`Compressor::finish`] ends the stream and gives the inner writer back.
pub(super) struct Compressor<W: Write> {
    encoder: Encoder<W>,
    pending: Vec<u8>,
}

enum Encoder<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Xz(liblzma::write::XzEncoder<W>),
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    pub fn new(inner: W, compression: Compression) -> io::Result<Compressor<W>> {
        let encoder = match compression {
            Compression::None => Encoder::None(inner),
            // mtime 0 and no file name, like `gzip -n`; OS byte 3 (Unix) as gzip writes on Linux.
            Compression::Gzip => Encoder::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(3)
                    .write(inner, flate2::Compression::new(GZIP_LEVEL)),
            ),
            Compression::Xz => {
                let threads = std::thread::available_parallelism()
                    .map_or(1, |n| u32::try_from(n.get()).unwrap_or(XZ_MAX_THREADS))
                    .min(XZ_MAX_THREADS);
                Encoder::Xz(xz_encoder(inner, threads)?)
            }
            Compression::Zstd => {
                // No workers: zstd's multi-threaded frames differ from single-threaded ones.
                let mut encoder = zstd::Encoder::new(inner, ZSTD_LEVEL)?;
                encoder.include_checksum(true)?;
                Encoder::Zstd(encoder)
            }
        };
        Ok(Compressor {
            encoder,
            pending: Vec::with_capacity(CHUNK),
        })
    }

    /// Feeds the remaining input, ends the compressed stream and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.feed_pending()?;
        match self.encoder {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }

    fn feed_pending(&mut self) -> io::Result<()> {
        let chunk = &self.pending[..];
        match &mut self.encoder {
            Encoder::None(w) => w.write_all(chunk)?,
            Encoder::Gzip(e) => e.write_all(chunk)?,
            Encoder::Xz(e) => e.write_all(chunk)?,
            Encoder::Zstd(e) => e.write_all(chunk)?,
        }
        self.pending.clear();
        Ok(())
    }
}

/// An xz encoder whose output does not depend on `threads`.
fn xz_encoder<W: Write>(inner: W, threads: u32) -> io::Result<liblzma::write::XzEncoder<W>> {
    let stream = liblzma::stream::MtStreamBuilder::new()
        .preset(XZ_PRESET)
        .block_size(XZ_BLOCK_SIZE)
        .threads(threads)
        .check(liblzma::stream::Check::Crc64)
        .encoder()
        .map_err(io::Error::other)?;
    Ok(liblzma::write::XzEncoder::new_stream(inner, stream))
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == CHUNK {
            self.feed_pending()?;
        }
        Ok(n)
    }

    /// Does nothing: flushing an encoder mid-stream would put flush points that depend on
    /// when it was called into the compressed bytes. [`Compressor::finish`] writes everything.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input that compresses a little and spans several small blocks.
    fn sample(len: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 3 == 0 {
                    (x >> 16) as u8
                } else {
                    b'a' + (i % 7) as u8
                }
            })
            .collect()
    }

    #[test]
    fn xz_bytes_do_not_depend_on_the_thread_count() {
        let data = sample(3 * 1024 * 1024);
        let compress = |threads| {
            let stream = liblzma::stream::MtStreamBuilder::new()
                .preset(1)
                .block_size(1 << 20)
                .threads(threads)
                .check(liblzma::stream::Check::Crc64)
                .encoder()
                .expect("encoder");
            let mut e = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
            e.write_all(&data).expect("write");
            e.finish().expect("finish")
        };
        let one = compress(1);
        assert_eq!(one, compress(2));
        assert_eq!(one, compress(4));
    }

    #[test]
    fn every_compression_is_independent_of_write_sizes() {
        let data = sample(CHUNK * 2 + 1000);
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Xz,
            Compression::Zstd,
        ] {
            let whole = {
                let mut c = Compressor::new(Vec::new(), compression).expect("new");
                c.write_all(&data).expect("write");
                c.finish().expect("finish")
            };
            let pieces = {
                let mut c = Compressor::new(Vec::new(), compression).expect("new");
                for piece in data.chunks(4093) {
                    c.write_all(piece).expect("write");
                    c.flush().expect("flush");
                }
                c.finish().expect("finish")
            };
            assert_eq!(whole, pieces, "{compression:?}");
        }
    }
}
