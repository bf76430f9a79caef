#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432, database `test`) and Mosquitto (127.0.0.1:1883) answer.
# Installs and starts them on a fresh Debian machine when run as root; otherwise explains.
set -u
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
need_install=()
port_open 5432 || need_install+=(postgresql)
port_open 1883 || need_install+=(mosquitto)
[ ${#need_install[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "services: ${need_install[*]} not reachable and cannot be installed here (need root and apt-get)"
  exit 1
fi
for pkg in "${need_install[@]}"; do
  command -v "$( [ "$pkg" = postgresql ] && echo pg_ctlcluster || echo mosquitto)" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg"; }
  case $pkg in
    postgresql)
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
      for _ in $(seq 1 20); do port_open 5432 && break; sleep 0.5; done
      su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='test'\"" | grep -q 1 \
        || su postgres -c "createdb test" || true
      ;;
    mosquitto)
      mosquitto -d -c /etc/mosquitto/mosquitto.conf || mosquitto -d
      for _ in $(seq 1 20); do port_open 1883 && break; sleep 0.5; done
      ;;
  esac
done
port_open 5432 && port_open 1883
