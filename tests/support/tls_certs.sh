#!/bin/sh
# Makes the certificates tests/test_tls.c uses, in directory $1, with the
# openssl command (OpenSSL 3.0). docs/security.md shows the same commands.
#   ca.pem ca.key       test CA            ca2.pem ca2.key   a second CA
#   server.pem/.key     CN=localhost,O=gen1, SAN DNS:localhost,IP:127.0.0.1
#   renewed.pem/.key    the same names, O=gen2 (a renewal, for reload)
#   client.pem/.key     CN=client1, SAN DNS:client1 (mTLS)
#   expired.pem/.key    like server.pem, but expired yesterday
#   other.pem/.key      CN=other.example, SAN DNS:other.example,IP:127.0.0.2
set -eu
d=$1
cd "$d"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "$2" -days 30 -out "$1.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
leaf() { # name subject san serial days
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -set_serial "$4" -days "$5" \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca /CN=mprpc-test-ca
ca ca2 /CN=mprpc-other-ca
leaf server /CN=localhost/O=gen1 DNS:localhost,IP:127.0.0.1 1001 30
leaf renewed /CN=localhost/O=gen2 DNS:localhost,IP:127.0.0.1 1002 30
leaf client /CN=client1/O=mprpc-test DNS:client1 2001 30
leaf expired /CN=localhost/O=expired DNS:localhost,IP:127.0.0.1 1003 -1
leaf other /CN=other.example DNS:other.example,IP:127.0.0.2 1004 30
