#!/bin/sh
# Out-of-tree consumer check: install the build into a fresh prefix, then build and run a
# small program against the installed package twice: with pkg-config and with CMake's
# find_package(tcpmsg CONFIG). Usage: check.sh BUILD_DIR WORK_DIR
set -eu
build=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
prefix="$work/prefix"

cmake --install "$build" --prefix "$prefix" >"$work/install.log"

pcdir=$(dirname "$(find "$prefix" -name tcpmsg.pc | head -n 1)")
[ -f "$pcdir/tcpmsg.pc" ] || { echo "consumer: tcpmsg.pc not installed" >&2; exit 1; }
export PKG_CONFIG_PATH="$pcdir"
libdir=$(pkg-config --variable=libdir tcpmsg)
echo "pkg-config: $(pkg-config --cflags --libs tcpmsg)"
${CC:-cc} -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags tcpmsg) "$here/main.c" \
    -o "$work/consumer-pkgconfig" $(pkg-config --libs tcpmsg) -Wl,-rpath,"$libdir"
"$work/consumer-pkgconfig"

cmake -S "$here" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" >"$work/cmake-configure.log"
cmake --build "$work/cmake" >"$work/cmake-build.log"
"$work/cmake/consumer"

# The installed files are where GNUInstallDirs says, and the library has its SONAME link.
ls "$libdir"/libtcpmsg.so.0 >/dev/null 2>&1 || ls "$libdir"/libtcpmsg.a >/dev/null
ls "$prefix"/include/tcpmsg/codec.h >/dev/null
echo "consumer: ok"
