//! podvisor-rootfs: images in, root filesystems out. No knowledge of pods or processes.
#![forbid(unsafe_code)]
