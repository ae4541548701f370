#pragma once
// Process-wide malloc tuning for tensor workloads, applied once by main().
//
// glibc serves every allocation above its mmap threshold (128 KiB at start, raised dynamically up
// to 32 MiB) with a fresh mmap and returns it with munmap on free, and trims the heap top as soon
// as 128 KiB are free there. A training step allocates and frees activations of megabytes to tens
// of megabytes, so each step page-faults them in afresh: on the demo model (whole 48x64x48
// volumes) most of the CPU time went to the kernel, and the step took 2.3x as long as with the
// settings below (docs/BENCHMARKS.md "Allocator"). Keeping those blocks in the heap makes the
// second step reuse the first step's pages. Peak memory is unchanged; memory is returned to the
// system at exit rather than between steps.
namespace lddpm::core {

// Sets the mmap threshold to 32 MiB (glibc's maximum) and the trim threshold to 2 GiB. A no-op
// where the C library is not glibc. Environment variables (MALLOC_MMAP_THRESHOLD_, ...) set by the
// user win: they are left alone when present.
void tuneAllocatorForTensors();

}  // namespace lddpm::core
