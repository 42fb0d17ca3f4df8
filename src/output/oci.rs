//! OCI images: takes the finished root and the SBOM of its packages; gives an OCI image layout
//! (image-spec 1.1) as a directory or as a tar archive of that directory.
//!
//! The layout holds one image: a single layer that is this tool's reproducible tarball of the
//! root, gzip-compressed (`application/vnd.oci.image.layer.v1.tar+gzip`); a config naming the
//! architecture, `linux`, the layer's diff_id and `/bin/bash` as the default command; and a
//! manifest, the only one `index.json` lists (so `oci-archive:FILE` needs no image name), named
//! `latest` there. The SBOM is the file `sbom.spdx.json` beside `index.json`: not a second
//! manifest in the index (an OCI 1.1 referrer), since skopeo and podman then refuse the archive
//! without an image name.
//!
//! JSON documents are written with sorted keys and no whitespace, blobs are named by their
//! sha256, and times come from SOURCE_DATE_EPOCH, so the same root gives the same digests.

use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::Digest as _;

use super::compress::Compressor;
use super::OutputError;
use crate::config::Compression;
use crate::HeldRoot;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The SBOM's file in the layout, beside `index.json`.
pub const SBOM_FILE: &str = "sbom.spdx.json";
/// The name the image has in `index.json` (`oci-archive:FILE:latest`).
pub const REF_NAME: &str = "latest";

/// What the image is built from.
pub(super) struct OciRequest<'a> {
    pub root: &'a HeldRoot,
    /// Debian architecture of the root.
    pub arch: &'a str,
    pub source_date_epoch: Option<i64>,
    /// The SPDX document attached to the image.
    pub sbom: &'a [u8],
}

/// Writes the OCI image layout of the request into the empty directory `layout`.
pub(super) fn write_layout(request: &OciRequest, layout: &Path) -> Result<(), OutputError> {
    let blobs = layout.join("blobs").join("sha256");
    for dir in [layout.to_path_buf(), layout.join("blobs"), blobs.clone()] {
        fs_err::create_dir_all(&dir).map_err(|e| write_err(&dir, e))?;
        // Modes do not depend on the umask, so the archive of the layout does not either.
        fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| write_err(&dir, e))?;
    }
    let (layer, diff_id) = write_layer(request, &blobs)?;
    let created = request.source_date_epoch.map(crate::sbom::rfc3339);
    let (architecture, variant) = oci_arch(request.arch);
    let mut config = json!({
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/bash"],
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
        "history": [{ "created_by": format!("debstrap-onion {}", env!("CARGO_PKG_VERSION")) }],
    });
    if let Some(variant) = variant {
        config["variant"] = json!(variant);
    }
    if let Some(created) = &created {
        config["created"] = json!(created);
        config["history"][0]["created"] = json!(created);
    }
    let config = write_json(&blobs, CONFIG, &config)?;
    let manifest = write_json(
        &blobs,
        MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config,
            "layers": [layer],
        }),
    )?;
    let mut image = manifest;
    image["annotations"] = json!({ "org.opencontainers.image.ref.name": REF_NAME });
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [image],
    });
    write_file(&layout.join(SBOM_FILE), request.sbom)?;
    write_file(&layout.join("index.json"), &to_bytes(&index))?;
    write_file(
        &layout.join("oci-layout"),
        &to_bytes(&json!({ "imageLayoutVersion": "1.0.0" })),
    )?;
    Ok(())
}

/// The OCI `architecture` and `variant` of a Debian architecture.
fn oci_arch(debian: &str) -> (&str, Option<&'static str>) {
    match debian {
        "i386" => ("386", None),
        "armhf" => ("arm", Some("v7")),
        "armel" => ("arm", Some("v5")),
        "arm64" => ("arm64", Some("v8")),
        "ppc64el" => ("ppc64le", None),
        "mips64el" => ("mips64le", None),
        other => (other, None),
    }
}

/// Writes the gzip-compressed tarball of the root as a blob; gives its descriptor and the
/// sha256 of the uncompressed tar (the diff_id).
fn write_layer(request: &OciRequest, blobs: &Path) -> Result<(Value, String), OutputError> {
    let temp = blobs.join(".layer.part");
    let file = fs_err::File::create(&temp).map_err(|e| write_err(&temp, e))?;
    let target = temp.display().to_string();
    let compressed = Hashing::new(BufWriter::with_capacity(1 << 20, file));
    let compressor =
        Compressor::new(compressed, Compression::Gzip).map_err(|e| write_err(&temp, e))?;
    let mut tar = Hashing::new(compressor);
    super::archive::write_archive(request.root, &mut tar, request.source_date_epoch, &target)?;
    let (compressor, diff_id, _) = tar.finish();
    let compressed = compressor.finish().map_err(|e| write_err(&temp, e))?;
    let (out, digest, size) = compressed.finish();
    let file = out
        .into_inner()
        .map_err(|e| write_err(&temp, e.into_error()))?;
    file.sync_all().map_err(|e| write_err(&temp, e))?;
    drop(file);
    set_mode(&temp)?;
    let path = blobs.join(&digest);
    fs_err::rename(&temp, &path).map_err(|e| write_err(&path, e))?;
    Ok((descriptor(LAYER, &digest, size), diff_id))
}

/// Writes `value` as a blob; gives its descriptor.
fn write_json(blobs: &Path, media_type: &str, value: &Value) -> Result<Value, OutputError> {
    write_blob(blobs, media_type, &to_bytes(value))
}

fn write_blob(blobs: &Path, media_type: &str, bytes: &[u8]) -> Result<Value, OutputError> {
    let digest = hex::encode(sha2::Sha256::digest(bytes));
    write_file(&blobs.join(&digest), bytes)?;
    Ok(descriptor(media_type, &digest, bytes.len() as u64))
}

fn descriptor(media_type: &str, digest: &str, size: u64) -> Value {
    json!({ "mediaType": media_type, "digest": format!("sha256:{digest}"), "size": size })
}

fn to_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("a JSON value always serializes")
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    fs_err::write(path, bytes).map_err(|e| write_err(path, e))?;
    set_mode(path)
}

fn set_mode(path: &Path) -> Result<(), OutputError> {
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| write_err(path, e))
}

fn write_err(path: &Path, source: io::Error) -> OutputError {
    OutputError::Write {
        target: path.display().to_string(),
        source,
    }
}

/// Hashes and counts what passes through to `inner`.
struct Hashing<W> {
    inner: W,
    hasher: sha2::Sha256,
    size: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: sha2::Sha256::new(),
            size: 0,
        }
    }

    /// The writer, the hex sha256 and the size of everything written.
    fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.size)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A staging directory for a layout, removed on drop unless kept.
pub(super) fn staging_dir(beside: &Path) -> Result<tempfile::TempDir, OutputError> {
    let dir = match beside.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = beside
        .file_name()
        .map_or_else(|| "oci".into(), |n| n.to_string_lossy().into_owned());
    tempfile::Builder::new()
        .prefix(&format!(".{name}.layout-"))
        .tempdir_in(&dir)
        .map_err(|source| OutputError::CreateTemp {
            path: beside.to_path_buf(),
            source,
        })
}
