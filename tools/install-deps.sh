#!/usr/bin/env bash
# Installs what parx needs to build, test and benchmark on Debian 12, from Debian's packages.
# Idempotent and quick when everything is present. Run as root (or with sudo available).
set -euo pipefail

packages=(
  g++ cmake ninja-build ccache pkg-config   # toolchain
  libxxhash-dev                             # frame checksums of the process-pool channel
  libzstd-dev                               # ClusterPool: compression of large messages
  libasio-dev                               # parx::aio (standalone Asio, header-only)
  libopenmpi-dev openmpi-bin                # parx::mpi and the ClusterPool (MPICH also works)
  libcli11-dev                              # the parx command's options
  libcpp-httplib-dev                        # the dashboard's HTTP server (PARX_DASHBOARD)
  chromium                                  # only for the dashboard test (headless page check)
  nlohmann-json3-dev                        # parx trace summary: reading Chrome-trace JSON
  libgtest-dev libgmock-dev                 # tests
  libbenchmark-dev libtbb-dev libcereal-dev # benchmark peers (oneTBB, cereal, Boost.Interprocess),
  libboost-dev                              # not dependencies of parx itself
  python3-joblib                            # Python peer of the ProcessPool benchmark
  python3-mpi4py                            # Python peer of the mpi benchmarks
)

# --mpich: also MPICH, for the build and tests against it (CMake preset `mpich`).
if [ "${1:-}" = "--mpich" ]; then packages+=(libmpich-dev mpich); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "parx: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
