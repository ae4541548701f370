#!/usr/bin/env bash
# Downloads, on a Debian 12 development machine, the packages a GPU machine lacks for the CUDA
# build (docs/gpu.md): MPI, serial HDF5, Boost.Program_options, nifticlib, nlohmann-json,
# xxHash, blosc, libpng, GoogleTest and their runtime libraries. tests/gpu/check.sh unpacks them there.
#   bash tests/gpu/fetch-debs.sh [DIR]      (default .gpu-debs, git-ignored; about 32 MB)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$root/.gpu-debs}
mkdir -p "$dir"
cd "$dir"
# Headers and link-time libraries of what lesion-ddpm uses directly.
direct=(libopenmpi-dev libopenmpi3 openmpi-common openmpi-bin libhdf5-dev libhdf5-103-1
        libboost-program-options1.74-dev libboost-program-options1.74.0 libboost1.74-dev
        libnifti2-dev libniftiio-dev libnifti2-2 libznz-dev libznz3 nlohmann-json3-dev libxxhash-dev libxxhash0
        libblosc-dev libblosc1
        libpng-dev libpng16-16 zlib1g-dev libgtest-dev)
# What those libraries link (from ldd of libmpi, libhdf5_serial, the MPI components, ...): used on
# the GPU machine only where it has no library of the same soname (check.sh decides).
transitive=(libltdl7 libaec0 libsz2 ibverbs-providers libatomic1 libbrotli1 libcurl4
            libevent-core-2.1-7 libevent-pthreads-2.1-7 libfabric1 libffi8 libgmp10 libgnutls30
            libgssapi-krb5-2 libhogweed6 libhwloc15 libibverbs1 libidn2-0 libk5crypto3 libkrb5-3
            libkrb5support0 libldap-2.5-0 libmunge2 libnettle8 libnghttp2-14 libnl-3-200
            libnl-route-3-200 libnuma1 libp11-kit0 libpmix2 libpsl5 libpsm-infinipath1 libpsm2-2
            librdmacm1 librtmp1 libsasl2-2 libssh2-1 libssl3 libtasn1-6 libucx0 libudev1
            libunistring2 libuuid1 libzstd1 libkeyutils1 libcom-err2 liblz4-1 libsnappy1v5)
apt-get download "${direct[@]}" "${transitive[@]}"
printf '%s\n' "${direct[@]}" > direct.txt
echo "$(ls ./*.deb | wc -l) packages in $dir ($(du -sh . | cut -f1))"
