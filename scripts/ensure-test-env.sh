#!/usr/bin/env bash
# Make sure what the test suite needs is present: PostgreSQL and Redis running, Debian's
# Chromium (for browser tests) and a CJK font installed. Starts or installs what is
# missing when it can. With CI=true anything it cannot provide is an error; elsewhere it
# warns, and the tests that need it are skipped with the reason.
set -uo pipefail

ci=false
case "${CI:-}" in 1|true|TRUE|yes) ci=true ;; esac
problems=()
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi; }

wait_for() { # name, check command...
  local name=$1; shift
  for _ in $(seq 1 30); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  return 1
}

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }

if ! pg_up 2>/dev/null; then
  echo "PostgreSQL not answering on 127.0.0.1:5432; starting it"
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  wait_for postgres pg_up || problems+=("PostgreSQL is not running and could not be started")
fi

if ! redis_up 2>/dev/null; then
  echo "Redis not answering on 127.0.0.1:6379; starting it"
  if command -v redis-server >/dev/null; then
    as_root mkdir -p /var/lib/redis /var/log/redis || true
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
      --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  fi
  wait_for redis redis_up || problems+=("Redis is not running and could not be started")
fi

need_pkgs=()
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk" || need_pkgs+=(fonts-wqy-microhei)
# The network lab (tests/netlab, issue 16): namespaces, NAT and loss, TURN, a second engine.
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v nft >/dev/null || need_pkgs+=(nftables)
command -v tc >/dev/null || need_pkgs+=(iproute2)
command -v turnserver >/dev/null || need_pkgs+=(coturn)
command -v openssl >/dev/null || need_pkgs+=(openssl)
[ -x /usr/bin/firefox-esr ] || need_pkgs+=(firefox-esr)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing Debian packages for browser tests: ${need_pkgs[*]}"
  if as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
     as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
       "${need_pkgs[@]}" >/dev/null; then
    echo "installed: ${need_pkgs[*]}"
  else
    problems+=("could not install ${need_pkgs[*]} (apt-get as root)")
  fi
fi

if [ ${#problems[@]} -gt 0 ]; then
  for p in "${problems[@]}"; do echo "test environment: $p" >&2; done
  if $ci; then
    echo "CI=true: refusing to run with missing services or tools" >&2
    exit 1
  fi
  echo "continuing: tests that need these will be skipped, naming what was missing" >&2
fi
exit 0
