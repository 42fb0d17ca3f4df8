#!/usr/bin/env bash
# Mutation testing of the security-critical code with cargo-mutants (`cargo install
# cargo-mutants`): each group mutates its files and runs only the fast offline tests that cover
# them (never a test that reaches the real archive). A mutant no test notices is "missed".
#
#   scripts/mutants.sh [GROUP...]     (default: every group)
#
# Run it as root (the unpack tests need it), in a checkout nothing else builds from: the sources
# are mutated in place while it runs and put back after each mutant (also on Ctrl-C). Results
# go to mutants.out/GROUP/mutants.out/ (missed.txt, caught.txt, unviable.txt, timeout.txt); the
# last line printed for a group is its count.
#
# Groups and the tests each mutant must fail:
#   path        src/unpack/path.rs                                  lib + tests/unpack.rs
#   confined    src/root.rs                                         lib + tests/unpack.rs
#   signature   src/fetch/release/: signature policy (from_inrelease, from_detached, all of
#               signature.rs: the sequoia helper's good/bad/check, key_problem_now,
#               Outcome::decide, is_weak; all of dates.rs), the Suite/Date/Valid-Until checks
#               of from_verified_text, the SHA256 list, and the Date/skew limits       lib
#   fetch       src/fetch/hash.rs; the size/hash check, bounded body and download of
#               src/fetch/client.rs; DebReader, AtOffset, verify_local and download of
#               src/fetch/download.rs (not Sha256Digest's Debug)   lib + tests/fetch.rs
#   cache       CacheDir::open of src/fetch/cache.rs                lib + tests/fetch.rs
#   keyring     src/fetch/keyring.rs: loading and limits of the trusted keys         lib
#   extract     src/unpack/extract/: the claims, writers and modes (EXTRACT_RE below)
#                                                                   unpack:: + tests/unpack.rs
#   mounts      src/stage/chroot.rs: ChrootMounts, check_host_node, the mountinfo reading
#               (mounts_under, is_mount_point, ...), canonical     stage::chroot:: + the mount
#                                                                   tests of tests/stage.rs
#   target      src/target.rs: the TARGET lock, the parent checks, HeldRoot
#                                                                   target:: + the TARGET tests
#                                                                   of tests/boundary.rs
# The last three run only the named tests of each binary (libtest filters after the second
# `--`): the rest of the lib's tests never reach those files and cost minutes a mutant.
#
# Not measured yet: the rest of cache.rs, the
# messages, md5sums and directory-mtime bookkeeping of extract/ (Kind::name, Digests,
# Shippers, touched, children_by_parent, copy, kind_of), chroot.rs's command runner, and the
# noexec and mounts-inside refusals of src/output/place.rs.
# Set MUTANTS_TIMEOUT (seconds, default 300) for a shorter limit on a mutant's tests.
# Mutants known to be equivalent (no test can tell them from the original) are listed, each
# with its reason, in scripts/mutants-equivalent.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI=true

run() {
    local group=$1
    shift
    mkdir -p mutants.out
    cargo mutants --in-place --baseline skip --timeout "${MUTANTS_TIMEOUT:-300}" --build-timeout 900 \
        --output "mutants.out/$group" "$@"
}

path() {
    run path --file src/unpack/path.rs \
        -C --lib -C --test=unpack -- -- --skip real_archive
}

confined() {
    run confined --file src/root.rs \
        -C --lib -C --test=unpack -- -- --skip real_archive
}

signature() {
    run signature --file 'src/fetch/release/*.rs' \
        --re 'release/mod\.rs.*(from_inrelease|from_detached|from_verified_text|parse_sha256_section)|release/mod\.rs:(26|30):|release/signature\.rs|release/dates\.rs' \
        -C --lib
}

fetch() {
    run fetch --file src/fetch/hash.rs --file src/fetch/client.rs --file src/fetch/download.rs \
        --re 'hash\.rs|client\.rs.*(Body::announced|stream_bounded|Fetcher::download|in check|replace check)|download\.rs.*(DebReader|AtOffset|verify_local|CachedDeb::open|download)' \
        --exclude-re 'Debug for Sha256Digest' \
        -C --lib -C --test=fetch
}

cache() {
    run cache --file src/fetch/cache.rs --re 'CacheDir::open( |$)' \
        -C --lib -C --test=fetch
}

keyring() {
    run keyring --file src/fetch/keyring.rs -C --lib
}

mounts() {
    run mounts --file src/stage/chroot.rs --re "$MOUNTS_RE" \
        -C --lib -C --test=stage -- -- stage::chroot:: root_chroot_mounts root_mounts_under
}

target() {
    run target --file src/target.rs \
        -C --lib -C --test=boundary -- -- target:: root_a_second_build root_a_target_parent \
        root_nothing_is_made root_a_symlink_on_the_way root_a_build_directory_swapped
}

extract() {
    run extract --file src/unpack/extract/mod.rs --file src/unpack/extract/claims.rs \
        --re "$EXTRACT_RE" \
        -C --lib -C --test=unpack -- -- unpack:: root_ --skip real_archive
}

# What extract mutates: the claims, the writers and the modes; not the messages, the md5sums and
# the directory-mtime bookkeeping (Shippers, touched), which decide no file's place or owner.
EXTRACT_RE='ensure_usr_alias|::extract |>::finish |finish_links|check_shared|claim_dir|claim_other|recheck|shared_instance|finish_directories'
EXTRACT_RE+="|Job<'_, '_>::(entry |open_parent|key|directory|claim |place|regular|special|hard_link|defer_link|link_replacing)"
EXTRACT_RE+='|write_contents|fchown|set_fd_meta'
# What mounts mutates: the mount guard and the mountinfo reading of src/stage/chroot.rs, not the
# command runner.
MOUNTS_RE='ChrootMounts::|Drop for ChrootMounts|check_host_node|mounts_under|mount_points'
MOUNTS_RE+='|is_mount_point|mount_point_of|unescape_mountinfo|canonical'

status=0
for group in "${@:-path confined signature fetch cache keyring extract mounts target}"; do
    for g in $group; do
        case $g in
        path | confined | signature | fetch | cache | keyring | extract | mounts | target) "$g" || status=$? ;;
        *)
            echo "unknown group $g (path, confined, signature, fetch, cache, keyring, extract, mounts, target)" >&2
            exit 2
            ;;
        esac
    done
done
# cargo-mutants exits 2 when a mutant was missed, 3 on a timeout.
exit "$status"
