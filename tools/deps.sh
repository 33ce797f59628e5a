# Sourced by run.sh, test.sh, fuzz.sh and compare.sh: installs the Debian packages
# Ordo needs, only those missing, so a second run does nothing; arguments are more
# packages a caller needs. Needs root or sudo for apt-get.
ordo_ensure_deps() {
  # llvm: llvm-symbolizer, which the sanitizers' runtimes need to name frames, so
  # that tests/tsan.supp's suppressions (by function name) match; clang only
  # recommends it, and recommends are not installed here.
  local pkgs=(cmake ninja-build g++ clang libclang-rt-14-dev llvm
              libabsl-dev libconcurrentqueue-dev libbenchmark-dev libgtest-dev libgmock-dev "$@")
  # Optional peers for the benchmarks (compiled only when present).
  pkgs+=(libasio-dev libtbb-dev)
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then return 0; fi
  echo "ordo: installing ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  # env: sudo resets the environment, so the variable goes in through it.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
}
