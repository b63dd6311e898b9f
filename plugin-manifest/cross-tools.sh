#!/usr/bin/env bash
# Install what `package.sh all` needs to cross-build from a Debian 12 x86_64 machine, from
# Debian's, PyPI's and crates.io's packages only: Debian's rustc-web (a current compiler) with its
# cargo and the matching Rust source (for -Zbuild-std), zig with cargo-zigbuild as C compiler and
# linker for every target, and apple-codesign's rcodesign to ad-hoc sign the macOS binaries
# (Apple Silicon refuses to run unsigned arm64 code). rcodesign is built from source, a long
# build (it is skipped when the same version is already installed); without default features,
# which are notarization (the AWS SDK and App Store Connect) that an ad-hoc signature never uses.
set -euo pipefail
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustc-web cargo-web rust-web-src
python3 -m pip install --quiet ziglang cargo-zigbuild
RUSTC=/usr/bin/rustc nice -n 19 /usr/bin/cargo install --locked --no-default-features apple-codesign
/usr/bin/rustc --version
cargo-zigbuild --version
"${CARGO_HOME:-$HOME/.cargo}/bin/rcodesign" --version
