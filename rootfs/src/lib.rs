//! podvisor-rootfs: images in, root filesystems out. No knowledge of pods or processes.
//!
//! The store under a root directory (default `/var/lib/podvisor`):
//!
//! ```text
//! images/                      an OCI image layout (oci-layout, index.json, blobs/sha256/)
//! layers/sha256/<diff_id>/     each layer unpacked once, in overlayfs form
//! containers/<id>/             one prepared root filesystem: upper/, work/, rootfs/, image.json
//! images.lock                  serialises index.json updates between podvisor processes
//! ```
//!
//! Entry points: [`Reference::parse`], [`Store::open`], [`Store::import`], [`Store::pull`],
//! [`Store::prepare`], [`Store::remove_container`], [`Store::list`], [`Store::remove`],
//! [`Store::prune`], [`Store::image_config`], and the pure [`pull_policy`].
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod atomic;
pub mod digest;
mod entry_path;
mod error;
pub mod layout;
pub mod reference;
pub mod unpack;

pub use error::{Error, Result};
pub use reference::Reference;
