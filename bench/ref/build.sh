#!/bin/sh
# Build the C reference programs into bench/build/ (git-ignored) and print their paths.
# Needs gcc, libxdp-dev and libbpf-dev (Debian: apt-get install gcc libxdp-dev libbpf-dev).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${BENCH_BUILD_DIR:-$here/../build}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cc=${CC:-gcc}

if ! command -v "$cc" >/dev/null 2>&1; then
    echo "build.sh: compiler '$cc' not found (apt-get install gcc)" >&2
    exit 1
fi
missing=""
for h in xdp/xsk.h xdp/libxdp.h bpf/bpf.h bpf/libbpf.h linux/if_xdp.h; do
    if ! printf '#include <%s>\n' "$h" | "$cc" -E -x c - >/dev/null 2>&1; then
        missing="$missing $h"
    fi
done
if [ -n "$missing" ]; then
    echo "build.sh: missing headers:$missing" >&2
    echo "build.sh: install them with: apt-get install libxdp-dev libbpf-dev" >&2
    exit 1
fi

if pkg-config --exists libxdp libbpf 2>/dev/null; then
    libs=$(pkg-config --libs libxdp libbpf)
else
    libs="-lxdp -lbpf"
fi

cflags="-O2 -g -Wall -Wextra -std=gnu11"
# shellcheck disable=SC2086
"$cc" $cflags -o "$out/xsk_ref" "$here/xsk_ref.c" $libs -lm
echo "$out/xsk_ref"
if [ -f "$here/livegen.c" ]; then
    # shellcheck disable=SC2086
    "$cc" $cflags -o "$out/livegen" "$here/livegen.c" -lbpf
    echo "$out/livegen"
fi
