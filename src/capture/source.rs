//! The memory map of a regular input file: the one place in imscan that needs
//! `unsafe`. It owns mapping a file read-only and nothing else; parsing the
//! mapped bytes belongs to the container parsers.
//!
//! Why unsafe is needed: `memmap2::Mmap::map` is an `unsafe fn` because the
//! kernel, not Rust, guarantees what the mapped bytes contain. Mapping lets a
//! 10 GB capture be read without 10 GB of RAM and lets frames borrow their bytes
//! from the page cache with no copy, which a `read` loop cannot do.
//!
//! Why it is sound enough: imscan maps the file read-only (`PROT_READ`,
//! `MAP_PRIVATE`) and never writes through the map, and every parser treats the
//! bytes as hostile (each length is checked against the slice it has). The
//! remaining risk is another process changing the file while it is mapped: if
//! it rewrites bytes, frames may see different bytes than were hashed or
//! parsed (the result is wrong bytes, not memory unsafety in our code, since no
//! invariant is derived from them); if it truncates the file, touching a page
//! past the new end raises SIGBUS and the process dies. Forensic inputs are
//! evidence copies that nobody should be writing to; a user who must read a
//! capture that is still being written should pipe it through standard input
//! (`cat f | imscan -`), which is read as a stream and never mapped.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use memmap2::{Advice, Mmap};

/// Maps `file` read-only and tells the kernel the map will be read front to
/// back, so it reads ahead and drops pages behind us.
pub(crate) fn map_file(file: &File) -> io::Result<Mmap> {
    // SAFETY: read-only private mapping; see the module comment for the
    // concurrent-modification risk this accepts.
    let map = unsafe { Mmap::map(file)? };
    // Only a hint: a kernel that refuses it still reads the file correctly.
    let _ = map.advise(Advice::Sequential);
    Ok(map)
}

/// Drops the pages of `map[from..to]` (rounded inward to whole pages) from
/// this process's resident set, so that reading a file far larger than RAM
/// keeps a small footprint. Returns how far it released (page aligned).
pub(crate) fn release(map: &Mmap, from: usize, to: usize) -> usize {
    const PAGE: usize = 4096;
    let start = from.div_ceil(PAGE) * PAGE;
    let end = (to / PAGE) * PAGE;
    if end <= start || end > map.len() {
        return from;
    }
    // SAFETY: MADV_DONTNEED on a read-only, never-written file mapping only
    // unmaps pages: a later access (a frame of a batch still in flight)
    // faults them back in from the file with the same contents, so every
    // slice into the map stays valid and unchanged.
    let _ = unsafe {
        map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
    };
    end
}
