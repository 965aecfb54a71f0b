//! glibc allocator tuning through `mallopt(3)`: a process with one thread per pod keeps
//! an allocator arena per thread otherwise, and each arena holds freed memory for reuse;
//! `malloc_trim(3)` gives memory freed after a burst of work back to the kernel.

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

/// Gives the heap's free memory back to the kernel (`malloc_trim(0)`: the free top of
/// each arena and the free whole pages inside it). Returns whether any was given back.
///
/// glibc keeps memory freed below the top of an arena for reuse; after a burst (a hundred
/// pods starting) that is megabytes a long-lived daemon will not need again soon.
pub fn malloc_trim() -> bool {
    // SAFETY: malloc_trim takes the allocator's locks itself and only releases pages of
    // free chunks; it touches no memory the program holds.
    unsafe { libc::malloc_trim(0) == 1 }
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

    #[test]
    fn trim_gives_back_freed_pages() {
        // 256 blocks of 64 KiB (heap, not mmap, with a 1 MiB threshold); freeing all but
        // the last leaves 16 MiB of free whole pages under a live chunk, which only a trim
        // gives back to the kernel.
        let _ = mallopt(MallocParam::MmapThreshold, 1024 * 1024);
        let mut blocks: Vec<Vec<u8>> = (0..256).map(|_| vec![1u8; 64 * 1024]).collect();
        let last = blocks.pop();
        drop(blocks);
        let before = resident_kib();
        assert!(malloc_trim());
        let after = resident_kib();
        assert!(
            before - after >= 8 * 1024,
            "resident {before} KiB before the trim, {after} KiB after"
        );
        drop(last);
    }

    fn resident_kib() -> i64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: i64 = statm.split(' ').nth(1).unwrap().parse().unwrap();
        // SAFETY: sysconf only reads a system constant.
        pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } / 1024
    }
}
