//! `Store::pull`: resolve a reference on the registry (or its mirrors), fetch manifest,
//! config and layers with every byte verified against its digest, record the name, unpack.

use std::io::Read;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use super::auth::CredentialStore;
use super::{Progress, PullOptions, RegistryClient};
use crate::digest;
use crate::error::{Error, Result};
use crate::platform;
use crate::reference::Reference;
use crate::store::{Image, Store};

/// Every manifest kind we accept, for the `Accept` header.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";
/// Manifests larger than this are refused (the distribution spec suggests 4 MiB).
const MANIFEST_LIMIT: u64 = 4 << 20;

impl Store {
    /// Pulls `reference` into the store, trying its mirrors first and the registry last, and
    /// unpacks its layers. Blobs already present are not fetched again. The image is recorded
    /// under the normalised reference (`docker.io/library/busybox:1.36`, or `name@digest`).
    pub fn pull(
        &self,
        reference: &str,
        opts: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Image> {
        let reference = Reference::parse(reference)?;
        let creds = CredentialStore::load_first(&opts.credential_files)?;
        let mut endpoints: Vec<String> = opts
            .mirrors
            .get(reference.registry())
            .cloned()
            .unwrap_or_default();
        endpoints.push(reference.registry().to_string());
        let mut last = None;
        for endpoint in &endpoints {
            let client = RegistryClient::new(endpoint, reference.repository(), opts, &creds)?;
            match self.pull_from(&client, &reference, progress) {
                Ok(image) => return Ok(image),
                Err(e) => {
                    tracing::warn!(image = %reference, endpoint = %endpoint, error = %e, "pull failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::NotFound(reference.to_string())))
    }

    fn pull_from(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        progress: &dyn Progress,
    ) -> Result<Image> {
        let _gc = self.gc_lock(false)?;
        let (top, bytes) = fetch_manifest(client, reference.manifest_selector())?;
        if let Some(pinned) = reference.digest() {
            digest::check(
                format!("manifest of {reference}"),
                pinned,
                top.digest().as_ref(),
            )?;
        }
        self.layout.write_blob_bytes(&bytes)?;
        let manifest_bytes = if is_index(&top) {
            let index: ImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| Error::format(format!("index of {reference}"), e))?;
            let child = platform::select(index.manifests(), &self.platform).ok_or_else(|| {
                Error::format(
                    format!("index of {reference}"),
                    format!("no manifest for {:?}", self.platform),
                )
            })?;
            let (desc, bytes) = fetch_manifest(client, child.digest().as_ref())?;
            digest::check(
                format!("manifest of {reference}"),
                child.digest().as_ref(),
                desc.digest().as_ref(),
            )?;
            self.layout.write_blob_bytes(&bytes)?;
            bytes
        } else {
            bytes
        };
        let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| Error::format(format!("manifest of {reference}"), e))?;
        for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
            self.fetch_blob(client, blob, progress)?;
        }
        let name = reference.to_string();
        self.set_name(&name, &top)?;
        let image = self.resolve(&name)?;
        drop(_gc);
        self.ensure_layers(&image)?;
        Ok(image)
    }

    /// Downloads one blob unless present, verifying size and digest while streaming.
    fn fetch_blob(
        &self,
        client: &RegistryClient,
        desc: &Descriptor,
        progress: &dyn Progress,
    ) -> Result<()> {
        let d = desc.digest().to_string();
        if self.layout.has_blob(&d, desc.size())? {
            progress.done(&d, true);
            return Ok(());
        }
        progress.start(&d, desc.size());
        let resp = client.get(&format!("blobs/{d}"), "*/*")?;
        // One byte more than promised, so an oversized blob is detected rather than truncated.
        let body = resp
            .into_body()
            .into_with_config()
            .limit(desc.size() + 1)
            .reader();
        let mut reader = ProgressReader {
            inner: body,
            digest: &d,
            progress,
        };
        self.layout.write_blob(
            &mut reader,
            Some((&d, desc.size())),
            &format!("blob {d} from {}", client.host()),
        )?;
        progress.done(&d, false);
        Ok(())
    }
}

/// Fetches a manifest or index by tag or digest; returns a descriptor for what was received
/// (digest computed from the bytes) and the bytes.
fn fetch_manifest(client: &RegistryClient, selector: &str) -> Result<(Descriptor, Vec<u8>)> {
    let resp = client.get(&format!("manifests/{selector}"), MANIFEST_ACCEPT)?;
    let header_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
    let mut bytes = Vec::new();
    resp.into_body()
        .into_with_config()
        .limit(MANIFEST_LIMIT)
        .reader()
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read manifest", client.host(), e))?;
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(&bytes)
        .map_err(|e| Error::format(format!("manifest {selector} from {}", client.host()), e))?;
    let media_type = probe.media_type.or(header_type).unwrap_or_else(|| {
        if probe.manifests.is_some() {
            "application/vnd.oci.image.index.v1+json"
        } else {
            "application/vnd.oci.image.manifest.v1+json"
        }
        .to_string()
    });
    let digest = digest::sha256_of(&bytes);
    let parsed: oci_spec::image::Digest = digest
        .parse()
        .map_err(|e| Error::format(format!("digest {digest}"), e))?;
    Ok((
        Descriptor::new(
            MediaType::from(media_type.as_str()),
            bytes.len() as u64,
            parsed,
        ),
        bytes,
    ))
}

fn is_index(desc: &Descriptor) -> bool {
    let mt = desc.media_type().to_string();
    mt.contains("image.index") || mt.contains("manifest.list")
}

/// Reports bytes to a [`Progress`] as they are read.
struct ProgressReader<'a, R> {
    inner: R,
    digest: &'a str,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(self.digest, n as u64);
        Ok(n)
    }
}
