#!/bin/sh
# Installs the tools the bench compares against or drives, if missing:
# iperf3 (bulk), wrk + nginx (requests), haproxy and socat (peers), strace
# (--syscalls), openssl (rathole-tls identity) and rathole (cargo).
# Idempotent: run it again and it only reports what is already there.
#
#   sudo examples/bench/install-peers.sh
#
# Debian/Ubuntu (apt-get). Package services are not started: nginx and
# haproxy would otherwise listen on all interfaces with their default configs;
# the bench starts its own instances on loopback.
set -eu

PACKAGES="iperf3 wrk nginx haproxy socat strace openssl"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "need root to install:$missing" >&2
        exit 1
    fi
    apt-get update
    # policy-rc.d exit 101: "do not start services" for this install only,
    # unless the image already has one (Docker images usually do).
    added_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    for p in $missing; do
        if apt-cache policy "$p" | grep -q 'Candidate: [0-9]'; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y "$p" || echo "failed: $p" >&2
        else
            echo "no apt package: $p (skipped)" >&2
        fi
    done
    if [ -n "$added_policy" ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
else
    echo "apt packages present: $PACKAGES"
fi

if command -v rathole >/dev/null 2>&1 || [ -x "${HOME:-/root}/.cargo/bin/rathole" ]; then
    echo "rathole present"
else
    # rathole 0.5.0's Cargo.lock pins a `time` that newer rustc rejects
    # (E0282), so fall back to fresh dependency resolution.
    target="${CARGO_TARGET_DIR:-${TMPDIR:-/tmp}/rathole-target}"
    CARGO_TARGET_DIR="$target" cargo install rathole --locked ||
        CARGO_TARGET_DIR="$target" cargo install rathole
fi

for t in iperf3 wrk nginx haproxy socat strace openssl rathole; do
    if command -v "$t" >/dev/null 2>&1 || [ -x "/usr/sbin/$t" ] || [ -x "${HOME:-/root}/.cargo/bin/$t" ]; then
        echo "ok: $t"
    else
        echo "missing: $t"
    fi
done
