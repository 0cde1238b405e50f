#!/bin/sh
# The Docker engine for the container tests (make docker-engine): installs Debian's
# docker.io (dockerd, containerd, runc), docker-compose (v1: bookworm has no compose v2
# plugin) and debootstrap when missing, then starts dockerd as root in the background when
# `docker info` cannot reach it, logging to $DOCKERD_LOG, and waits for it by polling
# `docker info` (deadline $DOCKERD_TIMEOUT seconds). Idempotent and quiet when all is there.
set -eu

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
DOCKERD_TIMEOUT=${DOCKERD_TIMEOUT:-60}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

missing=""
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
if [ -n "$missing" ]; then
    echo "[docker] installing$missing (apt)"
    t0=$(date +%s)
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        $missing iptables ca-certificates >/dev/null
    echo "[docker] installed in $(( $(date +%s) - t0 ))s"
fi
# Debian's own CLI, unless one is already on PATH (docker.io installs /usr/bin/docker)
command -v docker >/dev/null 2>&1 || { echo "[docker] no docker CLI on PATH" >&2; exit 1; }

if docker info >/dev/null 2>&1; then
    exit 0
fi
if [ -S /var/run/docker.sock ] && pgrep -x dockerd >/dev/null 2>&1; then
    echo "[docker] dockerd runs but does not answer yet; waiting"
else
    echo "[docker] starting dockerd (log: $DOCKERD_LOG)"
    # as root, in the background, in its own session: it outlives this make run
    $SUDO sh -c "setsid nohup dockerd >>'$DOCKERD_LOG' 2>&1 </dev/null &"
fi
t0=$(date +%s)
until docker info >/dev/null 2>&1; do
    if [ $(( $(date +%s) - t0 )) -ge "$DOCKERD_TIMEOUT" ]; then
        echo "[docker] dockerd did not answer \`docker info\` within ${DOCKERD_TIMEOUT}s;" \
             "the end of $DOCKERD_LOG:" >&2
        tail -n 30 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
    if ! pgrep -x dockerd >/dev/null 2>&1; then
        echo "[docker] dockerd exited during start; the end of $DOCKERD_LOG:" >&2
        tail -n 30 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
    sleep 0.2
done
echo "[docker] dockerd ready in $(( $(date +%s) - t0 ))s:" \
     "$(docker info --format '{{.ServerVersion}}, storage {{.Driver}}, cgroup {{.CgroupDriver}}')"
