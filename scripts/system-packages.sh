#!/bin/sh
# Installs the Debian packages the tests need when they are missing: chromium (browser test
# of the simulator), espeak-ng and ffmpeg (text to speech and transcoding of audio lessons),
# a Traditional Chinese font (titles on the rich menu and on podcast covers).
# `system-packages.sh run`: only what `make run` uses (no browser).
set -eu
missing=""
[ "${1:-}" = run ] || command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v espeak-ng >/dev/null 2>&1 || missing="$missing espeak-ng"
command -v ffmpeg >/dev/null 2>&1 || missing="$missing ffmpeg"
[ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || missing="$missing fonts-noto-cjk"
# `system-packages.sh bench`: the webhook benchmark's load generator as well.
if [ "${1:-}" = bench ]; then command -v wrk >/dev/null 2>&1 || missing="$missing wrk"; fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
  echo "system-packages: please install:$missing (Debian/Ubuntu: apt-get install$missing)" >&2
  exit 1
fi
echo "system-packages: installing$missing"
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
