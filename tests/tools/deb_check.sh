#!/bin/sh
# The Debian packages, end to end: builds them with CPack (prefix /usr), checks what each
# holds, installs them with apt-get, builds and runs the out-of-tree consumer against the
# installed packages with pkg-config and with find_package (no prefix given: the system's),
# runs an installed tool and finds a man page, then removes the packages (also when a step
# fails). Needs root (CI runs it). Usage: deb_check.sh SOURCE_DIR WORK_DIR
set -eu
src=$(cd "$1" && pwd)
work=$2
rm -rf "$work"
mkdir -p "$work"
build="$work/build"
pkgs="tcpmsg-tools libtcpmsg-dev libtcpmsg0"

cmake -S "$src" -B "$build" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTCPMSG_BUILD_TESTS=OFF -DTCPMSG_WERROR=ON >"$work/configure.log"
cmake --build "$build" -j"$(nproc)" >"$work/build.log"
(cd "$build" && cpack -G DEB >"$work/cpack.log")
ls "$build"/*.deb

# What each package holds.
listing() { dpkg-deb -c "$1" | awk '{print $6}' >"$work/$(basename "$1").list"; }
holds() { # PACKAGE_FILE PATTERN...
    deb=$1
    shift
    listing "$deb"
    for pattern in "$@"; do
        grep -Eq "$pattern" "$work/$(basename "$deb").list" ||
            { echo "deb: $(basename "$deb") lacks $pattern" >&2; exit 1; }
    done
}
lacks() { # PACKAGE_FILE PATTERN: nothing that matches
    listing "$1"
    if grep -Eq "$2" "$work/$(basename "$1").list"; then
        echo "deb: $(basename "$1") holds $2" >&2
        exit 1
    fi
}
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
rt=$(ls "$build"/libtcpmsg0_*.deb)
dev=$(ls "$build"/libtcpmsg-dev_*.deb)
tools=$(ls "$build"/tcpmsg-tools_*.deb)
holds "$rt" "^\./usr/lib/$multiarch/libtcpmsg\.so\.0$" "^\./usr/lib/$multiarch/libtcpmsg\.so\.0\."
lacks "$rt" "include/|\.pc$|/bin/"
holds "$dev" "^\./usr/include/tcpmsg\.h$" "^\./usr/include/tcpmsg/server\.h$" \
    "^\./usr/lib/$multiarch/libtcpmsg\.so$" "^\./usr/lib/$multiarch/pkgconfig/tcpmsg\.pc$" \
    "^\./usr/lib/$multiarch/cmake/tcpmsg/tcpmsgConfig\.cmake$" \
    "^\./usr/share/man/man3/tcpmsg_conn_recv\.3" "^\./usr/share/man/man7/tcpmsg\.7"
lacks "$dev" "libtcpmsg\.so\.0"
holds "$tools" "^\./usr/bin/tcpmsg-cat$" "^\./usr/bin/tcpmsg-relay$" \
    "^\./usr/bin/tcpmsg-echo-server$" "^\./usr/share/man/man1/tcpmsg-cat\.1" \
    "^\./usr/share/doc/tcpmsg/systemd/tcpmsg-echo-server\.socket$" \
    "^\./usr/share/doc/tcpmsg/haproxy/haproxy\.cfg$"
dpkg-deb -f "$dev" Depends | grep -q "libtcpmsg0 (= " || { echo "deb: -dev's Depends" >&2; exit 1; }
dpkg-deb -f "$tools" Depends | grep -q "libtcpmsg0 (= " || { echo "deb: tools' Depends" >&2; exit 1; }
echo "deb: three packages, each with its files and dependencies"

remove() { apt-get remove -y --purge $pkgs >"$work/remove.log" 2>&1 || true; }
trap remove EXIT
for p in $pkgs; do
    if dpkg -s "$p" >/dev/null 2>&1; then
        echo "deb: $p is installed already (remove it first)" >&2
        exit 1
    fi
done
apt-get install -y "$rt" "$dev" "$tools" >"$work/install.log"

# The consumer against the system's files: pkg-config, then find_package.
cc=${CC:-cc}
$cc -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags tcpmsg) "$src/tests/consumer/main.c" \
    -o "$work/consumer-pkgconfig" $(pkg-config --libs tcpmsg)
"$work/consumer-pkgconfig"
cmake -S "$src/tests/consumer" -B "$work/cmake" >"$work/cmake-configure.log"
cmake --build "$work/cmake" >"$work/cmake-build.log"
"$work/cmake/consumer"
ldd "$work/consumer-pkgconfig" >"$work/ldd.txt"
grep -Eq "=> (/usr)?/lib/$multiarch/libtcpmsg\.so\.0 " "$work/ldd.txt" ||
    { echo "deb: the consumer does not use the installed library" >&2; exit 1; }
/usr/bin/tcpmsg-echo-server --version >/dev/null
/usr/bin/tcpmsg-cat --version >/dev/null
man -w tcpmsg_conn_recv >/dev/null
man -w tcpmsg-cat >/dev/null
echo "deb: installed; the consumer builds with pkg-config and with find_package, and runs"

trap - EXIT
apt-get remove -y --purge $pkgs >"$work/remove.log"
for p in $pkgs; do
    if dpkg -s "$p" >/dev/null 2>&1; then
        echo "deb: $p is still installed" >&2
        exit 1
    fi
done
[ ! -e /usr/lib/"$multiarch"/libtcpmsg.so.0 ] || { echo "deb: the library is left" >&2; exit 1; }
echo "deb: removed, nothing left"
