#!/usr/bin/env bash
# Benchmark: builds the same package sets with debstrap-onion (cold cache, then warm) and with
# mmdebstrap, alternating the tools, in one run on this machine, and prints for each row the
# median wall time, the ratio to mmdebstrap, the peak RSS of the whole process tree, the
# package counts of both roots (and their difference), and debstrap-onion's time per stage.
#
#   sudo scripts/bench.sh [RUNS] [ROW...]       (defaults: 3, every row)
#
# LARGE_RUNS sets the runs of the large row alone (it downloads about 1 GB a cold run and
# takes the better part of an hour for the three builds). Each run's figures are printed as it
# ends; BENCH_KEEP=DIR keeps the raw results, package lists and stage lines there.
#
# Rows (trixie):
#   minbase   --variant=minbase (78 packages)
#   buildd    --variant=buildd
#   server    minbase plus a server set (python3 git curl openssh-server systemd vim sudo locales)
#   large     minbase plus a desktop-and-services set of about 900 packages (LARGE below)
#   onion     our default onion build against mmdebstrap --variant=apt --include=nginx
#   zst, xz   minbase written as .tar.zst and .tar.xz by both tools (sizes reported)
#   squashfs  minbase written as .squashfs by both tools
#   oci       minbase written as our .oci image against mmdebstrap's .squashfs (mmdebstrap
#             writes no OCI image; its squashfs is the nearest image it makes)
#   rootless  minbase to .tar as an unprivileged user ($BENCH_USER, default debstrap-rootless,
#             which needs /etc/subuid and /etc/subgid ranges) against mmdebstrap --mode=unshare
#             as the same user, plus our root build of the same tarball ("root" below the table)
#   arm64     minbase with --arch=arm64 for both tools: on a host that is not arm64 the
#             maintainer scripts run through qemu's binfmt_misc handler (qemu-user-static and
#             binfmt-support are installed and qemu-aarch64 enabled when missing); minutes a run
#
# The mirror comes from $DEBSTRAP_MIRROR or the host's apt sources, as for the tool itself.
# Missing anchors (mmdebstrap, debootstrap) and GNU time are installed from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
shift || true
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(minbase buildd server large onion zst xz squashfs oci rootless arm64)
suite=trixie
SERVER=python3,git,curl,openssh-server,systemd,vim,sudo,locales
# fonts-dejavu-core and -mono are named because apt's order-dependent choice among the
# alternatives of fontconfig-config picks them where ours takes fonts already in the set.
LARGE=fonts-dejavu-core,fonts-dejavu-mono,xfce4,firefox-esr,libreoffice,gimp,inkscape,python3-full,git,build-essential,vim,openssh-server,systemd,thunderbird,vlc,emacs,texlive-latex-base,default-jdk,golang,nodejs,php,postgresql,mariadb-server,apache2,r-base

[ "$(id -u)" = 0 ] || { echo "bench.sh: run as root (the builds chroot and mount)" >&2; exit 2; }
missing=()
for tool in mmdebstrap tor; do command -v "$tool" >/dev/null || missing+=("$tool"); done
command -v mksquashfs >/dev/null || missing+=(squashfs-tools)
# mmdebstrap writes squashfs through tar2sqfs.
command -v tar2sqfs >/dev/null || missing+=(squashfs-tools-ng)
[ -x /usr/bin/time ] || missing+=(time)
# An emulated row needs qemu's aarch64 handler (the F flag lets it work inside any chroot).
emulate=""
if [[ " ${rows[*]} " == *" arm64 "* ]] && [ "$(uname -m)" != aarch64 ]; then
    emulate=qemu-aarch64
    [ -e /usr/share/binfmts/qemu-aarch64 ] || missing+=(qemu-user-static binfmt-support)
fi
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" arch-test zstd xz-utils >/dev/null
fi
if [ -n "$emulate" ]; then
    [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable "$emulate"
fi
cargo build --release --locked -q
ours=${CARGO_TARGET_DIR:-$PWD/target}/release/debstrap-onion

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
    if [ -n "${BENCH_KEEP:-}" ]; then
        mkdir -p "$BENCH_KEEP"
        cp "$work"/results "$work"/pkgs.* "$work"/stages.* "$BENCH_KEEP"/ 2>/dev/null || true
    fi
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

# tree_rss PID: the summed RSS (kB) of PID and every process below it, now.
tree_rss() {
    ps -e -o pid=,ppid=,rss= | awk -v root="$1" '
        { parent[$1] = $2; rss[$1] = $3 }
        END {
            for (p in rss) {
                q = p
                while (q != "" && q != 0 && q != root) q = parent[q]
                if (q == root) sum += rss[p]
            }
            print sum + 0
        }'
}

# run ROW TOOL OUTPUT COMMAND...: times one run and samples the process tree's RSS every 0.2 s;
# records "ROW TOOL seconds peak_tree_rss_kb size_bytes" and keeps our stage line.
run() {
    local row=$1 tool=$2 output=$3; shift 3
    rm -rf "$output"
    # Start with no dirty pages from the previous build, so its writeback is not timed here.
    sync
    local start end peak=0 now
    start=$(date +%s.%N)
    "$@" >"$work/out" 2>"$work/err" &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        now=$(tree_rss "$pid")
        [ "$now" -gt "$peak" ] && peak=$now
        sleep 0.2
    done
    wait "$pid" || { echo "bench.sh: $row/$tool failed:" >&2; tail -20 "$work/err" >&2; exit 1; }
    end=$(date +%s.%N)
    local size=0
    [ -f "$output" ] && size=$(stat -c %s "$output")
    echo "$row $tool $(awk -v s="$start" -v e="$end" 'BEGIN {print e - s}') $peak $size" >>"$results"
    echo "  $(tail -1 "$results") (row tool seconds rss_kb bytes)" >&2
    grep -h '^done in' "$work/err" >"$work/stages.$row.$tool" 2>/dev/null || true
}

# packages DIR: the installed package names of a root, one a line.
packages() { chroot "$1" dpkg-query -W -f '${binary:Package}\n' | sed 's/:.*//' | sort; }

# The rootless row: our build and mmdebstrap's unshare mode as $BENCH_USER, in a directory of
# theirs, and our root build of the same tarball beside them.
rootless_row() {
    local user=${BENCH_USER:-debstrap-rootless}
    grep -q "^$user:" /etc/subuid || { echo "bench.sh: $user has no /etc/subuid range" >&2; exit 2; }
    local home=$work/rootless
    chmod 755 "$work"
    local as_user=(setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" --init-groups --
        env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME="$home" SOURCE_DATE_EPOCH=1700000000)
    for i in $(seq "$runs"); do
        echo "rootless: run $i/$runs" >&2
        rm -rf "$home"; mkdir -p "$home"; chown "$user:" "$home"
        cp "$ours" "$home/debstrap-onion"; chmod 755 "$home/debstrap-onion"
        run rootless cold "$home/ours.tar" "${as_user[@]}" "$home/debstrap-onion" build --no-onion --cache-dir "$home/cache" "$suite" "$home/ours.tar" "$mirror"
        run rootless mmdebstrap "$home/mm.tar" "${as_user[@]}" mmdebstrap --quiet --mode=unshare --variant=minbase "$suite" "$home/mm.tar" "$mirror"
        run rootless warm "$home/ours.tar" "${as_user[@]}" "$home/debstrap-onion" build --no-onion --cache-dir "$home/cache" "$suite" "$home/ours.tar" "$mirror"
        rm -rf "$work/cache"
        run rootless root "$work/root.tar" env SOURCE_DATE_EPOCH=1700000000 "$ours" build --no-onion --mode root --cache-dir "$work/cache" "$suite" "$work/root.tar" "$mirror"
        if [ "$i" = 1 ] && ! cmp -s "$home/ours.tar" "$work/root.tar"; then
            echo "bench.sh: the rootless tarball differs from root's" >&2; exit 1
        fi
    done
}

for row in "${rows[@]}"; do
    ours_args=(--no-onion --variant=minbase)
    mm_args=(--variant=minbase)
    ext=""
    mm_ext=""
    case $row in
        minbase) ;;
        buildd) ours_args=(--no-onion --variant=buildd); mm_args=(--variant=buildd) ;;
        server) ours_args+=(--include="$SERVER"); mm_args+=(--include="$SERVER") ;;
        large) ours_args+=(--include="$LARGE"); mm_args+=(--include="$LARGE") ;;
        onion) ours_args=(--host-root "$work/host"); mm_args=(--variant=apt --include=nginx) ;;
        zst) ext=.tar.zst ;;
        xz) ext=.tar.xz ;;
        squashfs) ext=.squashfs ;;
        oci) ext=.oci; mm_ext=.squashfs ;;
        rootless) ext=.tar ;;
        arm64) ours_args+=(--arch=arm64); mm_args+=(--arch=arm64) ;;
        *) echo "bench.sh: unknown row $row" >&2; exit 2 ;;
    esac
    mm_ext=${mm_ext:-$ext}
    if [ "$row" = rootless ]; then
        rootless_row
        continue
    fi
    row_runs=$runs
    [ "$row" = large ] && row_runs=${LARGE_RUNS:-$runs}
    for i in $(seq "$row_runs"); do
        echo "$row: run $i/$row_runs" >&2
        rm -rf "$work/cache" "$work/host"
        mkdir -p "$work/host"
        run "$row" cold "$work/ours$ext" env SOURCE_DATE_EPOCH=1700000000 "$ours" build "${ours_args[@]}" --cache-dir "$work/cache" "$suite" "$work/ours$ext" "$mirror"
        run "$row" mmdebstrap "$work/mm$mm_ext" env SOURCE_DATE_EPOCH=1700000000 mmdebstrap --quiet --mode=root "${mm_args[@]}" "$suite" "$work/mm$mm_ext" "$mirror"
        if [ "$row" = onion ]; then
            # The onion build refuses an existing service of the same name on the same host root.
            rm -rf "$work/host"; mkdir -p "$work/host"
        fi
        run "$row" warm "$work/ours$ext" env SOURCE_DATE_EPOCH=1700000000 "$ours" build "${ours_args[@]}" --cache-dir "$work/cache" "$suite" "$work/ours$ext" "$mirror"
        if [ "$i" = 1 ] && [ -z "$ext" ]; then
            packages "$work/ours" >"$work/pkgs.$row.ours"
            packages "$work/mm" >"$work/pkgs.$row.mm"
        fi
    done
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { awk -v r="$1" -v t="$2" -v f="$3" '$1==r && $2==t {print $f}' "$results"; }
printf '\n%s, %s runs each%s, median wall time; ratios against mmdebstrap in this run; peak RSS of\n' "$suite" "$runs" \
    "$([[ " ${rows[*]} " == *" large "* ]] && [ "${LARGE_RUNS:-$runs}" != "$runs" ] && echo " (large: ${LARGE_RUNS})")"
printf 'the whole process tree (sampled every 0.2 s, largest of the runs)\n\n'
printf '| row | packages (ours/mm) | mmdebstrap (s) | cold (s) | cold / mm | warm (s) | warm / mm | RSS ours cold/warm (MB) | RSS mm (MB) | size ours/mm (MB) |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for row in "${rows[@]}"; do
    mm=$(field "$row" mmdebstrap 3 | median)
    cold=$(field "$row" cold 3 | median)
    warm=$(field "$row" warm 3 | median)
    rc=$(field "$row" cold 4 | sort -n | tail -1)
    rw=$(field "$row" warm 4 | sort -n | tail -1)
    rm_=$(field "$row" mmdebstrap 4 | sort -n | tail -1)
    so=$(field "$row" cold 5 | tail -1)
    sm=$(field "$row" mmdebstrap 5 | tail -1)
    counts="-"
    if [ -f "$work/pkgs.$row.ours" ]; then
        counts="$(wc -l <"$work/pkgs.$row.ours")/$(wc -l <"$work/pkgs.$row.mm")"
    fi
    awk -v row="$row" -v c="$counts" -v mm="$mm" -v cold="$cold" -v warm="$warm" -v rc="$rc" -v rw="$rw" -v rm="$rm_" -v so="$so" -v sm="$sm" 'BEGIN {
        size = (so > 0) ? sprintf("%.1f/%.1f", so / 1048576, sm / 1048576) : "-"
        printf "| %s | %s | %.1f | %.1f | %.2f | %.1f | %.2f | %.0f/%.0f | %.0f | %s |\n", row, c, mm, cold, cold / mm, warm, warm / mm, rc / 1024, rw / 1024, rm / 1024, size
    }'
done
for row in "${rows[@]}"; do
    if [ -f "$work/pkgs.$row.ours" ] && ! diff -q "$work/pkgs.$row.ours" "$work/pkgs.$row.mm" >/dev/null; then
        printf '\n%s: package sets differ (< ours only, > mmdebstrap only):\n' "$row"
        diff "$work/pkgs.$row.ours" "$work/pkgs.$row.mm" | grep '^[<>]' || true
    fi
done
if [ -n "$(field rootless root 3)" ]; then
    root=$(field rootless root 3 | median)
    cold=$(field rootless cold 3 | median)
    awk -v r="$root" -v c="$cold" 'BEGIN { printf "\nrootless: our root build (cold) %.1f s; rootless cold / root cold = %.2f\n", r, c / r }'
fi

printf '\nour stages (last run of each row):\n'
for row in "${rows[@]}"; do
    printf '  %-8s cold: %s\n' "$row" "$(tail -1 "$work/stages.$row.cold" 2>/dev/null)"
    printf '  %-8s warm: %s\n' "$row" "$(tail -1 "$work/stages.$row.warm" 2>/dev/null)"
done
