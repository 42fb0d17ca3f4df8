//! Deterministic compression: fixed levels, no names or times in headers, single-threaded
//! encoders, and input handed to the encoder in fixed-size chunks so the output depends on the
//! bytes alone and never on how reads happened to split them.

use std::io::{self, Write};

use crate::config::Compression;

/// Size of the chunks the encoder is fed.
const CHUNK: usize = 256 * 1024;
/// gzip's and xz's default levels, as their command-line tools use them.
const GZIP_LEVEL: u32 = 6;
const XZ_PRESET: u32 = 6;
/// zstd's command-line default level.
const ZSTD_LEVEL: i32 = 3;

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
            // One single-threaded stream: the output never depends on the number of CPUs.
            Compression::Xz => {
                let stream = liblzma::stream::Stream::new_easy_encoder(
                    XZ_PRESET,
                    liblzma::stream::Check::Crc64,
                )
                .map_err(io::Error::other)?;
                Encoder::Xz(liblzma::write::XzEncoder::new_stream(inner, stream))
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
