#!/bin/sh
# Refreshes keyrings/ from the newest debian-archive-keyring package of a Debian mirror.
#
# Usage: scripts/refresh-keyrings.sh MIRROR_URL [SUITE]   (SUITE defaults to sid)
#
# Trust is chained from the keys already in keyrings/: the suite's InRelease must verify with
# gpgv against them, the Packages index must match the SHA256 in that verified text, and the
# .deb must match the SHA256 in that Packages index. Needs curl, gpgv, xz, sha256sum and
# dpkg-deb (or ar + tar).
set -eu

mirror=${1:?usage: $0 MIRROR_URL [SUITE]}
suite=${2:-sid}
mirror=${mirror%/}
here=$(cd "$(dirname "$0")/.." && pwd)
dest=$here/keyrings
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat "$dest"/debian-archive-*.gpg >"$work/trusted.gpg"

curl -fsS -o "$work/InRelease" "$mirror/dists/$suite/InRelease"
gpgv --keyring "$work/trusted.gpg" --output "$work/Release" "$work/InRelease"

# The SHA256 section lists " HASH SIZE PATH"; take the line for main's arch-all Packages.xz.
index=main/binary-all/Packages.xz
want=$(awk -v p="$index" '/^SHA256:/{s=1; next} /^[^ ]/{s=0} s && $3==p {print $1}' "$work/Release")
[ -n "$want" ] || { echo "$index is not listed in $suite's Release" >&2; exit 1; }
curl -fsS -o "$work/Packages.xz" "$mirror/dists/$suite/$index"
echo "$want  $work/Packages.xz" | sha256sum -c --quiet

xz -dc "$work/Packages.xz" | awk '
    /^Package: debian-archive-keyring$/ {p=1}
    p && /^Filename:/ {print "filename=" $2}
    p && /^SHA256:/ {print "sha256=" $2}
    /^$/ {p=0}' >"$work/stanza"
filename=$(sed -n 's/^filename=//p' "$work/stanza" | head -n1)
sha256=$(sed -n 's/^sha256=//p' "$work/stanza" | head -n1)
[ -n "$filename" ] || { echo "debian-archive-keyring is not in $suite" >&2; exit 1; }

curl -fsS -o "$work/keyring.deb" "$mirror/$filename"
echo "$sha256  $work/keyring.deb" | sha256sum -c --quiet

mkdir "$work/x"
if command -v dpkg-deb >/dev/null; then
    dpkg-deb -x "$work/keyring.deb" "$work/x"
else
    (cd "$work" && ar x keyring.deb && tar -xf data.tar.* -C x)
fi

# Ship the per-release keyrings only: the combined keyring repeats them and the removed-keys
# file must never be trusted.
rm -f "$dest"/debian-archive-*.gpg
for f in "$work"/x/usr/share/keyrings/debian-archive-*; do
    name=$(basename "$f")
    name=${name%.*}
    case $name in
        debian-archive-keyring | debian-archive-removed-keys) continue ;;
    esac
    cp "$f" "$dest/$name.gpg"
done

echo "keyrings/ now holds, from $(basename "$filename"):"
ls "$dest"/*.gpg
echo "Update the table in keyrings/README.md to match; every keyrings/*.gpg is built in at the next cargo build."
