# Sourced by .ci/run: a throw-away PostgreSQL cluster on a free local port for the store's tests,
# installed from the distribution's packages when its server binaries are missing. Exports
# VOLCAST_TEST_POSTGRES_URL; `stop_postgres` stops it and removes its files.

# Nothing inherited from the environment: the EXIT trap removes $PG_DIR.
PG_DIR=
PG_CTL=
PG_AS=()

pg_bin_dir() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
  else
    # Debian keeps the server binaries out of PATH.
    # (None there: empty, not a failed pipeline that `set -e -o pipefail` ends the run on
    # before PostgreSQL is installed.)
    { ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V | tail -1
  fi
}

# A local port nothing listens on: the kernel's pick where python3 is there, else a random one
# in 20000-59999 that refuses a connection (bash's /dev/tcp; RANDOM is 15 bits, so two).
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    return
  fi
  local port
  for _ in $(seq 100); do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "no free local port found" >&2
  return 1
}

start_postgres() {
  local bin
  bin="$(pg_bin_dir)"
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "installing PostgreSQL from the distribution's packages" >&2
    local sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq postgresql
    bin="$(pg_bin_dir)"
  fi
  PG_DIR="$(mktemp -d)"
  # initdb refuses to run as root: run the cluster as nobody then.
  PG_AS=()
  if [ "$(id -u)" -eq 0 ]; then
    chown nobody "$PG_DIR"
    PG_AS=(runuser -u nobody --)
  fi
  local port
  port="$(free_port)"
  # Set before the start: a start that fails half-way is still stopped and removed.
  PG_CTL="$bin/pg_ctl"
  "${PG_AS[@]}" "$bin/initdb" -D "$PG_DIR/data" -U volcast --auth=trust -E UTF8 >/dev/null
  "${PG_AS[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
  export VOLCAST_TEST_POSTGRES_URL="postgres://volcast@127.0.0.1:$port/postgres"
  echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port for the store's tests"
}

stop_postgres() {
  if [ -n "${PG_DIR:-}" ]; then
    if [ -n "${PG_CTL:-}" ] && [ -d "$PG_DIR/data" ]; then
      "${PG_AS[@]}" "$PG_CTL" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_DIR"
  fi
}
