#!/usr/bin/env bash
# Install the Debian packages the daemon I/O tests run for real: Prometheus (remote-write
# sender and query API), the node exporter (what it scrapes), VictoriaMetrics (a query API a
# target can read history from; vmauth comes with it) and Chromium (headless dashboard test).
# Idempotent and quick when everything is present: `apt-get update` runs only when a package
# is missing. Needs root (or sudo) and a Debian/Ubuntu apt; elsewhere it says what to install.
set -euo pipefail

PACKAGES=(prometheus prometheus-node-exporter victoria-metrics chromium)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: missing ${missing[*]} and no apt-get here; install them by hand" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "system-deps: missing ${missing[*]}; run this script as root" >&2
        exit 1
    fi
fi
echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# No recommends: prometheus would otherwise pull in a web UI stack the tests do not need.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
