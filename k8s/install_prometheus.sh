#!/usr/bin/env bash
# Installs Prometheus (Debian's `prometheus` package) for tests/observability, which start
# their own Prometheus on loopback. Idempotent; needs root or sudo, and apt (Debian/Ubuntu).
# The package's own service is not used (and not started in containers without systemd).
set -euo pipefail

if command -v prometheus >/dev/null 2>&1; then
    echo "prometheus already installed: $(command -v prometheus)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_prometheus.sh: no apt-get; install Prometheus 2.x and put it on PATH" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install_prometheus.sh: run as root (or install sudo)" >&2
        exit 1
    fi
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
echo "installed $(prometheus --version 2>&1 | head -n 1)"
