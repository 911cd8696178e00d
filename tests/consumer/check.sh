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

# Every example program builds the same way, from its source and common.c alone (the
# calculator server also needs libm for fmod, the libuv example libuv), and runs.
examples="$here/../../examples"
for src in "$examples"/*.c; do
    name=$(basename "$src" .c)
    [ "$name" = common ] && continue
    extra=
    if [ "$name" = uv_echo ]; then
        pkg-config --exists libuv || { echo "consumer: $name skipped (no libuv)"; continue; }
        extra=$(pkg-config --cflags --libs libuv)
    fi
    ${CC:-cc} -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags tcpmsg) \
        "$src" "$examples/common.c" -o "$work/$name" $(pkg-config --libs tcpmsg) $extra -lm \
        -Wl,-rpath,"$libdir"
    if [ "$name" != codec_demo ]; then
        "$work/$name" --version >/dev/null
    else
        "$work/$name" >/dev/null
    fi
done
echo "consumer: every example builds with pkg-config alone and runs"

cmake -S "$here" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" >"$work/cmake-configure.log"
cmake --build "$work/cmake" >"$work/cmake-build.log"
"$work/cmake/consumer"

# The installed files are where GNUInstallDirs says, and the library has its SONAME link.
ls "$libdir"/libtcpmsg.so.0 >/dev/null 2>&1 || ls "$libdir"/libtcpmsg.a >/dev/null
ls "$prefix"/include/tcpmsg/codec.h >/dev/null
"$prefix"/bin/tcpmsg-cat --version >/dev/null # the installed tool, with its man page
"$prefix"/bin/tcpmsg-relay --version >/dev/null
ls "$prefix"/share/man/man1/tcpmsg-cat.1 "$prefix"/share/man/man1/tcpmsg-relay.1 >/dev/null
# The reference manual is installed: man finds a function's page and the overview.
if command -v man >/dev/null; then
    MANPATH="$prefix/share/man" man -w tcpmsg_conn_recv >/dev/null
    MANPATH="$prefix/share/man" man -w 7 tcpmsg >/dev/null
fi
ls "$prefix"/share/man/man3/tcpmsg_server_create.3 "$prefix"/share/man/man7/tcpmsg.7 >/dev/null
echo "consumer: ok"
