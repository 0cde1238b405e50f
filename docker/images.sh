#!/bin/sh
# The images of the container tests, built on this machine (make docker-images):
#
#   base     Debian bookworm (debootstrap --variant=minbase, then `docker import`) from the
#            machine's Debian mirror: public image registries need not be reachable.
#            Skipped when the image exists (DOCKER_BASE_REBUILD=1 rebuilds it).
#   python   Debian's CPython 3.11 on the base: the local PYTHON_IMAGE
#   kafka    the Maven-resolved broker jars of kafka/libs (make kafka-jars) on Debian's JRE
#   moto     moto[server] from the hashed requirements-dev.lock
#   product  the project's own Dockerfile, --build-arg PYTHON_IMAGE=<the local python>
#
#   docker/images.sh [base|python|kafka|moto|product|all]...
# Names: docker/local.env.  Docker's layer cache makes a rebuild of unchanged inputs quick.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck disable=SC1091
. "$ROOT/docker/local.env"
VPY=${VPY:-$ROOT/.venv/bin/python}
SUITE=${DEBIAN_SUITE:-bookworm}

say() { echo "[images] $*"; }
elapsed() { echo "$(( $(date +%s) - $1 ))s"; }

# The machine's Debian mirror: the first URI in apt's sources (deb822 or one-line format).
mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    found=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
            | sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/*$/\1/p' | head -n 1)
    [ -n "$found" ] || found=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            2>/dev/null | sed -n 's/^deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]*\)\{0,1\}\([^[:space:]]*\/debian\)\/*[[:space:]].*/\2/p' \
            | head -n 1)
    echo "${found:-http://deb.debian.org/debian}"
}

base() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        say "$BASE_IMAGE: exists (cached)"; return
    fi
    t0=$(date +%s)
    url=$(mirror)
    rootfs=$(mktemp -d /tmp/replicator-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    say "$BASE_IMAGE: debootstrap --variant=minbase $SUITE from $url"
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$url" >"$rootfs.log" 2>&1 \
        || { tail -n 20 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
    rm -f "$rootfs.log"
    # the image's apt reads the same mirror, with the security and updates suites
    cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $url $SUITE main
deb $url $SUITE-updates main
deb ${url%/debian}/debian-security $SUITE-security main
SOURCES
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/var/log/*.log "$rootfs"/dev/*
    tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"; trap - EXIT
    say "$BASE_IMAGE: built in $(elapsed "$t0") ($(size "$BASE_IMAGE"))"
}

size() { docker image inspect --format '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1/1e6}'; }

# docker build, quiet unless it fails; $1 the image, the rest docker build's arguments
build() {
    image=$1; shift
    t0=$(date +%s)
    log=$(mktemp)
    if ! docker build -t "$image" "$@" >"$log" 2>&1; then
        tail -n 40 "$log" >&2; rm -f "$log"; say "$image: build failed"; exit 1
    fi
    cached=$(grep -c 'Using cache' "$log" || true)
    rm -f "$log"
    say "$image: built in $(elapsed "$t0") ($(size "$image"); $cached steps from cache)"
}

python_image() {
    ctx=$(mktemp -d)
    cp "$ROOT/docker/python/Dockerfile" "$ctx/"
    mkdir "$ctx/ca-certificates"
    # the certificate authorities this machine added (e.g. a TLS-inspecting proxy's)
    find /usr/local/share/ca-certificates -name '*.crt' -type f \
        -exec cp {} "$ctx/ca-certificates/" \; 2>/dev/null || true
    build "$PYTHON_IMAGE" --build-arg "BASE_IMAGE=$BASE_IMAGE" "$ctx"
    rm -rf "$ctx"
}

kafka() {
    [ -f "$ROOT/kafka/libs/.resolved" ] || { echo "kafka/libs missing: make kafka-jars" >&2; exit 1; }
    # the context: docker/kafka plus the jars (a tar on stdin: no copy of 50 MB of jars)
    tar -c -C "$ROOT/docker/kafka" . -C "$ROOT/kafka" --exclude .resolved libs \
        | build "$KAFKA_IMAGE" --build-arg "BASE_IMAGE=$BASE_IMAGE" -
}

moto() {
    ctx=$(mktemp -d)
    cp "$ROOT/docker/moto/Dockerfile" "$ctx/"
    "$VPY" "$ROOT/docker/lock_subset.py" 'moto[server]' "$ROOT/requirements-dev.lock" \
        > "$ctx/moto-server.lock"
    build "$MOTO_IMAGE" --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" "$ctx"
    rm -rf "$ctx"
}

product() {
    version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -n 1)
    build "$REPLICATOR_IMAGE" --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" \
        --build-arg "VERSION=$version" "$ROOT"
}

# the base, then the Python image on it, then the three others at once (mostly downloads
# and unpacking: in parallel they take about as long as the slowest, moto)
all() {
    base
    python_image
    pids=""
    for image in kafka moto product; do
        ( "$image" ) &
        pids="$pids $!"
    done
    failed=0
    for pid in $pids; do
        wait "$pid" || failed=1
    done
    [ "$failed" = 0 ] || { say "some images failed to build (see above)"; exit 1; }
}

[ $# -gt 0 ] || set -- all
for what in "$@"; do
    case "$what" in
        base) base ;;
        python) python_image ;;
        kafka) kafka ;;
        moto) moto ;;
        product) product ;;
        all) all ;;
        *) echo "unknown image: $what (base|python|kafka|moto|product|all)" >&2; exit 2 ;;
    esac
done
