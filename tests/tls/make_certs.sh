#!/bin/sh
# The test PKI, made at test time with the openssl CLI (no private key is committed):
#   ca.pem / ca.key           the test CA
#   server.pem / server.key   localhost, 127.0.0.1 and ::1, signed by the CA
#   second.pem / second.key   second.example (a second name for SNI), signed by the CA
#   other.pem / other.key     other.example only (a wrong name for localhost)
#   expired.pem / expired.key localhost, valid 2020-01-01 to 2020-01-02
#   client.pem / client.key   CN=client1, a client certificate signed by the CA
#   rogue-ca.pem              another CA, trusted by nobody
#   rogue.pem / rogue.key     localhost, signed by the rogue CA
#   rogue-client.pem / .key   CN=mallory, a client certificate from the rogue CA
# Usage: make_certs.sh DIR   (idempotent: an existing complete DIR is kept)
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
[ -f done ] && exit 0
rm -f ./*.pem ./*.key ./*.csr ./*.srl index.txt* serial* ./*.cnf

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

ca() { # name CN
    key "$1"
    openssl req -x509 -new -key "$1.key" -days 30 -subj "/CN=$2" -out "$1.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}

leaf() { # name CN SAN EKU CA
    key "$1"
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
    printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$3" "$4" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$5.pem" -CAkey "$5.key" -CAcreateserial -days 30 \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

ca ca tcpmsg-test-ca
ca rogue-ca tcpmsg-rogue-ca
leaf server localhost "DNS:localhost,IP:127.0.0.1,IP:::1" serverAuth ca
leaf second second.example "DNS:second.example" serverAuth ca
leaf other other.example "DNS:other.example" serverAuth ca
leaf client client1 "DNS:client1" clientAuth ca
leaf rogue localhost "DNS:localhost,IP:127.0.0.1,IP:::1" serverAuth rogue-ca
leaf rogue-client mallory "DNS:mallory" clientAuth rogue-ca

# An expired certificate needs dates in the past, which only `openssl ca` sets (x509 -req
# starts now): a minimal CA database for it.
: >index.txt
echo 1000 >serial
cat >ca.cnf <<CNF
[ca]
default_ca = test
[test]
database = index.txt
serial = serial
new_certs_dir = .
default_md = sha256
policy = any
copy_extensions = copy
[any]
commonName = supplied
CNF
key expired
openssl req -new -key expired.key -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" -out expired.csr
openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr \
    -startdate 20200101000000Z -enddate 20200102000000Z -notext -out expired.pem 2>/dev/null
rm -f expired.csr ./*.old 1000.pem
touch done
echo "test PKI in $dir"
