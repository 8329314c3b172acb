#!/usr/bin/env bash
# Installs the moto AWS emulator (once) into a virtualenv the AWS tests use.
# The tests look for `$MOTO_VENV/bin/moto_server` (default below) and fail, naming this
# script, when it is missing: they never skip silently.
set -euo pipefail
VENV="${MOTO_VENV:-$HOME/.cache/stevedore/moto-venv}"
# Pinned to the version the emulator notes (/work/shared/notes/moto.md) were taken with.
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
if [ -x "$VENV/bin/moto_server" ]; then
    echo "moto already installed in $VENV"
    exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
echo "moto $MOTO_VERSION installed in $VENV"
