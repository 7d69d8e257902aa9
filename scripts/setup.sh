#!/usr/bin/env bash
# Creates the project's virtualenv (.venv, or $VENV) with Python 3.10 and
# installs the locked stack, then this package in editable mode.
#
#   scripts/setup.sh           # runtime + dev/test tools
#   scripts/setup.sh --browser # also Debian's chromium (HTML report tests) and
#                              # mariadb-server (shared ML Metadata tests start their own),
#                              # prometheus + prometheus-alertmanager (alerting tests)
#   scripts/setup.sh --bench   # also Debian's wrk (bench/bench_serving.py)
#
# Installs from requirements/lock.txt with --no-deps: every package is pinned
# there, so pip resolves nothing (no backtracking) and the stack is exactly the
# one the tests ran on. Re-running is quick: a stamp records the lock's hash.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
LOCK=requirements/lock.txt
PIP_VERSION=26.3

# This machine's pip config lists local package folders that may not exist;
# pip warns once per package about them. Keep real errors, drop that noise.
pip_quiet() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

is_py310() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }

find_python() {
  local candidate
  if [[ -n "${PYTHON:-}" ]] && is_py310 "$PYTHON"; then echo "$PYTHON"; return; fi
  for candidate in python3.10 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && is_py310 "$(command -v "$candidate")"; then
      command -v "$candidate"; return
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    for candidate in "$(pyenv root)"/versions/3.10.*/bin/python3.10; do
      if [[ -x "$candidate" ]] && is_py310 "$candidate"; then echo "$candidate"; return; fi
    done
  fi
  for candidate in /usr/bin/python3.10 /usr/local/bin/python3.10 "$HOME"/.pyenv/versions/3.10.*/bin/python3.10; do
    if [[ -x "$candidate" ]] && is_py310 "$candidate"; then echo "$candidate"; return; fi
  done
}

# Without Chromium the screenshot test skips; under CI (CI=true) that is an error.
no_browser() {
  if [[ "${CI:-}" == "true" ]]; then
    echo "setup: ERROR: $1 (CI=true: the screenshot test must run, not skip)" >&2
    exit 1
  fi
  echo "setup: WARNING: $1; the screenshot test will be skipped" >&2
}

if [[ "${1:-}" == "--browser" ]] && ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing Debian's chromium (for the HTML report tests)"
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq chromium >/dev/null \
      || no_browser "could not install chromium"
  else
    no_browser "no apt-get; install Chromium yourself"
  fi
fi

if [[ "${1:-}" == "--browser" ]] && [[ ! -x /usr/sbin/mariadbd ]] && ! command -v mariadbd >/dev/null 2>&1; then
  echo "setup: installing Debian's mariadb-server (the ML Metadata on MySQL tests start their own server)"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  if ! { command -v apt-get >/dev/null 2>&1 && $SUDO apt-get update -qq >/dev/null \
         && $SUDO apt-get install -y -qq mariadb-server >/dev/null; }; then
    if [[ "${CI:-}" == "true" ]]; then
      echo "setup: ERROR: could not install mariadb-server" >&2; exit 1
    fi
    echo "setup: WARNING: mariadb-server not installed; the MySQL metadata tests will be skipped" >&2
  fi
fi

# Prometheus, promtool, Alertmanager and amtool for the alerting tests
# (tests/monitoring/prometheus). Under CI a failed install fails the set-up.
if [[ "${1:-}" == "--browser" ]] && ! { command -v promtool && command -v prometheus-alertmanager; } >/dev/null 2>&1; then
  echo "setup: installing Debian's prometheus and prometheus-alertmanager (alerting tests)"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  if ! { command -v apt-get >/dev/null 2>&1 && $SUDO apt-get update -qq >/dev/null \
         && $SUDO apt-get install -y -qq prometheus prometheus-alertmanager >/dev/null; }; then
    if [[ "${CI:-}" == "true" ]]; then
      echo "setup: ERROR: could not install prometheus/prometheus-alertmanager" >&2; exit 1
    fi
    echo "setup: WARNING: prometheus/prometheus-alertmanager not installed; the alerting tests will be skipped" >&2
  fi
fi

if [[ "${1:-}" == "--bench" ]] && ! command -v wrk >/dev/null 2>&1; then
  echo "setup: installing Debian's wrk (for bench/bench_serving.py)"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  { $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq wrk >/dev/null; } \
    || echo "setup: WARNING: could not install wrk; bench/bench_serving.py needs it" >&2
fi

STAMP="$VENV/.lock-sha256"
WANT=$(cat "$LOCK" setup.py | sha256sum | cut -d' ' -f1)
if [[ -x "$VENV/bin/python" ]] && is_py310 "$VENV/bin/python" && [[ "$(cat "$STAMP" 2>/dev/null)" == "$WANT" ]]; then
  echo "setup: $VENV is up to date"
  exit 0
fi

PY=$(find_python || true)
if [[ -z "$PY" ]]; then
  cat >&2 <<'MSG'
setup: ERROR: Python 3.10 was not found (looked at $PYTHON, python3.10/python3 on PATH,
pyenv's versions and /usr/bin, /usr/local/bin). TFX 1.16 supports Python 3.9-3.10 only.
Install it, then run this again, e.g. one of:
    pyenv install 3.10.13
    sudo apt-get install python3.10 python3.10-venv     (Ubuntu: deadsnakes PPA)
    PYTHON=/path/to/python3.10 scripts/setup.sh
MSG
  exit 1
fi

echo "setup: creating $VENV with $PY ($("$PY" -V 2>&1))"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
pip_quiet install -q --disable-pip-version-check "pip==$PIP_VERSION"
echo "setup: installing $(grep -c '==' "$LOCK") locked packages (no dependency resolution)"
pip_quiet install -q --disable-pip-version-check --no-deps -r "$LOCK"
pip_quiet install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
"$VENV/bin/python" -m pip check
echo "$WANT" > "$STAMP"
echo "setup: done; activate with: source $VENV/bin/activate"
