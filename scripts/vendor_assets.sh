#!/usr/bin/env bash
# Refresh the front-end assets inlined into the planner maps (coverage/covgap/vendor/).
#
# Each package comes from the npm registry with `npm pack` (no install, no scripts
# run) at a pinned version; only the files the maps inline are kept, with the
# package's LICENSE and a VERSION file recording the version and tarball checksum.
# Usage: bash scripts/vendor_assets.sh   (or: make vendor)
set -euo pipefail

LEAFLET_VERSION="${LEAFLET_VERSION:-1.9.4}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
vendor="$root/coverage/covgap/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

command -v npm >/dev/null || { echo "npm is needed (apt-get install npm)" >&2; exit 1; }

fetch() {  # fetch NAME VERSION: unpack the package tarball into $work/NAME
  local name="$1" version="$2"
  (cd "$work" && npm pack --silent "$name@$version" >/dev/null)
  local tarball="$work/${name}-${version}.tgz"
  mkdir -p "$work/$name"
  tar -xzf "$tarball" -C "$work/$name" --strip-components=1
  sha256sum "$tarball" | cut -d' ' -f1 >"$work/$name.sha256"
}

fetch leaflet "$LEAFLET_VERSION"
dest="$vendor/leaflet"
rm -rf "$dest"
mkdir -p "$dest/images"
cp "$work/leaflet/LICENSE" "$dest/LICENSE"
cp "$work/leaflet/dist/leaflet.js" "$work/leaflet/dist/leaflet.css" "$dest/"
cp "$work/leaflet/dist/images/"*.png "$dest/images/"
printf 'leaflet %s (npm pack leaflet@%s)\ntarball sha256 %s\n' \
  "$LEAFLET_VERSION" "$LEAFLET_VERSION" "$(cat "$work/leaflet.sha256")" >"$dest/VERSION"

echo "vendored: leaflet $LEAFLET_VERSION -> ${dest#"$root"/}"
