#!/usr/bin/env bash
# Installs and runs the servers Herald needs on a development machine, without Docker.
#
#   deploy/local-stack.sh install      install redis-server and clickhouse-server (Debian packages) if missing
#   deploy/local-stack.sh install-browser  install Debian's chromium if missing (the console's browser tests)
#   deploy/local-stack.sh start [DIR]  start private instances on free loopback ports, data under DIR
#                                      (default .herald/stack); prints the HERALD_* values and writes DIR/env
#   deploy/local-stack.sh stop [DIR]   stop the instances started in DIR
#
# `herald dev`, `herald demo` and the tests start their own instances the same way; this script
# is for running the roles (`herald worker`, `herald serve`, ...) as separate processes by hand.
set -euo pipefail

need_install() {
  command -v redis-server >/dev/null 2>&1 || return 0
  command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] || return 0
  return 1
}

install() {
  if ! need_install; then return 0; fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo -n"; fi
  echo "local-stack: installing redis-server and clickhouse-server from Debian packages" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server clickhouse-server >&2
}

install_browser() {
  if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then return 0; fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo -n"; fi
  echo "local-stack: installing chromium from Debian packages (the console's browser tests)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
}

free_port() {
  python3 - <<'PY' 2>/dev/null || shuf -i 20000-60000 -n 1
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

start() {
  local dir="${1:-.herald/stack}"
  install
  mkdir -p "$dir/redis" "$dir/clickhouse/data" "$dir/clickhouse/tmp" "$dir/clickhouse/format_schemas"
  dir="$(cd "$dir" && pwd)"
  local rport chport chhttp
  rport="$(free_port)"; chport="$(free_port)"; chhttp="$(free_port)"
  redis-server --port "$rport" --bind 127.0.0.1 --dir "$dir/redis" --save "" --appendonly no \
    --daemonize yes --pidfile "$dir/redis/redis.pid" --logfile "$dir/redis/redis.log"
  cat > "$dir/clickhouse/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$dir/clickhouse/server.log</log><errorlog>$dir/clickhouse/server.err.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>$chport</tcp_port>
  <http_port>$chhttp</http_port>
  <path>$dir/clickhouse/data/</path>
  <tmp_path>$dir/clickhouse/tmp/</tmp_path>
  <format_schema_path>$dir/clickhouse/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
</yandex>
XML
  cat > "$dir/clickhouse/users.xml" <<'XML'
<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
XML
  local ch=clickhouse-server; command -v clickhouse-server >/dev/null 2>&1 || ch=/usr/sbin/clickhouse-server
  (cd "$dir/clickhouse" && nohup "$ch" --config-file="$dir/clickhouse/config.xml" >"$dir/clickhouse/stdout.log" 2>&1 & echo $! > "$dir/clickhouse/clickhouse.pid")
  for _ in $(seq 1 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$chport") 2>/dev/null; then break; fi
    sleep 0.1
  done
  cat > "$dir/env" <<ENV
export HERALD_REDIS_URL="redis://127.0.0.1:$rport/0"
export HERALD_CLICKHOUSE_DSN="clickhouse://127.0.0.1:$chport/herald"
ENV
  cat "$dir/env"
  echo "# written to $dir/env; Kafka: set HERALD_KAFKA_BROKERS, or use 'herald dev' for an embedded one" >&2
}

stop() {
  local dir="${1:-.herald/stack}"
  for pid in "$dir/redis/redis.pid" "$dir/clickhouse/clickhouse.pid"; do
    [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
  done
}

case "${1:-install}" in
  install) install ;;
  install-browser) install_browser ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 install|install-browser|start [DIR]|stop [DIR]" >&2; exit 2 ;;
esac
