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
#               Outcome::decide, is_weak; dates.rs's later), the Suite/Date/Valid-Until checks
#               of from_verified_text, the SHA256 list, and the Date/skew limits       lib
#   fetch       src/fetch/hash.rs; the size/hash check, bounded body and download of
#               src/fetch/client.rs; DebReader, AtOffset, verify_local and download of
#               src/fetch/download.rs (not Sha256Digest's Debug)   lib + tests/fetch.rs
#   cache       CacheDir::open of src/fetch/cache.rs                lib + tests/fetch.rs
#
# Not measured yet (they did not fit the first round on two shared cores): the date arithmetic of
# release/dates.rs, keyring.rs, the rest of cache.rs, src/unpack/extract.rs, src/target.rs, src/stage/chroot.rs.
# Mutants known to be equivalent (no test can tell them from the original) are listed, each
# with its reason, in scripts/mutants-equivalent.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI=true

run() {
    local group=$1
    shift
    cargo mutants --in-place --baseline skip --timeout 300 --build-timeout 900 \
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
        --re 'release/mod\.rs.*(from_inrelease|from_detached|from_verified_text|parse_sha256_section)|release/mod\.rs:(26|30):|release/signature\.rs|release/dates\.rs.*later' \
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

status=0
for group in "${@:-path confined signature fetch cache}"; do
    for g in $group; do
        case $g in
        path | confined | signature | fetch | cache) "$g" || status=$? ;;
        *)
            echo "unknown group $g (path, confined, signature, fetch, cache)" >&2
            exit 2
            ;;
        esac
    done
done
# cargo-mutants exits 2 when a mutant was missed, 3 on a timeout.
exit "$status"
