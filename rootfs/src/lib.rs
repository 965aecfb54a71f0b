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
mod compression;
mod container;
mod copy;
pub mod digest;
mod entry_path;
mod error;
mod import;
mod layers;
pub mod layout;
pub mod platform;
mod policy;
pub mod reference;
pub mod registry;
mod store;
pub mod unpack;

pub use container::{ContainerRecord, PreparedRootfs, RootfsKind};
pub use copy::copy_layers;
pub use error::{Error, Result};
pub use import::Imported;
pub use oci_spec::image::ImageConfiguration;
pub use platform::Platform;
pub use policy::{PullDecision, PullPolicy, pull_policy};
pub use reference::Reference;
pub use registry::{NoProgress, Progress, PullOptions};
pub use store::{Image, ImageSummary, PruneReport, Store, StoreLock};
