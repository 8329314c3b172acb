#!/usr/bin/env bash
# Chart tests: lint and render charts/stevedore with the real Helm SDK, validate every
# manifest against the Kubernetes schemas, and check RBAC against src/cluster/rbac.rs.
# Installs its tools (tests/helm/requirements.txt) from PyPI into a venv that later runs
# reuse; fails loudly when they cannot be installed. No cluster and no other network.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${STEVEDORE_HELM_VENV:-$HOME/.cache/stevedore/helm-venv}"
REQS=tests/helm/requirements.txt
PY="${PYTHON:-python3}"

die() { printf 'test-helm: %s\n' "$*" >&2; exit 1; }

command -v "$PY" >/dev/null || die "$PY not found: the chart tests need Python 3.10+"
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV"
    "$PY" -m venv "$VENV" || die "cannot create a venv with $PY (on Debian: apt-get install python3-venv)"
fi
# Reinstall only when the pinned requirements changed since the last install.
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing $REQS into $VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet -r "$REQS" \
        || die "pip install -r $REQS failed (PyPI must be reachable)"
    echo "$want" > "$stamp"
fi
"$VENV/bin/python" -c 'import helm_python, kubernetes_validate, pytest, yaml' \
    || die "the venv $VENV is broken: remove it and rerun"

exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/helm "$@"
