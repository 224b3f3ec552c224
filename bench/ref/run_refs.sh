#!/bin/bash
# Run the reference benchmarks on a veth pair inside a private network namespace.
#
#   bench/ref/run_refs.sh [-n RUNS(3)] [-d SECONDS(3)] [-s BYTES(64)] [SCENARIO...]
#
# Scenarios (default: all). "va" is the traffic side, "vb" the side under test,
# sources pinned to core 0, the program measured to core 1:
#   c-txonly    xsk_ref txonly on va, counting XDP drop on vb (--drop-peer)
#   c-rxdrop    livegen into vb, xsk_ref rxdrop on vb
#   c-l2fwd     livegen into vb, xsk_ref l2fwd on vb, counting XDP drop on va
#   py-txonly   afpacket_ref txonly on va, counting XDP drop on vb
#   py-rxdrop   xsk_ref txonly on va, afpacket_ref rxdrop on vb
#   py-l2fwd    xsk_ref txonly on va, afpacket_ref l2fwd on vb, counting XDP drop on va
# AF_PACKET receivers get their traffic from the C AF_XDP sender, not livegen: a frame
# XDP-redirected into a veth whose peer has no XDP program is dropped (KERNEL_NOTES.md).
#
# Every result is one JSON line on stdout (with "scenario" and "run" added), then a
# median summary on stderr. Nothing outlives the namespace: the veth pair and every
# XDP program (attached through BPF links or by the exiting process) die with it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${XSK_REF_IN_NS:-}" ]; then
    # Re-run ourselves in a fresh network + mount namespace.
    export XSK_REF_IN_NS=1
    exec unshare -n -m -- "$0" "$@"
fi

runs=3 dur=3 size=64
while getopts "n:d:s:" opt; do
    case $opt in
        n) runs=$OPTARG ;;
        d) dur=$OPTARG ;;
        s) size=$OPTARG ;;
        *) echo "usage: $0 [-n RUNS] [-d SECONDS] [-s BYTES] [SCENARIO...]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(c-txonly c-rxdrop c-l2fwd py-txonly py-rxdrop py-l2fwd)

bins=$("$here/build.sh")
XSK=$(echo "$bins" | grep '/xsk_ref$')
GEN=$(echo "$bins" | grep '/livegen$')
PY="${PYTHON:-python3} $here/afpacket_ref.py"
src_dur=$(awk "BEGIN{print $dur + 2}")  # sources outlast the sink's window

mount --make-rprivate /
ip link add va numrxqueues 1 numtxqueues 1 type veth peer name vb numrxqueues 1 numtxqueues 1
# No IPv6 chatter (router/neighbour discovery) on the test links.
sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 || true
ip link set va up
ip link set vb up

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# run_one SCENARIO RUN: prints the measured side's JSON line.
run_one() {
    local sc=$1 run=$2 sink_pid drop_pid=""
    local out="$tmp/out.json" drop="$tmp/drop.json" src="$tmp/src.json"
    rm -f "$out" "$drop" "$src"
    case $sc in
        c-txonly)
            taskset -c 0 "$XSK" txonly -i va -d "$dur" -s "$size" --drop-peer vb --quiet > "$out"
            ;;
        py-txonly)
            "$XSK" drop -i vb -d "$dur" -w 5 --quiet > "$drop" &
            drop_pid=$!
            sleep 0.2
            taskset -c 0 $PY txonly -i va -d "$src_dur" -s "$size" --quiet > "$out"
            wait "$drop_pid"
            drop_pid=""
            ;;
        c-rxdrop | c-l2fwd | py-rxdrop | py-l2fwd)
            if [ "${sc#*-}" = l2fwd ]; then
                "$XSK" drop -i va -d "$dur" -w 5 --quiet > "$drop" &
                drop_pid=$!
            fi
            if [ "${sc%%-*}" = c ]; then
                taskset -c 1 "$XSK" "${sc#*-}" -i vb -d "$dur" --quiet > "$out" &
            else
                taskset -c 1 $PY "${sc#*-}" -i vb -d "$dur" --quiet > "$out" &
            fi
            sink_pid=$!
            sleep 0.3
            if [ "${sc%%-*}" = c ]; then
                taskset -c 0 "$GEN" -i va -d "$src_dur" -s "$size" --quiet > "$src"
            else
                taskset -c 0 "$XSK" txonly -i va -d "$src_dur" -s "$size" --quiet > "$src"
            fi
            wait "$sink_pid"
            if [ -n "$drop_pid" ]; then
                kill -INT "$drop_pid" 2> /dev/null || true
                wait "$drop_pid" || true
                drop_pid=""
            fi
            ;;
        *)
            echo "run_refs: unknown scenario $sc" >&2
            return 2
            ;;
    esac
    # Tag the measured side's line; add what the source offered (source_pps) and
    # what the counting drop saw arrive (peer_pps), to tell who was the bottleneck.
    python3 - "$out" "$src" "$drop" "$sc" "$run" <<'EOF'
import json, os, sys
out, src, drop, sc, run = sys.argv[1:]
o = json.load(open(out))
o["scenario"], o["run"] = sc, int(run)
if os.path.exists(src) and os.path.getsize(src):
    s = json.load(open(src))
    o["source_impl"], o["source_pps"] = s["impl"], s["pps"]
if os.path.exists(drop) and os.path.getsize(drop):
    o["peer_pps"] = json.load(open(drop))["pps"]
print(json.dumps(o, separators=(",", ":")))
EOF
    sleep 0.1 # let the kernel release the queue slot (deferred, see KERNEL_NOTES.md)
}

for sc in "${scenarios[@]}"; do
    for ((r = 1; r <= runs; r++)); do
        run_one "$sc" "$r"
    done
done | tee "$tmp/all.jsonl"

python3 - "$tmp/all.jsonl" <<'EOF' >&2
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["scenario"], []).append(r["pps"] / 1e6)
print(f"{'scenario':<10} {'median Mpps':>11}  runs")
for sc, v in by.items():
    print(f"{sc:<10} {statistics.median(v):>11.3f}  " + " ".join(f"{x:.3f}" for x in v))
EOF
