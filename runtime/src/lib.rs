//! podvisor-runtime: executes one container described by an OCI runtime spec.
//!
//! It knows nothing of pods or images: the agent hands it an `oci_spec::runtime::Spec`
//! and a bundle, exactly as containerd hands one to runc.
