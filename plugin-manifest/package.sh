#!/usr/bin/env bash
# Build release archives as Krew installs them, check each one, and render krew.yaml from them.
#
#   usage: plugin-manifest/package.sh [--version vX.Y.Z] [PLATFORM...]
#     PLATFORM: linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64,
#               or "all"; none = this machine's platform only.
#
# This machine's platform alone builds with plain cargo. Naming platforms cross-builds every
# one of them (this machine's too, for one toolchain across a release) with cargo-zigbuild:
# zig is the C compiler and linker, and links Linux binaries against glibc 2.17, so they run
# on any distribution since 2014. The standard library is rebuilt for each target from the Rust
# source of the same compiler (-Zbuild-std, allowed on a stable compiler by RUSTC_BOOTSTRAP=1),
# since rustup can fetch no other target here. plugin-manifest/cross-tools.sh installs those
# pieces. macOS binaries link only the /usr/lib system libraries (zig ships their stubs; the
# plugin uses no Apple framework, so Apple's SDK is not needed) and are ad-hoc signed with
# rcodesign (Apple Silicon refuses unsigned arm64 code; amd64 is signed the same way); on a Mac
# without rcodesign, Apple's own `codesign -s -` signs instead. Archives land in dist/ (or
# $DIST); krew.yaml lists every archive found there, and plugins/mirrord-copy.yaml (the custom
# Krew index this repository is: `kubectl krew index add mirrord-copy <this repo's git URL>`)
# is the same file.
set -euo pipefail
cd "$(dirname "$0")/.."
version=v$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
platforms=()
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version=$2; shift 2 ;;
    all) platforms+=(linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64); shift ;;
    */*) platforms+=("$1"); shift ;;
    *) echo "usage: $0 [--version vX.Y.Z] [PLATFORM...|all]" >&2; exit 2 ;;
  esac
done
dist=${DIST:-dist}
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$dist"

# Rust's target triple for a Krew platform (zig's glibc version after the dot, for Linux).
# Windows uses the gnullvm targets (LLVM's mingw flavour, the only one for arm64, UCRT-based so
# Windows 10 and later): Debian's rustc links *-windows-gnu against its own mingw's libssp,
# which zig's mingw has no need for and does not ship.
triple() {
  case "$1" in
    linux/amd64) echo x86_64-unknown-linux-gnu.2.17 ;;
    linux/arm64) echo aarch64-unknown-linux-gnu.2.17 ;;
    darwin/amd64) echo x86_64-apple-darwin ;;
    darwin/arm64) echo aarch64-apple-darwin ;;
    windows/amd64) echo x86_64-pc-windows-gnullvm ;;
    windows/arm64) echo aarch64-pc-windows-gnullvm ;;
    *) echo "unknown platform $1 (want os/arch, e.g. linux/arm64)" >&2; return 2 ;;
  esac
}

# Ad-hoc sign a macOS binary in place: an embedded signature with no identity, which is what
# Apple Silicon requires of any arm64 code it runs (Gatekeeper's notarization is another matter:
# Krew's download carries no quarantine attribute, so it does not apply).
sign_macos() { # binary
  if command -v rcodesign >/dev/null; then
    rcodesign sign --binary-identifier kubectl-mirrord_copy "$1" >/dev/null
  elif command -v codesign >/dev/null; then
    codesign --sign - --force --identifier kubectl-mirrord_copy "$1"
  else
    echo "signing a macOS binary needs rcodesign: run plugin-manifest/cross-tools.sh" >&2
    return 1
  fi
  echo "signed $1 (ad-hoc)"
}

# Stage the binary with LICENSE and README, pack it (zip on Windows, as Krew expects there).
pack() { # platform binary
  local os=${1%/*} arch=${1#*/} exe=kubectl-mirrord_copy stage archive
  [ "$os" = windows ] && exe=kubectl-mirrord_copy.exe
  stage=$(mktemp -d)
  cp "$2" "$stage/$exe"
  [ "$os" = darwin ] && sign_macos "$stage/$exe"
  cp LICENSE README.md "$stage/"
  if [ "$os" = windows ]; then
    archive="$dist/kubectl-mirrord-copy-${version}-${os}-${arch}.zip"
    rm -f "$archive"
    (cd "$stage" && python3 -m zipfile -c "$OLDPWD/$archive" "$exe" LICENSE README.md)
  else
    archive="$dist/kubectl-mirrord-copy-${version}-${os}-${arch}.tar.gz"
    tar -C "$stage" -czf "$archive" "$exe" LICENSE README.md
  fi
  rm -rf "$stage"
  echo "packed $archive"
}

if [ ${#platforms[@]} -eq 0 ]; then
  case "$(uname -s)" in Linux) os=linux ;; Darwin) os=darwin ;; *) os=windows ;; esac
  case "$(uname -m)" in x86_64|amd64) arch=amd64 ;; aarch64|arm64) arch=arm64 ;; *) echo "unsupported arch" >&2; exit 1 ;; esac
  cargo build --release --locked -p kubectl-mirrord-copy
  exe=kubectl-mirrord_copy; [ "$os" = windows ] && exe=kubectl-mirrord_copy.exe
  pack "$os/$arch" "$target_dir/release/$exe"
else
  rustc=${MIRRORD_COPY_CROSS_RUSTC:-/usr/bin/rustc}
  sysroot=$("$rustc" --print sysroot)
  if ! command -v cargo-zigbuild >/dev/null || [ ! -d "$sysroot/lib/rustlib/src/rust/library" ]; then
    echo "cross-building needs cargo-zigbuild and the Rust source of $rustc: run plugin-manifest/cross-tools.sh" >&2
    exit 1
  fi
  case " ${platforms[*]}" in
    *" darwin/"*) command -v rcodesign >/dev/null || {
      echo "macOS binaries are signed with rcodesign: run plugin-manifest/cross-tools.sh" >&2; exit 1; } ;;
  esac
  for platform in "${platforms[@]}"; do
    t=$(triple "$platform")
    echo "building $platform ($t) with $("$rustc" --version)"
    started=$SECONDS
    # The oldest macOS to run on, Rust's own minimum for the target (11.0 is the first on Apple
    # Silicon): zig would otherwise mark the binary for its default, a recent macOS release.
    case "$platform" in
      darwin/arm64) export MACOSX_DEPLOYMENT_TARGET=11.0 ;;
      darwin/amd64) export MACOSX_DEPLOYMENT_TARGET=10.12 ;;
      *) unset MACOSX_DEPLOYMENT_TARGET ;;
    esac
    # The compiler's own cargo (first on PATH) drives -Zbuild-std with its library source.
    PATH="$(dirname "$rustc"):$PATH" RUSTC="$rustc" RUSTC_BOOTSTRAP=1 cargo zigbuild --release --locked -p kubectl-mirrord-copy \
      -Zbuild-std=std,panic_abort --target "$t"
    echo "built $platform in $((SECONDS - started))s"
    exe=kubectl-mirrord_copy; [ "${platform%/*}" = windows ] && exe=kubectl-mirrord_copy.exe
    pack "$platform" "$target_dir/${t%%.2.*}/release/$exe"
  done
fi

# One rendering, two files: krew.yaml (krew install --manifest) and the custom index's
# plugins/mirrord-copy.yaml (krew index add + krew install mirrord-copy/mirrord-copy).
python3 plugin-manifest/render_krew.py --version "$version" --archives "$dist" --out krew.yaml --index .
echo "rendered krew.yaml"
python3 plugin-manifest/verify_archives.py --manifest krew.yaml --archives "$dist" --index .
