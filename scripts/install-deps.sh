#!/usr/bin/env bash
# Installs the Debian packages offload needs, only those missing.
# Usage: scripts/install-deps.sh [build|test|bench]
# (gcc's ASan/UBSan/TSan runtimes come with build-essential.)
# As root it runs apt-get; otherwise it prints the exact line and fails.
set -euo pipefail

pkgs=(build-essential cmake pkg-config libuv1-dev node-llhttp libjansson-dev
      libsqlite3-dev libssl-dev libargon2-dev libcairo2-dev libpango1.0-dev fonts-dejavu-core libcsv-dev
      libvips-dev
      libpq-dev
      libcmocka-dev curl python3)
case "${1:-build}" in
  # make test's bench.smoke (bench/run.py --smoke) runs git and node (for the
  # report's commit and Node version lines) besides cc and the built binaries.
  # argon2 (the reference CLI) checks the password-hash task's argon2id
  # hashes; poppler-utils' pdftotext and pdfinfo read the pdf task's output.
  # libvips-tools' vips and vipsheader make and measure the image tests' images.
  # ffmpeg (ffprobe with it) runs and checks examples/commands.json's tasks
  # (e2e test_commands, unit commands_render_test); its tests fail without it.
  # chromium and chromium-driver (chromedriver) run the dashboard in a real
  # headless browser (e2e test_dashboard); it fails without them.
  # postgresql-15 (initdb, pg_ctl, postgres) runs the --store postgres tests'
  # own throwaway database as an unprivileged user (e2e test_cluster).
  test)  pkgs+=(git nodejs argon2 poppler-utils libvips-tools ffmpeg chromium chromium-driver postgresql-15) ;;
  # libvips-tools' vips and vipsheader make S11's 12-megapixel JPEG; ffmpeg is S14's transcode.
  # postgresql-15 is S16's database (offload nodes, graphile-worker and pg-boss on one PostgreSQL).
  bench) pkgs+=(git nodejs npm wrk gnuplot-nox nginx-light libvips-tools ffmpeg postgresql-15) ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  # python3 and nodejs may come from elsewhere (pyenv, nvm): a working command is enough.
  case "$p" in
    python3) command -v python3 >/dev/null && continue ;;
    nodejs)  command -v node >/dev/null && continue ;;
    npm)     command -v npm >/dev/null && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "offload needs these Debian packages; run as root:" >&2
  echo "  apt-get update && $line" >&2
  exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends -qq "${missing[@]}" >/dev/null
