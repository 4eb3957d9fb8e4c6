#!/bin/sh
# Installs the system packages the test suite needs, when they are missing.
# Used by `make test` and `.ci/run`. Idempotent; quiet when nothing is missing.
set -e
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
# Debian's Chromium for the trace viewer's browser tests (Playwright drives it; no
# browser download).
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -n "$missing" ] || exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >/dev/null
else
    echo "missing system packages:$missing (install them with your package manager)" >&2
    exit 1
fi
