#!/usr/bin/env bash
# Runs every test of the workspace. On a fresh Debian machine it first installs what the tests
# drive (openssl, a C compiler for the bundled SQLite, SoftHSM2 and the PKCS#11 clients: opensc,
# libp11's OpenSSL engine, GnuTLS, a JDK), then checks formatting and lints.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
# The PKCS#11 clients the module is tested with, and SoftHSM2 as their reference token.
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || need+=(opensc)
[ -e /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so ] || need+=(libengine-pkcs11-openssl)
command -v p11tool >/dev/null 2>&1 || need+=(gnutls-bin)
command -v javac >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component" >/dev/null 2>&1 || true
done

# The tests of outside tools (openssl, later softhsm2, java) fail rather than skip under CI=true:
# this script installs them.
export CI="${CI:-true}"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
