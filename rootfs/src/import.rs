//! `podvisor images import`: docker-archive (`docker save`, `skopeo copy docker-archive:`)
//! and OCI archive (a tar of an OCI layout, `ctr images export`) files, gzip-compressed or not.
//!
//! The archive is read twice rather than unpacked to a scratch directory: the first pass
//! keeps only the small JSON members (`manifest.json`, `index.json`, configs, manifests) and
//! symlinks, which say which members are blobs we need; the second streams exactly those
//! members into the blob store, hashing as they go.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::Deserialize;

use crate::digest;
use crate::error::{Error, Result};
use crate::layout;
use crate::platform;
use crate::reference::Reference;
use crate::store::Store;
use crate::unpack::{self, Compression};

/// Members up to this size are kept in memory on the first pass.
const SMALL: u64 = 4 << 20;

/// One image an import recorded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Imported {
    /// The name stored in the index.
    pub name: String,
    /// The manifest (or index) digest it points to.
    pub digest: String,
}

/// One element of a docker-archive `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// What the first pass found.
#[derive(Debug, Default)]
struct Members {
    small: HashMap<String, Vec<u8>>,
    links: HashMap<String, String>,
}

impl Members {
    /// Follows archive symlinks (old `docker save` links duplicate layers) to a real member.
    fn resolve(&self, path: &str) -> String {
        let mut p = normalize(path);
        for _ in 0..16 {
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        p
    }
}

impl Store {
    /// Imports every image in the archive at `path`, unpacks their layers and returns the
    /// names recorded.
    pub fn import(&self, path: &Path) -> Result<Vec<Imported>> {
        let imported = {
            let _gc = self.gc_lock(false)?;
            let members = first_pass(path)?;
            if members.small.contains_key("manifest.json") {
                self.import_docker(path, &members)?
            } else if members.small.contains_key("index.json") {
                self.import_oci(path, &members)?
            } else {
                return Err(Error::format(
                    path.display().to_string(),
                    "neither a docker-archive (manifest.json) nor an OCI archive (index.json)",
                ));
            }
        };
        // Unpack now, so that a container can start from the image without further work.
        for img in &imported {
            let image = self.resolve(&img.name)?;
            self.ensure_layers(&image)?;
        }
        Ok(imported)
    }

    fn import_docker(&self, path: &Path, members: &Members) -> Result<Vec<Imported>> {
        let what = format!("{} manifest.json", path.display());
        let entries: Vec<DockerEntry> = serde_json::from_slice(&members.small["manifest.json"])
            .map_err(|e| Error::format(&what, e))?;
        let mut wanted: HashMap<String, Option<(String, u64)>> = HashMap::new();
        for e in &entries {
            for l in &e.layers {
                wanted.insert(members.resolve(l), None);
            }
        }
        let stored = self.second_pass(path, &wanted)?;
        let mut out = Vec::new();
        for e in &entries {
            let config = members
                .small
                .get(&members.resolve(&e.config))
                .ok_or_else(|| Error::format(&what, format!("config {} missing", e.config)))?;
            let config_digest = self.layout.write_blob_bytes(config)?;
            let mut layers = Vec::new();
            for l in &e.layers {
                let (d, size) = stored
                    .get(&members.resolve(l))
                    .ok_or_else(|| Error::format(&what, format!("layer {l} missing")))?;
                layers.push(serde_json::json!({"mediaType": self.layer_media_type(d)?, "digest": d, "size": size}));
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
                "layers": layers,
            });
            let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::format(&what, e))?;
            let digest = self.layout.write_blob_bytes(&bytes)?;
            let desc = Descriptor::new(
                oci_spec::image::MediaType::ImageManifest,
                bytes.len() as u64,
                digest_of(&digest)?,
            );
            let names = match &e.repo_tags {
                Some(tags) if !tags.is_empty() => tags.iter().map(|t| normalize_name(t)).collect(),
                _ => vec![config_digest.clone()],
            };
            for name in names {
                self.set_name(&name, &desc)?;
                out.push(Imported {
                    name,
                    digest: digest.clone(),
                });
            }
        }
        Ok(out)
    }

    fn import_oci(&self, path: &Path, members: &Members) -> Result<Vec<Imported>> {
        let what = format!("{} index.json", path.display());
        let index: ImageIndex = serde_json::from_slice(&members.small["index.json"])
            .map_err(|e| Error::format(&what, e))?;
        let mut wanted = HashMap::new();
        for d in index.manifests() {
            self.want_tree(d, members, &mut wanted)?;
        }
        self.second_pass(path, &wanted)?;
        let mut out = Vec::new();
        for d in index.manifests() {
            let digest = d.digest().to_string();
            let name = layout::entry_name(d)
                .map(normalize_name)
                .unwrap_or_else(|| digest.clone());
            self.set_name(&name, d)?;
            out.push(Imported { name, digest });
        }
        Ok(out)
    }

    /// Adds `desc` and what it needs for this platform to `wanted` (member path → digest, size).
    fn want_tree(
        &self,
        desc: &Descriptor,
        members: &Members,
        wanted: &mut HashMap<String, Option<(String, u64)>>,
    ) -> Result<()> {
        let d = desc.digest().to_string();
        let member = format!("blobs/sha256/{}", digest::hex_part(&d)?);
        wanted.insert(member.clone(), Some((d.clone(), desc.size())));
        let Some(bytes) = members.small.get(&member) else {
            return Ok(());
        };
        let mt = desc.media_type().to_string();
        if mt.contains("index") || mt.contains("manifest.list") {
            let index: ImageIndex =
                serde_json::from_slice(bytes).map_err(|e| Error::format(&d, e))?;
            let child = platform::select(index.manifests(), &self.platform)
                .ok_or_else(|| Error::format(&d, format!("no manifest for {:?}", self.platform)))?;
            self.want_tree(child, members, wanted)?;
        } else if mt.contains("manifest") {
            let m: ImageManifest =
                serde_json::from_slice(bytes).map_err(|e| Error::format(&d, e))?;
            for l in std::iter::once(m.config()).chain(m.layers()) {
                let ld = l.digest().to_string();
                wanted.insert(
                    format!("blobs/sha256/{}", digest::hex_part(&ld)?),
                    Some((ld, l.size())),
                );
            }
        }
        Ok(())
    }

    /// Streams the wanted members into the blob store. Members with a known digest are
    /// verified against it (and skipped if already present); others are stored under the
    /// digest computed on the way. Returns member path → (digest, size).
    fn second_pass(
        &self,
        path: &Path,
        wanted: &HashMap<String, Option<(String, u64)>>,
    ) -> Result<HashMap<String, (String, u64)>> {
        let mut stored = HashMap::new();
        for (member, expect) in wanted {
            if let Some((d, size)) = expect {
                if self.layout.has_blob(d, *size)? {
                    stored.insert(member.clone(), (d.clone(), *size));
                }
            }
        }
        let mut archive = open_archive(path)?;
        for entry in archive
            .entries()
            .map_err(|e| Error::io("read archive", path, e))?
        {
            let mut entry = entry.map_err(|e| Error::io("read archive", path, e))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
            let Some(expect) = wanted.get(&name) else {
                continue;
            };
            if stored.contains_key(&name) {
                continue;
            }
            let expect = expect.as_ref().map(|(d, s)| (d.as_str(), *s));
            let got = self.layout.write_blob(
                &mut entry,
                expect,
                &format!("{} member {name}", path.display()),
            )?;
            stored.insert(name, got);
        }
        let missing: Vec<&String> = wanted.keys().filter(|k| !stored.contains_key(*k)).collect();
        if missing.is_empty() {
            Ok(stored)
        } else {
            Err(Error::format(
                path.display().to_string(),
                format!("members missing from the archive: {missing:?}"),
            ))
        }
    }

    fn layer_media_type(&self, digest: &str) -> Result<&'static str> {
        let mut magic = [0u8; 4];
        let mut f = self.layout.open_blob(digest)?;
        let blob = self.layout.blob_path(digest)?;
        let n = f
            .read(&mut magic)
            .map_err(|e| Error::io("read blob", blob, e))?;
        Ok(match Compression::detect(&magic[..n]) {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        })
    }
}

fn first_pass(path: &Path) -> Result<Members> {
    let mut members = Members::default();
    let mut archive = open_archive(path)?;
    let mut seen = HashSet::new();
    for entry in archive
        .entries()
        .map_err(|e| Error::io("read archive", path, e))?
    {
        let mut entry = entry.map_err(|e| Error::io("read archive", path, e))?;
        let name = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Some(target) = entry.link_name_bytes() {
                let target = String::from_utf8_lossy(&target).into_owned();
                let base = if kind.is_symlink() {
                    name.rsplit_once('/').map_or("", |(d, _)| d).to_string()
                } else {
                    String::new()
                };
                members
                    .links
                    .insert(name, normalize(&format!("{base}/{target}")));
            }
        } else if kind.is_file() && entry.size() <= SMALL && seen.insert(name.clone()) {
            let mut buf = Vec::with_capacity(entry.size() as usize);
            entry
                .read_to_end(&mut buf)
                .map_err(|e| Error::io("read archive member", path.join(&name), e))?;
            members.small.insert(name, buf);
        }
    }
    Ok(members)
}

fn open_archive(path: &Path) -> Result<tar::Archive<Box<dyn Read>>> {
    let file = File::open(path).map_err(|e| Error::io("open archive", path, e))?;
    let stream = unpack::decompress(file).map_err(|e| Error::io("read archive", path, e))?;
    Ok(tar::Archive::new(stream))
}

/// Lexically normalises an archive member path (`./a/../b` → `b`); `..` above the top is dropped.
fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

/// The normalised reference for a name, or the name unchanged if it is not a reference.
fn normalize_name(n: &str) -> String {
    Reference::parse(n)
        .map(|r| r.to_string())
        .unwrap_or_else(|_| n.to_string())
}

fn digest_of(d: &str) -> Result<oci_spec::image::Digest> {
    d.parse()
        .map_err(|e| Error::format(format!("digest {d}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_and_symlinks_normalise() {
        assert_eq!(normalize("./abc/layer.tar"), "abc/layer.tar");
        assert_eq!(normalize("abc/../def/layer.tar"), "def/layer.tar");
        let mut m = Members::default();
        m.links
            .insert("b/layer.tar".into(), normalize("b/../a/layer.tar"));
        assert_eq!(m.resolve("./b/layer.tar"), "a/layer.tar");
        assert_eq!(
            normalize_name("busybox:1.36"),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(normalize_name("Not A Ref"), "Not A Ref");
    }
}
