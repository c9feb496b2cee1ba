#!/usr/bin/env bash
# Builds the install-script test image `ctrl-installer:latest` (label ctrl.test=1): a root
# filesystem of Debian's statically linked busybox (`apt-get install busybox-static`) with a
# link per applet (`sh`, `ash`, `wget`, ...), imported with `docker import`. Nothing is
# pulled. Idempotent: an unchanged busybox keeps the existing image.
# Environment: BUSYBOX (default /bin/busybox), INSTALLER_IMAGE (default ctrl-installer:latest).
set -euo pipefail

image="${INSTALLER_IMAGE:-ctrl-installer:latest}"
busybox="${BUSYBOX:-/bin/busybox}"

die() { echo "installer/build-image.sh: error: $*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 || die "the docker CLI is not installed"
[[ -x "$busybox" ]] || die "$busybox is missing: apt-get install -y busybox-static"
if command -v ldd >/dev/null 2>&1 && ldd "$busybox" 2>&1 | grep -q '=>'; then
  die "$busybox is dynamically linked; install Debian's busybox-static"
fi

if command -v flock >/dev/null 2>&1; then
  exec 9>"${TMPDIR:-/tmp}/ctrl-installer-build.lock"
  flock 9
fi

hash="$(sha256sum "$busybox" | cut -c1-32)"
current="$(docker image inspect --format '{{ index .Config.Labels "ctrl.installer.hash" }}' "$image" 2>/dev/null || true)"
if [[ "$current" == "$hash" ]]; then
  echo "installer/build-image.sh: $image is up to date" >&2
  exit 0
fi
old_id="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"

root="$(mktemp -d "${TMPDIR:-/tmp}/ctrl-installer-root.XXXXXX")"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/mnt/server" "$root/etc"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [[ "$applet" == busybox ]] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
echo "installer/build-image.sh: docker import $image" >&2
tar -C "$root" -c . | docker import \
  --change 'LABEL ctrl.test=1' \
  --change "LABEL ctrl.installer.hash=$hash" \
  --change 'ENV PATH=/bin' \
  --change 'CMD ["/bin/sh"]' \
  - "$image" >/dev/null || die "docker import of $image failed"
if [[ -n "$old_id" && "$old_id" != "$(docker image inspect --format '{{.Id}}' "$image")" ]]; then
  docker image rm "$old_id" >/dev/null 2>&1 || true
fi
echo "installer/build-image.sh: built $image" >&2
