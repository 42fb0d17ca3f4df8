#!/usr/bin/env bash
# Benchmark: builds the same suite and variant with debstrap-onion (cold cache, then warm),
# mmdebstrap and debootstrap, in one run on this machine, and prints the median wall time, the
# ratio to mmdebstrap, the peak RSS, and debstrap-onion's time per stage.
#
#   sudo scripts/bench.sh [SUITE] [RUNS]        (defaults: trixie 3)
#
# The mirror comes from $DEBSTRAP_MIRROR or the host's apt sources, as for the tool itself.
# Missing anchors (mmdebstrap, debootstrap) and GNU time are installed from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
suite=${1:-trixie}
runs=${2:-3}
variant=minbase

[ "$(id -u)" = 0 ] || { echo "bench.sh: run as root (the builds chroot and mount)" >&2; exit 2; }
missing=()
for tool in mmdebstrap debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" arch-test >/dev/null
fi
cargo build --release --locked -q
ours=$PWD/target/release/debstrap-onion

mirror=${DEBSTRAP_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $1}' | grep -v -- '-security' | head -1)
fi
if [ -z "$mirror" ]; then
    mirror=$(awk '$1=="deb" && $2 !~ /^\[/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
[ -n "$mirror" ] || { echo "bench.sh: no mirror: set DEBSTRAP_MIRROR" >&2; exit 2; }

work=$(mktemp -d /var/tmp/debstrap-bench.XXXXXX)
cleanup() {
    # Never delete through a mount a failed build may have left.
    if findmnt -rn -o TARGET | grep -q "^$work"; then
        echo "bench.sh: mounts left under $work, not removing it" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

results=$work/results
: >"$results"
# run NAME COMMAND...: times one run; records "NAME seconds max_rss_kb" and keeps our stage line.
run() {
    local name=$1; shift
    rm -rf "$work/root"
    /usr/bin/time -f '%e %M' -o "$work/time" "$@" >"$work/out" 2>"$work/err" || {
        echo "bench.sh: $name failed:" >&2; tail -20 "$work/err" >&2; exit 1; }
    read -r secs rss <"$work/time"
    echo "$name $secs $rss" >>"$results"
    grep -h '^done in' "$work/err" >>"$work/stages.$name" 2>/dev/null || true
}

for i in $(seq "$runs"); do
    echo "run $i/$runs" >&2
    rm -rf "$work/cache"
    run ours-cold "$ours" build --no-onion --variant=$variant --cache-dir "$work/cache" "$suite" "$work/root" "$mirror"
    run ours-warm "$ours" build --no-onion --variant=$variant --cache-dir "$work/cache" "$suite" "$work/root" "$mirror"
    run mmdebstrap mmdebstrap --quiet --mode=root --variant=$variant "$suite" "$work/root" "$mirror"
    run debootstrap debootstrap --variant=$variant "$suite" "$work/root" "$mirror"
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mm=$(awk '$1=="mmdebstrap"{print $2}' "$results" | median)
printf '\n%s %s, %s runs each, median wall time; ratios against mmdebstrap in this run\n\n' "$suite" "$variant" "$runs"
printf '| %-12s | %9s | %14s | %13s |\n' tool "wall (s)" "/ mmdebstrap" "peak RSS (MB)"
printf '|%s|%s|%s|%s|\n' -------------- ----------- ---------------- ---------------
for name in ours-cold ours-warm mmdebstrap debootstrap; do
    t=$(awk -v n=$name '$1==n{print $2}' "$results" | median)
    r=$(awk -v n=$name '$1==n{print $3}' "$results" | sort -n | tail -1)
    awk -v n="$name" -v t="$t" -v m="$mm" -v r="$r" 'BEGIN {printf "| %-12s | %9.2f | %14.2f | %13.1f |\n", n, t, t / m, r / 1024}'
done
for name in ours-cold ours-warm; do
    printf '\n%s stages (last run): %s\n' "$name" "$(tail -1 "$work/stages.$name" 2>/dev/null)"
done
