// Phantom generation speed: anatomy build (once per cohort), one subject generated in memory, and
// the same subject written as .nii.gz at several zlib levels (size and time), one image read back.
// The image is left in /tmp/lddpm-phantom-bench/read.nii.gz for a nibabel comparison. Run by hand:
//   build/tests/bench/data/PhantomBench [timepoints=1]
// Figures go to docs/BENCHMARKS.md ("Data: phantom").
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "core/Timer.h"
#include "data/NiftiIo.h"
#include "data/Phantom.h"

// CPU seconds of this process: on a shared, overloaded machine wall time says more about the
// neighbours than about us, so both are printed.
double cpuSeconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

int main(int argc, char** argv) {
  using namespace lddpm;
  namespace fs = std::filesystem;
  torch::set_num_threads(1);  // "per subject on one core"
  data::PhantomOptions o;
  o.trainSubjects = 1;
  o.testSubjects = 0;
  o.timepoints = argc > 1 ? std::atoi(argv[1]) : 1;
  core::Stopwatch watch;
  double cpu = cpuSeconds();
  const data::PhantomGenerator generator(o);
  std::cout << std::fixed << std::setprecision(2)
            << "anatomy build (once per cohort): " << watch.seconds() << " s wall, "
            << cpuSeconds() - cpu << " s CPU\n";
  watch.reset();
  cpu = cpuSeconds();
  const auto scans = generator.generateSubject(0);
  std::cout << "generate 1 subject x " << o.timepoints
            << " timepoint(s), in memory: " << watch.seconds() << " s wall, " << cpuSeconds() - cpu
            << " s CPU\n";
  const fs::path dir = fs::temp_directory_path() / "lddpm-phantom-bench";
  fs::create_directories(dir);
  for (int level : {1, 6}) {
    watch.reset();
    cpu = cpuSeconds();
    std::uintmax_t bytes = 0;
    for (const auto& s : scans) {
      for (const auto* v : {&s.flair, &s.t1, &s.t2}) {
        const std::string p = (dir / "img.nii.gz").string();
        data::writeNifti(p, *v, data::NiftiDtype::Float32, level);
        bytes += fs::file_size(p);
      }
      const std::string p = (dir / "mask.nii.gz").string();
      data::writeNifti(p, s.mask, data::NiftiDtype::UInt8, level);
      bytes += fs::file_size(p);
    }
    std::cout << "write " << 4 * scans.size() << " files (verified), gzip level " << level << ": "
              << watch.seconds() << " s wall, " << cpuSeconds() - cpu << " s CPU, " << bytes / 1e6
              << " MB\n";
  }
  // Reading one 182x218x182 float32 image back (level 1), the preprocessing stage's unit of work.
  const std::string image = (dir / "read.nii.gz").string();
  data::writeNifti(image, scans[0].flair, data::NiftiDtype::Float32, 1);
  watch.reset();
  cpu = cpuSeconds();
  constexpr int kReads = 5;
  for (int i = 0; i < kReads; ++i) data::readNifti(image);
  std::cout << "readNifti 182x218x182 float32 .nii.gz: " << watch.seconds() / kReads << " s wall, "
            << (cpuSeconds() - cpu) / kReads << " s CPU per read (file kept: " << image << ")\n";
  return 0;
}
