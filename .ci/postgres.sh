# Sourced by .ci/run: exports ORCHESTRATOR_TEST_POSTGRES, the URL of a PostgreSQL database the
# tests create and drop their own schemas in (so one database serves parallel tests).
# In order: an ORCHESTRATOR_TEST_POSTGRES already set is used as is; else the PostgreSQL at
# 127.0.0.1:5432 when it lets `postgres` in without a password (the project's machines start
# one), with database `test` created if missing; else (a bare machine, or
# ORCHESTRATOR_CI_OWN_POSTGRES=1) a throwaway cluster: Debian's `postgresql` is installed if
# its binaries are missing, a fresh trust-auth cluster tuned for tests (no fsync) is started
# as the `postgres` user (initdb refuses root) on 127.0.0.1 from port 55432 up, and it is
# stopped and deleted when the sourcing shell exits, pass or fail (an EXIT trap: .ci/run must
# not set its own). ORCHESTRATOR_CI_PG_LIB (default /usr/lib/postgresql) is where the versioned
# binaries are looked up; pointing it elsewhere exercises the install path.

ci_pg_dir=
ci_pg_bin=

# Stops the throwaway cluster and deletes it; never fails, so the suite's exit status stands.
ci_pg_cleanup() {
  [ -n "$ci_pg_dir" ] || return 0
  if [ -f "$ci_pg_dir/data/postmaster.pid" ]; then
    ci_pg_as_owner "$ci_pg_bin/pg_ctl" -D "$ci_pg_dir/data" -m immediate -t 60 stop >/dev/null 2>&1 || true
  fi
  rm -rf "$ci_pg_dir" || true
  ci_pg_dir=
}

# Runs a command as the cluster's owner: `postgres` when we are root, else ourselves; from the
# cluster's directory, since postgres may not be allowed into the current one.
ci_pg_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd "$ci_pg_dir" && runuser -u postgres -- "$@")
  else
    (cd "$ci_pg_dir" && "$@")
  fi
}

# True when something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp: no client needed).
ci_pg_port_open() {
  timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# The newest initdb under ORCHESTRATOR_CI_PG_LIB's versioned directories, or nothing.
ci_pg_find_bin() {
  local lib=${ORCHESTRATOR_CI_PG_LIB:-/usr/lib/postgresql}
  compgen -G "$lib/*/bin/initdb" | sort -V | tail -n 1 | sed 's#/initdb$##' || true
}

# The PostgreSQL at 127.0.0.1:5432 when it answers and (with psql at hand) admits `postgres`
# without a password; ensures database `test` there.
ci_pg_use_system() {
  ci_pg_port_open 5432 || return 1
  if ! command -v psql >/dev/null; then
    ORCHESTRATOR_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test
    return 0
  fi
  local psql=(psql -X -q -w -h 127.0.0.1 -p 5432 -U postgres -d postgres -v ON_ERROR_STOP=1 -Atc)
  # -w: never prompt; a server that wants a password is not the project's, so run our own.
  PGCONNECT_TIMEOUT=5 "${psql[@]}" 'select 1' >/dev/null 2>&1 || {
    echo "PostgreSQL at 127.0.0.1:5432 does not admit user postgres without a password; starting a throwaway one" >&2
    return 1
  }
  if [ -z "$("${psql[@]}" "select 1 from pg_database where datname = 'test'")" ]; then
    # Another run may create it at the same moment: only its absence afterwards is an error.
    if ! "${psql[@]}" 'create database test' >/dev/null 2>&1 &&
      [ -z "$("${psql[@]}" "select 1 from pg_database where datname = 'test'")" ]; then
      echo "could not create database test at 127.0.0.1:5432; starting a throwaway PostgreSQL" >&2
      return 1
    fi
  fi
  ORCHESTRATOR_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test
}

# Installs Debian's postgresql if needed, then starts a throwaway cluster and creates `test`.
ci_pg_start_own() {
  ci_pg_bin=$(ci_pg_find_bin)
  if [ -z "$ci_pg_bin" ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "no PostgreSQL binaries under ${ORCHESTRATOR_CI_PG_LIB:-/usr/lib/postgresql}: install Debian's postgresql or set ORCHESTRATOR_TEST_POSTGRES" >&2
      return 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
    ci_pg_bin=$(ci_pg_find_bin)
    if [ -z "$ci_pg_bin" ]; then
      echo "installed postgresql but found no initdb under ${ORCHESTRATOR_CI_PG_LIB:-/usr/lib/postgresql}/*/bin" >&2
      return 1
    fi
  fi
  # /tmp, not $TMPDIR: the postgres user must be able to reach the directory.
  ci_pg_dir=$(mktemp -d /tmp/orchestrator-ci-pg.XXXXXX)
  trap ci_pg_cleanup EXIT
  [ "$(id -u)" -ne 0 ] || chown postgres: "$ci_pg_dir"
  ci_pg_as_owner "$ci_pg_bin/initdb" -D "$ci_pg_dir/data" -U postgres -A trust -E UTF8 \
    --locale=C.UTF-8 --no-sync >"$ci_pg_dir/initdb.log" 2>&1 || {
    cat "$ci_pg_dir/initdb.log" >&2
    return 1
  }
  # Durability is worthless for a cluster deleted after the run; many pools run in parallel.
  cat >>"$ci_pg_dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$ci_pg_dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
EOF
  # The port is probed first, but another run can take it before the server binds: try on.
  local port=55432 tries=0
  while :; do
    while ci_pg_port_open "$port"; do port=$((port + 1)); done
    if ci_pg_as_owner "$ci_pg_bin/pg_ctl" -D "$ci_pg_dir/data" -l "$ci_pg_dir/server.log" \
      -o "-p $port" -w -t 60 start >/dev/null; then
      break
    fi
    tries=$((tries + 1))
    if [ "$tries" -ge 5 ]; then
      echo "the throwaway PostgreSQL did not start; its log ends:" >&2
      tail -n 30 "$ci_pg_dir/server.log" >&2 || true
      return 1
    fi
    port=$((port + 1))
  done
  "$ci_pg_bin/createdb" -h 127.0.0.1 -p "$port" -U postgres test
  ORCHESTRATOR_TEST_POSTGRES=postgres://postgres@127.0.0.1:$port/test
}

if [ -n "${ORCHESTRATOR_TEST_POSTGRES:-}" ]; then
  ci_pg_what="given by ORCHESTRATOR_TEST_POSTGRES"
elif [ "${ORCHESTRATOR_CI_OWN_POSTGRES:-}" != 1 ] && ci_pg_use_system; then
  ci_pg_what="the one running at 127.0.0.1:5432"
else
  ci_pg_start_own
  ci_pg_what="a throwaway PostgreSQL $(basename "$(dirname "$ci_pg_bin")") cluster in $ci_pg_dir, deleted on exit"
fi
export ORCHESTRATOR_TEST_POSTGRES
# A password in the URL (user:secret@ or password=secret) stays out of the log.
echo "PostgreSQL for the tests: $(sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#; s#([?&]password=)[^&]*#\1***#' \
  <<<"$ORCHESTRATOR_TEST_POSTGRES") ($ci_pg_what)"
