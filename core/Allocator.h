#pragma once
// Process-wide malloc tuning for tensor workloads, applied once by main().
//
// glibc serves every allocation above its mmap threshold (128 KiB at start, raised dynamically up
// to 32 MiB) with a fresh mmap and returns it with munmap on free, and trims the heap top as soon
// as 128 KiB are free there. A training step allocates and frees activations of megabytes to tens
// of megabytes, so each step page-faults them in afresh: on the demo model (whole 48x64x48
// volumes) most of the CPU time went to the kernel, and the step took 2.3x as long as with the
// settings below (docs/BENCHMARKS.md "Allocator"). Keeping those blocks in the heap makes the
// second step reuse the first step's pages. Blocks above 32 MiB (an attention matrix of 16^3
// tokens is 64 MiB; whole-volume activations of the paper's network are hundreds) cannot be kept
// by any threshold, so malloc does not use mmap at all: sampling the end-to-end tests' tiny
// network, whose attention runs at 16^3 tokens, went from 5.4 to 2.8 s per volume. Memory is
// returned to the system at exit rather than between steps; blocks freed in the heap are reused.
namespace lddpm::core {

// Serves every block from the heap (no mmap; the threshold is 32 MiB, glibc's maximum, for a user
// who sets MALLOC_MMAP_MAX_) and sets the trim threshold to 2 GiB. A no-op where the C library is
// not glibc. Environment variables (MALLOC_MMAP_MAX_, MALLOC_MMAP_THRESHOLD_,
// MALLOC_TRIM_THRESHOLD_) set by the user win: each is left alone when present.
void tuneAllocatorForTensors();

}  // namespace lddpm::core
