#!/usr/bin/env bash
# System packages the Python side needs but pip cannot install. Idempotent; silent when all are present.
#   libusb-1.0-0           open3d (the `lidar` extra) fails to import without it
#   chromium               headless rendering of the audit's report.html to PNG (tests and make demo)
#   dataset-fashion-mnist  real Fashion-MNIST images (reference CNN, the fashion_mnist audit config)
# `install_system_deps.sh demo` installs only what `make demo` needs (chromium).
set -euo pipefail
missing=()
if [ "${1:-all}" != "demo" ]; then
  ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so' || missing+=(libusb-1.0-0)
  dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || missing+=(dataset-fashion-mnist)
fi
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
