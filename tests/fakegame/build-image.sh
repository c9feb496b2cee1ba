#!/usr/bin/env bash
# Builds the fakegame test image `ctrl-fakegame:latest` (label ctrl.test=1) from scratch:
#   1. a statically linked release binary of tests/fakegame (separate target dir, so the
#      RUSTFLAGS used here never invalidate the normal build cache);
#   2. `docker build` of tests/fakegame/Dockerfile around it.
# Idempotent: when the binary and Dockerfile are unchanged the existing image is kept.
# Environment: CARGO (default cargo), FAKEGAME_TARGET_DIR (default
# ${CARGO_TARGET_DIR:-<repo>/target}/fakegame-static), FAKEGAME_IMAGE (default ctrl-fakegame:latest).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
image="${FAKEGAME_IMAGE:-ctrl-fakegame:latest}"
target_dir="${FAKEGAME_TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}/fakegame-static}"
cargo="${CARGO:-cargo}"

die() { echo "build-image.sh: error: $*" >&2; exit 1; }

command -v "$cargo" >/dev/null 2>&1 || die "cargo not found (install Rust with rustup, or set CARGO)"
command -v docker >/dev/null 2>&1 || die "the docker CLI is not installed"
docker info >/dev/null 2>&1 || die "the Docker Engine is not reachable (is dockerd running, may this user use /var/run/docker.sock?)"
# The host's own glibc target (x86_64 or aarch64, e.g. a Raspberry Pi 4/5): static glibc
# needs no extra toolchain there.
triple="$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')"
case "$triple" in
  x86_64-unknown-linux-gnu | aarch64-unknown-linux-gnu) ;;
  *) die "unsupported host target '${triple:-unknown}' (x86_64 or aarch64 Linux with glibc is needed)" ;;
esac

mkdir -p "$target_dir"
# Serialise concurrent builds (several test binaries may call this at once).
if command -v flock >/dev/null 2>&1; then
  exec 9>"${TMPDIR:-/tmp}/ctrl-fakegame-build.lock"
  flock 9
fi

echo "build-image.sh: building the static fakegame binary (target dir $target_dir)" >&2
# Static glibc: the binary must not need getaddrinfo/NSS (it only binds a SocketAddr).
# CARGO_ENCODED_RUSTFLAGS would override RUSTFLAGS, so it is dropped.
if ! (cd "$root" && unset CARGO_ENCODED_RUSTFLAGS && CARGO_TARGET_DIR="$target_dir" \
      RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
      CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols \
      "$cargo" build -q -p fakegame --release --target "$triple"); then
  die "cargo build of fakegame failed (is the target $triple installed? rustup target add $triple)"
fi
bin="$target_dir/$triple/release/fakegame"
[[ -x "$bin" ]] || die "expected binary $bin is missing"
if command -v ldd >/dev/null 2>&1 && ldd "$bin" 2>&1 | grep -q '=>'; then
  die "$bin is dynamically linked; it cannot run in a FROM-scratch image"
fi

hash="$(cat "$bin" "$here/Dockerfile" | sha256sum | cut -c1-32)"
current="$(docker image inspect --format '{{ index .Config.Labels "ctrl.fakegame.hash" }}' "$image" 2>/dev/null || true)"
if [[ "$current" == "$hash" ]]; then
  echo "build-image.sh: $image is up to date" >&2
  exit 0
fi
old_id="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"

ctx="$(mktemp -d "${TMPDIR:-/tmp}/ctrl-fakegame-ctx.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/fakegame"
cp "$here/Dockerfile" "$ctx/Dockerfile"
echo "build-image.sh: docker build -t $image" >&2
if ! docker build -q --label ctrl.test=1 --label "ctrl.fakegame.hash=$hash" -t "$image" "$ctx" >/dev/null; then
  die "docker build of $image failed"
fi
# The previous image, now untagged, would be left dangling: remove it (best effort).
if [[ -n "$old_id" && "$old_id" != "$(docker image inspect --format '{{.Id}}' "$image")" ]]; then
  docker image rm "$old_id" >/dev/null 2>&1 || true
fi
echo "build-image.sh: built $image" >&2
