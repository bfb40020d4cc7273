#!/usr/bin/env bash
# Install Debian's chromium for the web console's browser test when it is missing,
# and a Chinese font when none is installed (the console's labels and the seed's
# names are Chinese; without one the test's screenshots show empty boxes). The test
# drives this chromium through Playwright, never Playwright's own browser downloads.
# Safe to run again.
set -euo pipefail

packages=()
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
if ! command -v fc-list >/dev/null 2>&1 || [ -z "$(fc-list :lang=zh 2>/dev/null)" ]; then
  packages+=(fonts-wqy-zenhei)
fi
[ ${#packages[@]} -eq 0 ] && exit 0

echo "chromium-install: installing ${packages[*]} (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
command -v chromium >/dev/null
