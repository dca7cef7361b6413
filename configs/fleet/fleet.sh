#!/usr/bin/env bash
# The example local fleet: 3 nodes and 2 relays on 127.0.0.x, n3 reachable
# only through a relay tunnel.
#
#   configs/fleet/fleet.sh up       make the CA and certificates (once), start all
#   configs/fleet/fleet.sh down     stop the relays, nodes and their sessions
#   configs/fleet/fleet.sh status   show what runs
#   configs/fleet/fleet.sh env      print the variables that point `tether` at it
#
# State (CA, keys, state dirs, logs) lives in configs/fleet/state/.
# TETHER names the binary (default: tether on PATH).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="$here/state"
tether="${TETHER:-tether}"
members=(r1 r2 n1 n2 n3)

need_tether() {
    if ! command -v "$tether" >/dev/null 2>&1; then
        echo "fleet.sh: '$tether' not found; install it (cargo install --locked --path cli) or set TETHER=path" >&2
        exit 1
    fi
}

pidfile() { echo "$state/$1.pid"; }
running() { [ -f "$(pidfile "$1")" ] && kill -0 "$(cat "$(pidfile "$1")")" 2>/dev/null; }

init() {
    mkdir -p "$state"
    chmod 700 "$state"
    if [ ! -f "$state/ca/ca.key" ]; then
        "$tether" ca init "$state/ca" >/dev/null
        for r in r1 r2; do "$tether" ca issue "$state/ca" --relay "$r" >/dev/null; done
        for n in n1 n2 n3; do "$tether" ca issue "$state/ca" --node "$n" >/dev/null; done
        "$tether" ca issue "$state/ca" --client operator >/dev/null
        "$tether" ca issue "$state/ca" --client watcher --read-only >/dev/null
    fi
    [ -f "$state/secret" ] || (umask 077 && head -c 32 /dev/urandom >"$state/secret")
}

start() {
    local m=$1 ready
    if running "$m"; then echo "$m already runs"; return; fi
    case $m in
        r*) "$tether" relay --config "$here/$m.toml" >"$state/$m.log" 2>&1 & ;;
        n*) "$tether" --state-dir "$state/$m" node --config "$here/$m.toml" >"$state/$m.log" 2>&1 & ;;
    esac
    echo $! >"$(pidfile "$m")"
    for _ in $(seq 1 100); do
        if grep -q ready "$state/$m.log" 2>/dev/null; then ready=1; break; fi
        if ! running "$m"; then break; fi
        sleep 0.05
    done
    if [ -z "${ready:-}" ]; then
        echo "$m did not start; its log:" >&2
        cat "$state/$m.log" >&2
        exit 1
    fi
    echo "$m: $(grep -m1 ready "$state/$m.log")"
}

stop() {
    local m=$1
    if running "$m"; then kill "$(cat "$(pidfile "$m")")"; fi
    rm -f "$(pidfile "$m")"
    # A node's sessions outlive its daemon by design; the fleet's teardown
    # stops them too.
    if [ -d "$state/$m/sessions" ]; then
        for k in "$state/$m"/sessions/*/keeper.json; do
            [ -f "$k" ] || continue
            for pid in $(grep -o '"[a-z_]*pid": [0-9]*' "$k" | grep -o '[0-9]*$'); do
                kill -9 "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
            done
        done
    fi
}

case "${1:-}" in
    up)
        need_tether
        init
        for m in "${members[@]}"; do start "$m"; done
        echo
        echo "the fleet runs; point tether at it with:"
        echo "  eval \"\$($0 env)\""
        echo "  tether nodes; tether new -d --node n3 -- top; tether ls"
        ;;
    down)
        for m in "${members[@]}"; do stop "$m"; done
        echo "the fleet is stopped"
        ;;
    status)
        for m in "${members[@]}"; do
            if running "$m"; then echo "$m running (pid $(cat "$(pidfile "$m")"))"; else echo "$m stopped"; fi
        done
        ;;
    env)
        echo "export TETHER_RELAY=127.0.0.41:7400,127.0.0.42:7400"
        echo "export TETHER_TLS_DIR=$state/ca/clients/operator"
        ;;
    *)
        sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
