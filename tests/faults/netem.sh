#!/bin/sh
# Kernel-level network faults, where the kernel has sch_netem: two network namespaces
# joined by a veth pair, with netem on both ends (loss 5%, delay 20 ms +- 10 ms, 1%
# duplicates, 10% reordering); the echo server in one, the echo client in the other, every
# framing; every byte must come back. The namespaces are removed even on failure.
# Exit status 77 (CTest: skipped, with the reason on stderr) where netem, namespaces or
# the privileges are missing. Usage: netem.sh DIR-WITH-THE-PROGRAMS
set -eu
bin=$1
ns=tcpmsg-netem-$$
a=$ns-a
b=$ns-b
tmp=$(mktemp -d)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null
    ip netns del "$a" 2>/dev/null || true
    ip netns del "$b" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

skip() {
    echo "netem: skipped: $*" >&2
    exit 77
}

command -v ip >/dev/null 2>&1 || skip "no ip command (iproute2)"
command -v tc >/dev/null 2>&1 || skip "no tc command (iproute2)"
ip netns add "$a" 2>/dev/null || skip "cannot create network namespaces here"
ip netns add "$b"
ip link add veth-a netns "$a" type veth peer name veth-b netns "$b" ||
    skip "cannot create a veth pair"
ip -n "$a" addr add 10.77.0.1/24 dev veth-a
ip -n "$b" addr add 10.77.0.2/24 dev veth-b
for n in "$a" "$b"; do
    ip -n "$n" link set lo up
done
ip -n "$a" link set veth-a up
ip -n "$b" link set veth-b up
modprobe sch_netem 2>/dev/null || true
for pair in "$a veth-a" "$b veth-b"; do
    set -- $pair
    ip netns exec "$1" tc qdisc add dev "$2" root netem loss 5% delay 20ms 10ms \
        duplicate 1% reorder 10% 50% 2>/dev/null ||
        skip "this kernel has no sch_netem qdisc (the user-space proxy test covers faults)"
done

seq 1 300 | sed 's/^/line number /' >"$tmp/lines"
for framing in len32 line; do
    mkfifo "$tmp/port"
    ip netns exec "$a" "$bin/tcpmsg-echo-server" --framing "$framing" --bind 10.77.0.1 0 \
        >"$tmp/port" 2>"$tmp/log" &
    server=$!
    read -r port <"$tmp/port"
    rm "$tmp/port"
    ip netns exec "$b" "$bin/tcpmsg-echo-client" --framing "$framing" --timeout 30 \
        10.77.0.1 "$port" <"$tmp/lines" >"$tmp/out"
    cmp "$tmp/lines" "$tmp/out"
    kill -TERM "$server"
    wait "$server"
    server=
    echo "netem: $framing: 300 frames through loss, delay, duplication and reordering: ok"
done
