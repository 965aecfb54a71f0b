//! Every `unsafe` operation of the workspace lives here: thin wrappers over the syscalls
//! rustix does not offer (`clone3` with `CLONE_INTO_CGROUP`/`CLONE_PIDFD`/`CLONE_PARENT`,
//! `seccomp(2)`, `mount(2)` with arbitrary flags, `close_range(2)`, `signalfd(2)`, `bpf(2)`) and glibc's `mallopt(3)`.
//!
//! Each wrapper takes and returns owned or borrowed file descriptors, never bare integers
//! the caller must remember to close.

mod bpf;
mod clone;
mod malloc;
mod misc;

pub use bpf::attach_device_filter;
pub use clone::{ReexecChild, fork_into_parent, spawn_reexec};
pub use malloc::{MallocParam, malloc_trim, mallopt};
pub use misc::{
    SockFilter, block_into_signalfd, borrow_inherited, install_seccomp, mark_cloexec_from, mount,
    owned_from_inherited, pidfd_kill, take_inherited_pipe, unblock_all_signals,
};
