#!/usr/bin/env bash
# Installs the Debian packages named on the command line when their command is missing.
# Usage: scripts/ensure-debs.sh PACKAGE:COMMAND ...   (e.g. redis-server:redis-server)
set -euo pipefail

missing=()
for spec in "$@"; do
  pkg=${spec%%:*}; cmd=${spec##*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "error: need ${missing[*]} but cannot install them (not root, no passwordless sudo)." >&2
  echo "       install them yourself: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: apt-get not found; install ${missing[*]} with your system's package manager." >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
