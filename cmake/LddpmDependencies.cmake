# Every third-party dependency is found here, once. All come from Debian 12 packages
# (launch/setup.sh installs them); CUDA and NCCL are optional and only detected.
find_package(Threads REQUIRED)
find_package(Torch REQUIRED)
find_package(MPI REQUIRED COMPONENTS C)
set(HDF5_PREFER_PARALLEL FALSE)  # one serial file per rank (docs/data.md)
find_package(HDF5 REQUIRED COMPONENTS C)
if(HDF5_IS_PARALLEL)
  message(FATAL_ERROR "Found a parallel HDF5 (${HDF5_INCLUDE_DIRS}); lesion-ddpm needs the serial "
                      "thread-safe build (Debian: libhdf5-dev, include dir /usr/include/hdf5/serial)")
endif()
find_package(Boost REQUIRED COMPONENTS program_options)
find_package(nlohmann_json 3.9 REQUIRED)
find_package(ZLIB REQUIRED)
find_package(PNG REQUIRED)
if(LDDPM_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

# Debian's NIFTIConfig.cmake points at targets that do not exist: find nifti2 by hand and never
# link niftiio beside it (same symbols, different structs; docs/facts.md).
find_path(NIFTI2_INCLUDE_DIR nifti2_io.h PATH_SUFFIXES nifti REQUIRED)
find_library(NIFTI2_LIBRARY nifti2 REQUIRED)
find_library(ZNZ_LIBRARY znz REQUIRED)
add_library(lddpm::nifti2 INTERFACE IMPORTED)
set_target_properties(lddpm::nifti2 PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${NIFTI2_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES "${NIFTI2_LIBRARY};${ZNZ_LIBRARY};ZLIB::ZLIB;m")

add_library(lddpm::hdf5 INTERFACE IMPORTED)
set_target_properties(lddpm::hdf5 PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${HDF5_INCLUDE_DIRS}"
  INTERFACE_LINK_LIBRARIES "${HDF5_C_LIBRARIES}"
  INTERFACE_COMPILE_DEFINITIONS "${HDF5_DEFINITIONS}")

# XXH3 checksums of store shards (Debian libxxhash-dev; docs/store.md says why). Debian ships no
# CMake config for it, so find it by hand like nifti2.
find_path(XXHASH_INCLUDE_DIR xxhash.h REQUIRED)
find_library(XXHASH_LIBRARY xxhash REQUIRED)
add_library(lddpm::xxhash INTERFACE IMPORTED)
set_target_properties(lddpm::xxhash PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${XXHASH_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES "${XXHASH_LIBRARY}")

# Blosc, to decode lz4/zstd chunks outside HDF5 in the loader's threads (data/DirectChunks.h): the
# library behind the HDF5 blosc filter plugin that writes them (Debian libblosc-dev).
find_path(BLOSC_INCLUDE_DIR blosc.h REQUIRED)
find_library(BLOSC_LIBRARY blosc REQUIRED)
add_library(lddpm::blosc INTERFACE IMPORTED)
set_target_properties(lddpm::blosc PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${BLOSC_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES "${BLOSC_LIBRARY}")

# CUDA is usable when the LibTorch we found was built with it (Debian's is CPU-only; a PyTorch
# wheel's share/cmake/Torch is not). NCCL must then be the one copy in the process (docs/gpu.md).
set(LDDPM_WITH_CUDA 0)
set(LDDPM_WITH_NCCL 0)
if(LDDPM_ENABLE_CUDA AND TARGET torch_cuda)
  set(LDDPM_WITH_CUDA 1)
  find_package(CUDAToolkit)
  # Prefer the NCCL a PyTorch wheel's LibTorch loads (site-packages/nvidia/nccl, found through
  # its RPATH), then NCCL_ROOT/NCCL_HOME, then the system: one copy, the one torch uses.
  # NAMES_PER_DIR: a system libnccl.so must not win over the wheel's libnccl.so.2.
  set(_torch_nccl "${TORCH_INSTALL_PREFIX}/../nvidia/nccl")
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS "${_torch_nccl}" ENV NCCL_ROOT ENV NCCL_HOME
            PATH_SUFFIXES include)
  find_library(NCCL_LIBRARY NAMES libnccl.so.2 nccl NAMES_PER_DIR
               HINTS "${_torch_nccl}" ENV NCCL_ROOT ENV NCCL_HOME PATH_SUFFIXES lib lib64)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY AND CUDAToolkit_FOUND)
    set(LDDPM_WITH_NCCL 1)
    add_library(lddpm::nccl INTERFACE IMPORTED)
    set_target_properties(lddpm::nccl PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${NCCL_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "${NCCL_LIBRARY};CUDA::cudart")
  endif()
endif()
