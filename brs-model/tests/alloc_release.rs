//! `alloc::release_free_memory` gives back free memory that glibc's own trimming cannot: pages
//! freed below a block still in use. A test binary of its own, so no other test allocates while
//! this one reads the resident set.

use brs_model::alloc::release_free_memory;

const BLOCK: usize = 100 * 1024;
const BLOCKS: usize = 800;

fn rss_kib() -> u64 {
    brs_testkit::status_kib(std::process::id(), "VmRSS")
}

#[test]
fn free_pages_below_a_live_block_go_back_to_the_kernel() {
    // Blocks under glibc's mmap threshold (128 KiB at start) come from a heap; every page is
    // written, so each is resident.
    let blocks: Vec<Vec<u8>> = (0..BLOCKS).map(|i| vec![i as u8 | 1; BLOCK]).collect();
    // Allocated after them, so the heap's top stays in use and free() cannot trim what lies below.
    let pin = vec![7u8; BLOCK];
    drop(blocks);
    let freed = rss_kib();
    let released = release_free_memory();
    let after = rss_kib();
    let returned_mib = freed.saturating_sub(after) as f64 / 1024.0;
    let freed_mib = (BLOCK * BLOCKS) as f64 / (1024.0 * 1024.0);
    assert!(released, "malloc_trim released nothing");
    assert!(
        returned_mib > 0.8 * freed_mib,
        "{returned_mib:.1} MiB of {freed_mib:.1} MiB freed went back (RSS {freed} -> {after} KiB)"
    );
    assert_eq!(pin[BLOCK - 1], 7, "the live block is intact");
}
