#!/usr/bin/env bash
# Services for the annotation app's tests (called by .ci/run and by `make test`; safe to run again):
#   1. Debian's chromium for the Playwright browser test (installed only if /usr/bin/chromium is missing);
#   2. a PostgreSQL server on 127.0.0.1 with a test role and database for the PostgreSQL load test.
# SERVICES_INSTALL=0 starts what is installed and installs nothing (`make test`); 1 (the default, and
# `make services`) also installs what is missing with apt.
# Nothing is exported: the PostgreSQL URL is written to $URL_FILE, where the tests and
# benchmarks/annotate_load.py look for it. Whatever cannot be set up makes its tests skip with a
# message; this script then exits 1 but never stops half-way.
set -u

URL_FILE=${CHATGLM_RLHF_PG_URL_FILE:-/tmp/chatglm_rlhf_annotate_pg.url}
INSTALL=${SERVICES_INSTALL:-1}
PG_ROLE=annotate_test
PG_DB=annotate_test
PG_PASSWORD=annotate_test # a throw-away role on a server that listens on 127.0.0.1 only
PG_PORT=${PG_PORT:-5432}
status=0

say() { echo "ci_annotate_services: $*"; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
fi

apt_updated=0
apt_install() {
  if [ "$INSTALL" = 0 ]; then
    say "$* not installed (make services, or SERVICES_INSTALL=1, installs it with apt)"
    return 1
  fi
  if [ "$(id -u)" != 0 ] && [ -z "$SUDO" ]; then
    say "cannot install $* (not root, no sudo)"
    return 1
  fi
  if [ "$apt_updated" = 0 ]; then
    timeout 600 $SUDO apt-get update -qq || return 1
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive timeout 900 $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

# --- 1. chromium ----------------------------------------------------------------------------------
if [ -x /usr/bin/chromium ]; then
  say "chromium present: $(/usr/bin/chromium --version 2>/dev/null | head -1)"
elif apt_install chromium && [ -x /usr/bin/chromium ]; then
  say "chromium installed"
else
  say "chromium could not be installed: the browser test will skip"
  status=1
fi

# --- 2. PostgreSQL --------------------------------------------------------------------------------
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ -z "$(pg_bin)" ]; then
  apt_install postgresql || say "postgresql could not be installed"
fi
BIN=$(pg_bin)
rm -f "$URL_FILE"

as_postgres() { # run a command as the postgres OS user (root: su; else: sudo)
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else $SUDO -u postgres sh -c "$*"; fi
}

start_debian_cluster() {
  local ver
  ver=$(basename "$(dirname "$BIN")")
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$ver main"; then
    $SUDO pg_createcluster "$ver" main >/dev/null || return 1
  fi
  # Debian's postgresql.conf includes conf.d/ last, so this file wins; the main file stays untouched.
  printf "listen_addresses = '127.0.0.1'\nport = %s\n" "$PG_PORT" |
    $SUDO tee "/etc/postgresql/$ver/main/conf.d/chatglm_rlhf_annotate.conf" >/dev/null || return 1
  if ! pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -q online; then
    $SUDO pg_ctlcluster "$ver" main start || return 1
  fi
  "$BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -t 30 >/dev/null || return 1
  as_postgres "psql -q -v ON_ERROR_STOP=1 -p $PG_PORT" <<SQL || return 1
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
    CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  ELSE
    ALTER ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_ROLE'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')\gexec
SQL
}

start_private_cluster() { # no root and no sudo: a server of our own in /tmp, run as this user
  local dir=/tmp/chatglm_rlhf_annotate_pg
  if [ ! -f "$dir/PG_VERSION" ]; then
    echo "$PG_PASSWORD" >"$dir.pw"
    "$BIN/initdb" -D "$dir" -U "$PG_ROLE" --pwfile="$dir.pw" -A scram-sha-256 >/dev/null || return 1
  fi
  if ! "$BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -t 1 >/dev/null 2>&1; then
    "$BIN/pg_ctl" -D "$dir" -l "$dir.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k /tmp" start >/dev/null || return 1
  fi
  PGPASSWORD=$PG_PASSWORD "$BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_ROLE" -d postgres \
    -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" -tA | grep -q 1 ||
    PGPASSWORD=$PG_PASSWORD "$BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_ROLE" "$PG_DB" || return 1
}

if [ -z "$BIN" ]; then
  say "no PostgreSQL binaries: the PostgreSQL load test will skip"
  status=1
else
  if [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; then start_debian_cluster; else start_private_cluster; fi
  if [ $? = 0 ]; then
    url="postgresql+psycopg://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
    echo "$url" >"$URL_FILE"
    say "PostgreSQL ready; URL written to $URL_FILE: $url"
  else
    say "PostgreSQL could not be started: the PostgreSQL load test will skip"
    status=1
  fi
fi
exit $status
