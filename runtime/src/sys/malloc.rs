//! glibc allocator tuning through `mallopt(3)`: a process with one thread per pod keeps
//! an allocator arena per thread otherwise, and each arena holds freed memory for reuse.

use std::io;

/// The `mallopt(3)` parameters podvisor sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MallocParam {
    /// `M_ARENA_MAX`: the most arenas threads share (glibc's default is 8 per core).
    ArenaMax,
    /// `M_TRIM_THRESHOLD`: free memory at the top of the heap above which it is given back.
    TrimThreshold,
    /// `M_MMAP_THRESHOLD`: allocations from this size on get their own mapping.
    MmapThreshold,
}

/// Sets one glibc allocator parameter. Best called before the process starts threads.
pub fn mallopt(param: MallocParam, value: i32) -> io::Result<()> {
    let param = match param {
        MallocParam::ArenaMax => libc::M_ARENA_MAX,
        MallocParam::TrimThreshold => libc::M_TRIM_THRESHOLD,
        MallocParam::MmapThreshold => libc::M_MMAP_THRESHOLD,
    };
    // SAFETY: mallopt takes two integers, touches only the allocator's own state under its
    // lock, and reports an unknown parameter or a bad value by returning 0.
    let ok = unsafe { libc::mallopt(param, value) };
    if ok == 1 {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("mallopt({param}, {value}) refused the value"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_accepts_each_parameter() {
        // The effect on memory is measured by scripts/bench-scale, not here.
        assert!(mallopt(MallocParam::ArenaMax, 2).is_ok());
        assert!(mallopt(MallocParam::TrimThreshold, 128 * 1024).is_ok());
        assert!(mallopt(MallocParam::MmapThreshold, 128 * 1024).is_ok());
    }
}
