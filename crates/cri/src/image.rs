//! OCI images built in-process, with no registry and no image tooling: one gzip layer
//! from a list of entries, an image config, a manifest and an index, packed as a tar of
//! an OCI image layout (what `ctr images import`, `skopeo copy oci-archive:` and krust's
//! own runtime read). The pause image is one of these: the host's static busybox
//! running `sleep inf`.
//!
//! Archives are reproducible: every timestamp is the epoch and every owner is root, so
//! building the same image twice gives the same digests (and re-importing it is a no-op).

use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The sandbox (pause) image name krust's containerd is configured with. A `localhost/`
/// name: if it were ever missing, containerd would try to pull it from a loopback
/// address, never from the network.
pub const PAUSE_IMAGE: &str = "localhost/krust/pause:busybox";

/// Where Debian's busybox-static installs the static busybox the pause image copies.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// OCI media types used in the archive.
pub mod media_type {
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
}

/// The index annotation containerd takes an imported image's name from.
pub const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";
/// The OCI image-layout annotation naming a reference in `index.json`.
pub const OCI_REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// One entry of an image layer. Paths are relative to the image's root (`bin/busybox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir { path: String, mode: u32 },
    File { path: String, mode: u32, contents: Vec<u8> },
    Symlink { path: String, target: String },
}

/// A single-layer OCI image to pack into an archive.
#[derive(Debug, Clone, Default)]
pub struct OciImage {
    /// The full reference the image is imported as, e.g. `localhost/krust/pause:busybox`.
    pub name: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub layer: Vec<Entry>,
}

/// A content-addressed blob of the archive.
#[derive(Debug, Clone)]
pub struct Blob {
    /// `sha256:<hex>`.
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Self {
        Self { digest: sha256_digest(&bytes), bytes }
    }

    fn descriptor(&self, media_type: &str) -> serde_json::Value {
        json!({ "mediaType": media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

/// The parts of a built image, with the archive that holds them.
#[derive(Debug, Clone)]
pub struct Built {
    /// The gzip layer.
    pub layer: Blob,
    /// `sha256:` of the uncompressed layer tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
    /// The image config; its digest is the image id CRI runtimes report.
    pub config: Blob,
    pub manifest: Blob,
    /// The tar of the OCI image layout.
    pub archive: Vec<u8>,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The OCI/Go name of the architecture this program runs on.
pub fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

impl OciImage {
    /// Packs the image: layer, config, manifest, `index.json` (naming the image in both
    /// the containerd and the OCI ref-name annotations) and `oci-layout`.
    pub fn build(&self) -> Result<Built> {
        if self.name.is_empty() {
            return Err(Error::InvalidOption { option: "image name", reason: "it is empty".into() });
        }
        let layer_tar = layer_tar(&self.layer)?;
        let diff_id = sha256_digest(&layer_tar);
        let layer = Blob::new(gzip(&layer_tar)?);

        let mut container_config = serde_json::Map::new();
        if !self.entrypoint.is_empty() {
            container_config.insert("Entrypoint".into(), json!(self.entrypoint));
        }
        if !self.cmd.is_empty() {
            container_config.insert("Cmd".into(), json!(self.cmd));
        }
        if !self.env.is_empty() {
            container_config.insert("Env".into(), json!(self.env));
        }
        container_config.insert("WorkingDir".into(), json!("/"));
        let config = Blob::new(to_json(&json!({
            "created": "1970-01-01T00:00:00Z",
            "architecture": oci_architecture(),
            "os": "linux",
            "config": container_config,
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
            "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": "krust image builder" }],
        }))?);
        let manifest = Blob::new(to_json(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::MANIFEST,
            "config": config.descriptor(media_type::CONFIG),
            "layers": [layer.descriptor(media_type::LAYER_GZIP)],
        }))?);
        let mut manifest_descriptor = manifest.descriptor(media_type::MANIFEST);
        manifest_descriptor["platform"] = json!({ "architecture": oci_architecture(), "os": "linux" });
        manifest_descriptor["annotations"] = json!({
            CONTAINERD_NAME_ANNOTATION: self.name,
            OCI_REF_NAME_ANNOTATION: self.name,
        });
        let index = to_json(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::INDEX,
            "manifests": [manifest_descriptor],
        }))?;
        let oci_layout = to_json(&json!({ "imageLayoutVersion": "1.0.0" }))?;

        let mut archive = tar::Builder::new(Vec::new());
        append_file(&mut archive, "oci-layout", 0o644, &oci_layout)?;
        append_file(&mut archive, "index.json", 0o644, &index)?;
        append_dir(&mut archive, "blobs/", 0o755)?;
        append_dir(&mut archive, "blobs/sha256/", 0o755)?;
        for blob in [&layer, &config, &manifest] {
            let hex = blob.digest.trim_start_matches("sha256:");
            append_file(&mut archive, &format!("blobs/sha256/{hex}"), 0o644, &blob.bytes)?;
        }
        let archive = archive.into_inner().map_err(archive_error)?;
        Ok(Built { layer, diff_id, config, manifest, archive })
    }
}

/// The pause image: `busybox` (a static binary, normally [`HOST_BUSYBOX`]) at
/// `/bin/busybox`, with entrypoint `["/bin/busybox", "sleep", "inf"]`. Blocking: reads
/// the binary.
pub fn pause_image(name: &str, busybox: &Path) -> Result<OciImage> {
    let contents = std::fs::read(busybox).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::NotInstalled {
            program: "busybox",
            message: format!(
                "{} is missing: the pause image is built from a static busybox, install Debian's busybox-static package (apt-get install busybox-static)",
                busybox.display()
            ),
        },
        _ => Error::io("reading busybox for the pause image from", busybox, source),
    })?;
    Ok(OciImage {
        name: name.to_owned(),
        entrypoint: vec!["/bin/busybox".into(), "sleep".into(), "inf".into()],
        cmd: Vec::new(),
        env: vec!["PATH=/bin".into()],
        layer: vec![
            Entry::Dir { path: "bin".into(), mode: 0o755 },
            Entry::File { path: "bin/busybox".into(), mode: 0o755, contents },
        ],
    })
}

fn to_json(value: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| Error::InvalidOption { option: "image metadata", reason: e.to_string() })
}

fn archive_error(source: std::io::Error) -> Error {
    Error::io("writing an image archive in", "memory", source)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    header
}

fn append_file(tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, bytes: &[u8]) -> Result<()> {
    let mut header = header(tar::EntryType::Regular, mode, bytes.len() as u64);
    tar.append_data(&mut header, path, bytes).map_err(archive_error)
}

fn append_dir(tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) -> Result<()> {
    let mut header = header(tar::EntryType::Directory, mode, 0);
    tar.append_data(&mut header, path, std::io::empty()).map_err(archive_error)
}

fn layer_tar(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for entry in entries {
        let path = match entry {
            Entry::Dir { path, .. } | Entry::File { path, .. } | Entry::Symlink { path, .. } => path,
        };
        if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == "..") {
            return Err(Error::InvalidOption {
                option: "layer entry path",
                reason: format!("{path:?} must be relative and stay inside the image"),
            });
        }
        match entry {
            Entry::Dir { path, mode } => {
                append_dir(&mut tar, &format!("{}/", path.trim_end_matches('/')), *mode)?
            }
            Entry::File { path, mode, contents } => append_file(&mut tar, path, *mode, contents)?,
            Entry::Symlink { path, target } => {
                let mut header = header(tar::EntryType::Symlink, 0o777, 0);
                tar.append_link(&mut header, path, target).map_err(archive_error)?;
            }
        }
    }
    tar.into_inner().map_err(archive_error)
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    // GzEncoder writes an mtime of zero, which keeps the digest reproducible.
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).map_err(archive_error)?;
    encoder.finish().map_err(archive_error)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Read;

    use super::*;

    fn sample() -> OciImage {
        OciImage {
            name: "localhost/krust/sample:1".into(),
            entrypoint: vec!["/bin/tool".into(), "run".into()],
            cmd: vec!["--flag".into()],
            env: vec!["PATH=/bin".into()],
            layer: vec![
                Entry::Dir { path: "bin".into(), mode: 0o755 },
                Entry::File {
                    path: "bin/tool".into(),
                    mode: 0o755,
                    contents: b"#!/bin/sh\necho hi\n".to_vec(),
                },
                Entry::Symlink { path: "bin/alias".into(), target: "tool".into() },
            ],
        }
    }

    fn unpack(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        let mut tar = tar::Archive::new(archive);
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            files.insert(path, bytes);
        }
        files
    }

    fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, digest: &str) -> &'a [u8] {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let bytes = &files[&format!("blobs/sha256/{hex}")];
        assert_eq!(sha256_digest(bytes), digest, "blob content matches its name");
        bytes
    }

    #[test]
    fn the_archive_is_a_valid_oci_layout_whose_blobs_match_their_descriptors() {
        let built = sample().build().unwrap();
        let files = unpack(&built.archive);
        let layout: serde_json::Value = serde_json::from_slice(&files["oci-layout"]).unwrap();
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");

        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        assert_eq!(index["schemaVersion"], 2);
        let descriptor = &index["manifests"][0];
        assert_eq!(descriptor["mediaType"], media_type::MANIFEST);
        assert_eq!(descriptor["annotations"][CONTAINERD_NAME_ANNOTATION], "localhost/krust/sample:1");
        assert_eq!(descriptor["annotations"][OCI_REF_NAME_ANNOTATION], "localhost/krust/sample:1");
        assert_eq!(descriptor["platform"]["os"], "linux");
        assert_eq!(descriptor["platform"]["architecture"], oci_architecture());

        let manifest_bytes = blob(&files, descriptor["digest"].as_str().unwrap());
        assert_eq!(descriptor["size"], manifest_bytes.len());
        let manifest: serde_json::Value = serde_json::from_slice(manifest_bytes).unwrap();
        let config_bytes = blob(&files, manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(manifest["config"]["size"], config_bytes.len());
        let layer_bytes = blob(&files, manifest["layers"][0]["digest"].as_str().unwrap());
        assert_eq!(manifest["layers"][0]["size"], layer_bytes.len());
        assert_eq!(manifest["layers"][0]["mediaType"], media_type::LAYER_GZIP);

        let config: serde_json::Value = serde_json::from_slice(config_bytes).unwrap();
        assert_eq!(config["config"]["Entrypoint"], json!(["/bin/tool", "run"]));
        assert_eq!(config["config"]["Cmd"], json!(["--flag"]));
        assert_eq!(config["config"]["Env"], json!(["PATH=/bin"]));
        let mut layer_tar = Vec::new();
        flate2::read::GzDecoder::new(layer_bytes).read_to_end(&mut layer_tar).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], sha256_digest(&layer_tar));
        assert_eq!(built.config.digest, manifest["config"]["digest"]);
    }

    #[test]
    fn the_layer_holds_the_entries_owned_by_root() {
        let built = sample().build().unwrap();
        let mut layer_tar = Vec::new();
        flate2::read::GzDecoder::new(built.layer.bytes.as_slice()).read_to_end(&mut layer_tar).unwrap();
        let mut tar = tar::Archive::new(layer_tar.as_slice());
        let mut seen = Vec::new();
        for entry in tar.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
            let link = entry.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
            seen.push((entry.path().unwrap().to_string_lossy().into_owned(), header.mode().unwrap(), link));
        }
        assert_eq!(
            seen,
            vec![
                ("bin/".to_owned(), 0o755, None),
                ("bin/tool".to_owned(), 0o755, None),
                ("bin/alias".to_owned(), 0o777, Some("tool".to_owned())),
            ]
        );
    }

    #[test]
    fn building_twice_gives_the_same_digests() {
        let a = sample().build().unwrap();
        let b = sample().build().unwrap();
        assert_eq!(a.manifest.digest, b.manifest.digest);
        assert_eq!(a.archive, b.archive);
    }

    #[test]
    fn entries_may_not_escape_the_image_root() {
        for path in ["/etc/passwd", "../x", "a/../../x", ""] {
            let mut image = sample();
            image.layer = vec![Entry::Dir { path: path.into(), mode: 0o755 }];
            assert!(image.build().is_err(), "{path:?} was accepted");
        }
    }

    #[test]
    fn the_pause_image_runs_busybox_sleep_inf() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("busybox");
        std::fs::write(&fake, b"\x7fELF fake").unwrap();
        let image = pause_image(PAUSE_IMAGE, &fake).unwrap();
        assert_eq!(image.entrypoint, ["/bin/busybox", "sleep", "inf"]);
        assert!(image.layer.contains(&Entry::File {
            path: "bin/busybox".into(),
            mode: 0o755,
            contents: b"\x7fELF fake".to_vec(),
        }));
    }

    #[test]
    fn a_missing_busybox_says_what_to_install() {
        let err = pause_image(PAUSE_IMAGE, Path::new("/nonexistent/busybox")).unwrap_err();
        assert!(err.to_string().contains("apt-get install busybox-static"), "{err}");
    }
}
