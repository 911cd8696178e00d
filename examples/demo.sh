#!/bin/sh
# The libtcpmsg demo: the echo server and client with each framing, one connection as
# `ss -tn` sees it, the same over TLS (a test CA and certificate made on the spot with the
# openssl CLI), and a clean stop with SIGTERM. A few seconds, loopback only.
#   sh examples/demo.sh [DIR-WITH-THE-PROGRAMS]     (default: build/default/examples)
set -eu
bin=${1:-build/default/examples}
tmp=$(mktemp -d)
server=
trap 'if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$tmp"' EXIT

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

# Starts the echo server with the given options on a free port; sets $server and $port.
start_server() {
    mkfifo "$tmp/port"
    "$bin/tcpmsg-echo-server" "$@" 0 >"$tmp/port" 2>>"$tmp/log" &
    server=$!
    read -r port <"$tmp/port" # the server prints its port once it listens
    rm "$tmp/port"
}

stop_server() {
    kill -TERM "$server"
    status=0
    wait "$server" || status=$?
    server=
    echo "server stopped by SIGTERM, exit status $status"
}

say "1. Framing without a socket: the codecs cut a byte stream into messages"
"$bin/tcpmsg-codec-demo" | sed 's/^/   /'

for framing in len32 line fixed:8; do
    start_server --framing "$framing"
    say "2. tcpmsg-echo-server --framing $framing (port $port): three messages through the client"
    if [ "$framing" = fixed:8 ]; then
        input='12345678\nabcdefgh\nrecords!\n'
    else
        input='hello\nframing is '$framing'\n\n'
    fi
    printf "$input" | "$bin/tcpmsg-echo-client" --framing "$framing" 127.0.0.1 "$port" |
        sed 's/^/   reply: /'
    stop_server
done

say "3. One connection, as ss -tn shows it (and as the server logs it)"
start_server
mkfifo "$tmp/in" "$tmp/out"
"$bin/tcpmsg-echo-client" 127.0.0.1 "$port" <"$tmp/in" >"$tmp/out" &
client=$!
exec 3>"$tmp/in" # the client's stdin stays open: the connection stays up
echo "watch me with ss" >&3
read -r reply <"$tmp/out"
echo "   reply: $reply"
if command -v ss >/dev/null 2>&1; then
    ss -tn "( sport = :$port or dport = :$port )" | sed 's/^/   /'
else
    echo "   (ss is not installed: apt-get install iproute2)"
fi
exec 3>&- # end of stdin: the client finishes and closes
wait "$client"
stop_server

say "4. The same over TLS: a test CA and a certificate for localhost, made now"
if ! command -v openssl >/dev/null 2>&1; then
    echo "   (openssl is not installed: apt-get install openssl)"
elif ! "$bin/tcpmsg-echo-server" --help | grep -q -- --tls-cert; then
    echo "   (this build has no TLS: apt-get install libssl-dev, then configure again)"
else
    (
        cd "$tmp"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
            -subj /CN=demo-ca -keyout ca.key -out ca.pem 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
            -keyout server.key -out server.csr 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >san.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
            -extfile san.ext -out server.pem 2>/dev/null
    )
    start_server --tls-cert "$tmp/server.pem" --tls-key "$tmp/server.key"
    echo "   tcpmsg-echo-server --tls-cert server.pem --tls-key server.key (port $port)"
    printf 'encrypted hello\nverified against ca.pem\n' |
        "$bin/tcpmsg-echo-client" --tls --tls-ca "$tmp/ca.pem" localhost "$port" |
        sed 's/^/   reply: /'
    echo "   the same client without trusting the demo CA:"
    printf 'x\n' | "$bin/tcpmsg-echo-client" --tls localhost "$port" 2>&1 |
        sed 's/^/   /' || true
    stop_server
fi

say "5. What the server logged (stderr)"
sed 's/^/   /' "$tmp/log"
