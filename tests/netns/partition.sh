#!/usr/bin/env bash
# gka across machines: three hosts built on this machine with network namespaces (a switch
# namespace with a bridge, one veth pair per host), each running one etcd node and two
# `gka member --etcd` processes. The test
#   1. waits until the six members share one key, and checks that lines sent by each arrive
#      once at every member;
#   2. cuts host 3 off (its link to the switch down): the four members on hosts 1 and 2 must
#      install a partition view of four and agree on a new key, while host 3's members (cut
#      off from etcd's quorum) block: no view, no key;
#   3. sends lines on the majority side during the cut;
#   4. heals the link: host 3's members rejoin as new incarnations, in a merge view, and all six
#      hold one key again; lines sent after the heal arrive once everywhere;
#   5. checks that every line a member on the majority side sent was delivered exactly once at
#      every member of the majority side, and prints the figures (docs/deploy.md quotes them).
#
# Needs root (namespaces), iproute2, etcd (apt-get install etcd-server) and the debug build of
# gka and its plugins (cargo build --workspace). Cleans up its namespaces and processes on exit.
# Run: sudo bash tests/netns/partition.sh
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
GKA=${GKA:-$ROOT/target/debug/gka}
PREFIX=gkat$$
WORK=$(mktemp -d /tmp/gka-netns.XXXXXX)
HOSTS=(1 2 3)
MEMBERS=(h1a h1b h2a h2b h3a h3b)
MAJORITY=(h1a h1b h2a h2b)
MINORITY=(h3a h3b)
URLS="http://10.77.0.1:2379,http://10.77.0.2:2379,http://10.77.0.3:2379"

fail() {
    echo "FAIL: $*" >&2
    for m in "${MEMBERS[@]}"; do
        [ -f "$WORK/$m.log" ] && { echo "--- $m (last 15 lines)" >&2; tail -n 15 "$WORK/$m.log" >&2; }
    done
    exit 1
}

[ "$(id -u)" = 0 ] || fail "network namespaces need root: run as root (CI does), e.g. sudo bash $0"
command -v ip >/dev/null || fail "no 'ip' command: apt-get install iproute2"
ETCD=${ETCD_BIN:-$(command -v etcd || true)}
[ -n "$ETCD" ] || fail "no etcd binary: apt-get install etcd-server"
[ -x "$GKA" ] || fail "no $GKA: build it first with cargo build --workspace"

cleanup() {
    set +e
    for pid in $(jobs -p); do kill "$pid" 2>/dev/null; done
    for ns in "${PREFIX}-sw" "${PREFIX}-h1" "${PREFIX}-h2" "${PREFIX}-h3"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    wait 2>/dev/null
    # GKA_NETNS_KEEP=1 keeps the members' and etcd's logs for a look after a failure.
    if [ -n "${GKA_NETNS_KEEP:-}" ]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

ns() { echo "${PREFIX}-$1"; }
in_host() { local h=$1; shift; ip netns exec "$(ns "h$h")" "$@"; }

# --- the network: a switch namespace with a bridge, one veth pair per host -------------------
ip netns add "$(ns sw)" || fail "cannot create a network namespace (ip netns add): $?"
ip -n "$(ns sw)" link add br0 type bridge
ip -n "$(ns sw)" link set br0 up
for h in "${HOSTS[@]}"; do
    ip netns add "$(ns "h$h")"
    ip link add "${PREFIX}h$h" type veth peer name "${PREFIX}s$h"
    ip link set "${PREFIX}h$h" netns "$(ns "h$h")"
    ip link set "${PREFIX}s$h" netns "$(ns sw)"
    ip -n "$(ns sw)" link set "${PREFIX}s$h" master br0 up
    ip -n "$(ns "h$h")" link set lo up
    ip -n "$(ns "h$h")" link set "${PREFIX}h$h" name eth0
    ip -n "$(ns "h$h")" addr add "10.77.0.$h/24" dev eth0
    ip -n "$(ns "h$h")" link set eth0 up
done

# --- one etcd node per host ------------------------------------------------------------------
CLUSTER="n1=http://10.77.0.1:2380,n2=http://10.77.0.2:2380,n3=http://10.77.0.3:2380"
for h in "${HOSTS[@]}"; do
    in_host "$h" "$ETCD" --name "n$h" --data-dir "$WORK/etcd-n$h" \
        --listen-client-urls "http://10.77.0.$h:2379" \
        --advertise-client-urls "http://10.77.0.$h:2379" \
        --listen-peer-urls "http://10.77.0.$h:2380" \
        --initial-advertise-peer-urls "http://10.77.0.$h:2380" \
        --initial-cluster "$CLUSTER" --initial-cluster-state new \
        --heartbeat-interval 100 --election-timeout 1000 --pre-vote >"$WORK/etcd-n$h.log" 2>&1 &
done
healthy() {
    in_host "$1" bash -c "exec 3<>/dev/tcp/10.77.0.$1/2379 && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>/dev/null |
        grep -q '"health":"true"'
}
for h in "${HOSTS[@]}"; do
    for _ in $(seq 1 150); do healthy "$h" && break; sleep 0.2; done
    healthy "$h" || fail "etcd on host $h is not healthy after 30 s: $(tail -n 5 "$WORK/etcd-n$h.log")"
done

# --- six members, two per host ---------------------------------------------------------------
mkdir -p "$WORK/trust" "$WORK/keys"
for m in "${MEMBERS[@]}"; do
    "$GKA" keygen --id "$m" --out "$WORK/keys" >/dev/null
    cp "$WORK/keys/$m.pub" "$WORK/trust/"
done
declare -A FD
for m in "${MEMBERS[@]}"; do
    h=${m:1:1}
    mkfifo "$WORK/$m.in"
    in_host "$h" "$GKA" member --etcd "$URLS" --group netns \
        --id "$m" --key "$WORK/keys/$m.key" --trust "$WORK/trust" --plugins "$(dirname "$GKA")" \
        --give-up-after 120 <"$WORK/$m.in" >"$WORK/$m.log" 2>&1 &
    exec {fd}>"$WORK/$m.in"
    FD[$m]=$fd
done

now_ms() { date +%s%3N; }
# A member's text lines start with the time, HH:MM:SS.mmm (UTC).
T='[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}'
# The last key line of a member: "epoch fingerprint".
last_key() { grep -E "^$T \[$1\] key " "$WORK/$1.log" | tail -n 1 | awk '{print $4, $6}'; }
# The member count of a member's last view.
last_view_size() {
    grep -E "^$T \[$1\] view " "$WORK/$1.log" | tail -n 1 | sed -E 's/.*members \[([^]]*)\].*/\1/' |
        tr ',' '\n' | grep -c . || true
}
# Whether the members given share one key, each in a view of $1 members.
one_key() {
    local size=$1; shift
    local first; first=$(last_key "$1")
    [ -n "$first" ] || return 1
    for m in "$@"; do
        [ "$(last_key "$m")" = "$first" ] || return 1
        [ "$(last_view_size "$m")" = "$size" ] || return 1
    done
}
# Waits (at most $2 seconds) until the command "$3..." succeeds; fails naming $1.
wait_for() {
    local what=$1 secs=$2; shift 2
    for _ in $(seq 1 $((secs * 10))); do "$@" && return 0; sleep 0.1; done
    fail "not within $secs s: $what"
}
say() { echo "${FD[$1]}" >/dev/null; echo "$2" >&"${FD[$1]}"; }
# How many times member $1 received line $2 (from anyone).
received() { grep -cF -- ": $2" "$WORK/$1.log" | tr -d ' ' || true; }
all_received() {
    local line=$1; shift
    for m in "$@"; do [ "$(received "$m" "$line")" -ge 1 ] || return 1; done
}

wait_for "the six members share one key" 90 one_key 6 "${MEMBERS[@]}"
echo "six members on three hosts share key $(last_key h1a)"

# --- phase 1: everyone sends -----------------------------------------------------------------
SENT_BEFORE=()
for m in "${MEMBERS[@]}"; do l="before-$m"; say "$m" "$l"; SENT_BEFORE+=("$l"); done
for l in "${SENT_BEFORE[@]}"; do wait_for "$l delivered everywhere" 30 all_received "$l" "${MEMBERS[@]}"; done

# --- phase 2: host 3 is cut off --------------------------------------------------------------
declare -A KEY_BEFORE VIEWS_BEFORE
for m in "${MINORITY[@]}"; do
    KEY_BEFORE[$m]=$(grep -cE "^$T \[$m\] key " "$WORK/$m.log" || true)
    VIEWS_BEFORE[$m]=$(grep -cE "^$T \[$m\] view " "$WORK/$m.log" || true)
done
t_cut=$(now_ms)
ip -n "$(ns sw)" link set "${PREFIX}s3" down
four_views() { for m in "${MAJORITY[@]}"; do [ "$(last_view_size "$m")" = 4 ] || return 1; done; }
wait_for "a partition view of four on the majority side" 30 four_views
t_view=$(now_ms)
wait_for "a new key on the majority side" 30 one_key 4 "${MAJORITY[@]}"
t_key=$(now_ms)
echo "cut: partition view after $((t_view - t_cut)) ms, new key after $((t_key - t_cut)) ms"

SENT_DURING=()
for round in 1 2 3; do
    for m in "${MAJORITY[@]}"; do l="during-$round-$m"; say "$m" "$l"; SENT_DURING+=("$l"); done
    sleep 0.3
done
for l in "${SENT_DURING[@]}"; do wait_for "$l delivered on the majority side" 30 all_received "$l" "${MAJORITY[@]}"; done
sleep 3
# Cut off from etcd's quorum, host 3's members block: no view, no key, none of the lines.
for m in "${MINORITY[@]}"; do
    keys=$(grep -cE "^$T \[$m\] key " "$WORK/$m.log" || true)
    views=$(grep -cE "^$T \[$m\] view " "$WORK/$m.log" || true)
    [ "$keys" = "${KEY_BEFORE[$m]}" ] || fail "$m installed a key while cut off"
    [ "$views" = "${VIEWS_BEFORE[$m]}" ] || fail "$m installed a view while cut off"
    for l in "${SENT_DURING[@]}"; do
        [ "$(received "$m" "$l")" = 0 ] || fail "$m received $l while cut off"
    done
done
# The majority side went on: none of its members lost its place in the group.
for m in "${MAJORITY[@]}"; do
    if grep -qE "^$T \[$m\] disconnected" "$WORK/$m.log"; then
        fail "$m, on the majority side, lost its place: $(grep -E "^$T \[$m\] disconnected" "$WORK/$m.log")"
    fi
done
t_heal=$(now_ms)
echo "host 3 blocked while cut off ($(( (t_heal - t_cut) / 1000 )) s); healing"

# --- phase 3: the heal -----------------------------------------------------------------------
ip -n "$(ns sw)" link set "${PREFIX}s3" up
wait_for "one key among all six after the heal" 120 one_key 6 "${MEMBERS[@]}"
t_merge=$(now_ms)
for m in "${MINORITY[@]}"; do
    grep -qE "^$T \[$m\] rejoined as a new incarnation" "$WORK/$m.log" || fail "$m did not rejoin"
done
echo "heal: merge view and one key among all six after $((t_merge - t_heal)) ms"

SENT_AFTER=()
for m in "${MEMBERS[@]}"; do l="after-$m"; say "$m" "$l"; SENT_AFTER+=("$l"); done
for l in "${SENT_AFTER[@]}"; do wait_for "$l delivered everywhere" 30 all_received "$l" "${MEMBERS[@]}"; done
sleep 1

# --- exactly once ----------------------------------------------------------------------------
delivered=0
for m in "${MAJORITY[@]}"; do
    for l in "${SENT_BEFORE[@]}" "${SENT_DURING[@]}" "${SENT_AFTER[@]}"; do
        n=$(received "$m" "$l")
        [ "$n" = 1 ] || fail "$m received \"$l\" $n times, not once"
        delivered=$((delivered + 1))
    done
done
for m in "${MINORITY[@]}"; do
    for l in "${SENT_BEFORE[@]}" "${SENT_AFTER[@]}"; do
        n=$(received "$m" "$l")
        [ "$n" = 1 ] || fail "$m received \"$l\" $n times, not once"
        delivered=$((delivered + 1))
    done
done
sent=$(( ${#SENT_BEFORE[@]} + ${#SENT_DURING[@]} + ${#SENT_AFTER[@]} ))
echo "lines: $sent sent, $delivered deliveries checked, each exactly once"
echo "PASS: partition view $((t_view - t_cut)) ms, new key $((t_key - t_cut)) ms after the cut; merge and one key $((t_merge - t_heal)) ms after the heal"
