#!/usr/bin/env bash
# Install Debian's prometheus package (prometheus and promtool) if promtool is
# missing. Only the binaries matter: the tests and `make check` run their own
# prometheus process with their own config, storage and port, so the package's
# own service is stopped and left disabled where systemd runs it.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
echo "prometheus-install: installing Prometheus (Debian package)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
promtool --version 2>&1 | head -n 1
