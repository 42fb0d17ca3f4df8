//! Resolver behaviour on small Packages texts.

use super::*;

/// One Packages stanza: `fields` are extra `Key: value` lines.
fn stanza(name: &str, version: &str, fields: &[&str]) -> String {
    let mut text = format!("Package: {name}\nVersion: {version}\n");
    if !fields.iter().any(|f| f.starts_with("Architecture:")) {
        text.push_str("Architecture: amd64\n");
    }
    for field in fields {
        text.push_str(field);
        text.push('\n');
    }
    text.push_str(&format!(
        "Filename: pool/main/{name}_{version}.deb\nSize: 100\nSHA256: {}\n\n",
        "ab".repeat(32)
    ));
    text
}

fn index(stanzas: &[String]) -> RepoIndex {
    RepoIndex::from_unverified_text(&stanzas.concat())
}

fn select(variant: Variant, include: &[&str], exclude: &[&str]) -> Selection {
    Selection {
        variant,
        include: include.iter().map(|s| s.to_string()).collect(),
        exclude: exclude.iter().map(|s| s.to_string()).collect(),
        arch: "amd64".to_string(),
    }
}

/// Resolves the --include list with the extract variant (no other seeds).
fn extract(stanzas: &[String], include: &[&str]) -> Result<Resolution, ResolveError> {
    resolve(&index(stanzas), &select(Variant::Extract, include, &[]))
}

fn listed(resolution: &Resolution) -> Vec<String> {
    resolution
        .packages
        .iter()
        .map(|p| format!("{} {}", p.name, p.version))
        .collect()
}

fn names(resolution: &Resolution) -> Vec<&str> {
    resolution.names().collect()
}

#[test]
fn alternatives_take_the_first_satisfiable_one() {
    let stanzas = [
        stanza("a", "1", &["Depends: missing | old (>= 2) | b | c"]),
        stanza("old", "1", &[]),
        stanza("b", "1", &[]),
        stanza("c", "1", &[]),
    ];
    let resolution = extract(&stanzas, &["a"]).expect("resolves");
    assert_eq!(names(&resolution), ["a", "b"]);
}

#[test]
fn alternatives_prefer_a_seeded_package() {
    let stanzas = [
        stanza("a", "1", &["Priority: required", "Depends: b | c"]),
        stanza("b", "1", &[]),
        stanza("c", "1", &["Priority: required"]),
        stanza("apt", "1", &[]),
    ];
    let resolution =
        resolve(&index(&stanzas), &select(Variant::Minbase, &[], &[])).expect("resolves");
    assert_eq!(names(&resolution), ["a", "apt", "c"]);
}

#[test]
fn alternatives_prefer_a_package_another_dependency_pulls_in_later() {
    // `a` is visited before `z` pulls in `c`, yet `a`'s choice waits and finds `c` selected.
    let stanzas = [
        stanza("a", "1", &["Depends: b | c"]),
        stanza("b", "1", &[]),
        stanza("c", "1", &[]),
        stanza("top", "1", &["Depends: a, z"]),
        stanza("z", "1", &["Depends: c"]),
    ];
    let resolution = extract(&stanzas, &["top"]).expect("resolves");
    assert_eq!(names(&resolution), ["a", "c", "top", "z"]);
}

#[test]
fn a_virtual_dependency_is_satisfied_by_a_provider() {
    let stanzas = [
        stanza("a", "1", &["Depends: mail-transport-agent"]),
        stanza(
            "postfix",
            "1",
            &["Priority: optional", "Provides: mail-transport-agent"],
        ),
        stanza(
            "exim4",
            "1",
            &["Priority: standard", "Provides: mail-transport-agent"],
        ),
        stanza(
            "zmailer",
            "1",
            &["Priority: standard", "Provides: mail-transport-agent"],
        ),
    ];
    // The most basic priority wins, then the name.
    let resolution = extract(&stanzas, &["a"]).expect("resolves");
    assert_eq!(names(&resolution), ["a", "exim4"]);
    // A provider already selected is used.
    let resolution = extract(&stanzas, &["a", "postfix"]).expect("resolves");
    assert_eq!(names(&resolution), ["a", "postfix"]);
}

#[test]
fn a_versioned_dependency_needs_a_versioned_provides_that_fits() {
    let stanzas = [
        stanza("a", "1", &["Depends: libfoo-abi (>= 2)"]),
        stanza("unversioned", "1", &["Provides: libfoo-abi"]),
        stanza("old", "1", &["Provides: libfoo-abi (= 1)"]),
        stanza("new", "1", &["Provides: libfoo-abi (= 2.1)"]),
    ];
    let resolution = extract(&stanzas, &["a"]).expect("resolves");
    assert_eq!(names(&resolution), ["a", "new"]);

    let err = extract(&stanzas[..3], &["a"]).expect_err("nothing provides version 2");
    assert_eq!(
        err.to_string(),
        "a -> libfoo-abi (>= 2): provided by unversioned (unversioned), old (= 1), \
         which does not fit"
    );
}

#[test]
fn version_constraints_use_dpkg_order() {
    let versions = ["1.0~rc1-1", "1.0-1", "1.0-1+b1", "1:0.5-1"];
    let cases = [
        ("(<< 1.0)", "1.0~rc1-1"),
        ("(<= 1.0-1)", "1.0-1"),
        ("(= 1.0-1+b1)", "1.0-1+b1"),
        ("(>= 1.0-1)", "1:0.5-1"),
        ("(>> 1.0-1+b1)", "1:0.5-1"),
        ("(<< 1:0)", "1.0-1+b1"),
    ];
    for (constraint, expected) in cases {
        let mut stanzas = vec![stanza("a", "1", &[&format!("Depends: b {constraint}")])];
        stanzas.extend(versions.iter().map(|v| stanza("b", v, &[])));
        let resolution = extract(&stanzas, &["a"]).expect("resolves");
        assert_eq!(
            resolution.get("b").map(|b| b.version.as_str()),
            Some(expected),
            "b {constraint}"
        );
    }
}

#[test]
fn the_highest_version_wins_and_an_older_one_when_the_newest_fails() {
    let stanzas = [
        stanza("b", "2.0-1", &[]),
        stanza("b", "3.0-1", &[]),
        stanza("b", "1.0-1", &[]),
        stanza("a", "1", &["Depends: b (<< 3)"]),
    ];
    let resolution = extract(&stanzas, &["b"]).expect("resolves");
    assert_eq!(listed(&resolution), ["b 3.0-1"]);
    let resolution = extract(&stanzas, &["a"]).expect("resolves");
    assert_eq!(listed(&resolution), ["a 1", "b 2.0-1"]);
}

#[test]
fn one_version_per_name_even_when_a_later_dependency_wants_an_older_one() {
    // `b` is first chosen at 2 for `a`, then `c` needs b << 2: the walk restarts with b pinned.
    let stanzas = [
        stanza("top", "1", &["Depends: a, c"]),
        stanza("a", "1", &["Depends: b"]),
        stanza("c", "1", &["Depends: b (<< 2)"]),
        stanza("b", "1", &["Depends: old-dep"]),
        stanza("b", "2", &["Depends: new-dep"]),
        stanza("old-dep", "1", &[]),
        stanza("new-dep", "1", &[]),
    ];
    let resolution = extract(&stanzas, &["top"]).expect("resolves");
    assert_eq!(
        listed(&resolution),
        ["a 1", "b 1", "c 1", "old-dep 1", "top 1"]
    );
}

#[test]
fn contradictory_constraints_name_both_chains() {
    let stanzas = [
        stanza("top", "1", &["Depends: a, c"]),
        stanza("a", "1", &["Depends: b (>= 2)"]),
        stanza("c", "1", &["Depends: b (<< 2)"]),
        stanza("b", "1", &[]),
        stanza("b", "2", &[]),
    ];
    let err = extract(&stanzas, &["top"]).expect_err("no b fits both");
    assert_eq!(
        err.to_string(),
        "top -> a -> b (>= 2): b is also needed as b (<< 2) by top -> c -> b (<< 2), \
         and no version (of 2, 1) satisfies both"
    );
}

#[test]
fn dependency_cycles_terminate() {
    let stanzas = [
        stanza("a", "1", &["Depends: b"]),
        stanza("b", "1", &["Pre-Depends: c"]),
        stanza("c", "1", &["Depends: a | b"]),
    ];
    let resolution = extract(&stanzas, &["a"]).expect("resolves");
    assert_eq!(names(&resolution), ["a", "b", "c"]);
}

#[test]
fn pre_depends_are_followed() {
    let stanzas = [
        stanza("a", "1", &["Pre-Depends: b (>= 1)"]),
        stanza("b", "1", &[]),
    ];
    let resolution = extract(&stanzas, &["a"]).expect("resolves");
    assert_eq!(names(&resolution), ["a", "b"]);
}

#[test]
fn an_unsatisfiable_dependency_names_the_chain_and_the_reason() {
    let stanzas = [
        stanza("apt", "3.0.3", &["Depends: libapt-pkg7.0 (>= 3.0)"]),
        stanza("libapt-pkg7.0", "3.0.3", &["Depends: libzstd1 (>= 1.5.5)"]),
        stanza("libzstd1", "1.5.4-1", &[]),
    ];
    let err = extract(&stanzas, &["apt"]).expect_err("libzstd1 is too old");
    assert_eq!(
        err.to_string(),
        "apt -> libapt-pkg7.0 (>= 3.0) -> libzstd1 (>= 1.5.5): only 1.5.4-1 is available"
    );
    match err {
        ResolveError::Unsatisfiable { chain, .. } => assert_eq!(chain.len(), 3),
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn an_unsatisfiable_alternative_explains_each_possibility() {
    let stanzas = [
        stanza("a", "1", &["Depends: nothing | b (>= 2)"]),
        stanza("b", "1", &[]),
        stanza("b", "1.5", &[]),
    ];
    let err = extract(&stanzas, &["a"]).expect_err("no alternative fits");
    assert_eq!(
        err.to_string(),
        "a -> nothing | b (>= 2): no alternative can be installed (nothing: no package of that \
         name, and none provides it, for amd64 or all; b: available versions are 1.5, 1)"
    );
}

#[test]
fn architecture_qualifiers_follow_dpkg() {
    let stanzas = [
        stanza("perl", "5.40", &["Multi-Arch: allowed"]),
        stanza("tool", "1", &["Multi-Arch: foreign"]),
        stanza("lib", "1", &["Multi-Arch: same"]),
        stanza("any-ok", "1", &["Depends: perl:any, lib:native, lib:amd64"]),
        stanza("any-bad", "1", &["Depends: tool:any"]),
        stanza("foreign-arch", "1", &["Depends: lib:arm64"]),
    ];
    let resolution = extract(&stanzas, &["any-ok"]).expect("resolves");
    assert_eq!(names(&resolution), ["any-ok", "lib", "perl"]);

    let err = extract(&stanzas, &["any-bad"]).expect_err(":any needs Multi-Arch: allowed");
    assert_eq!(
        err.to_string(),
        "any-bad -> tool:any: tool is not Multi-Arch: allowed, so tool:any cannot match it"
    );
    let err = extract(&stanzas, &["foreign-arch"]).expect_err("no arm64 packages");
    assert_eq!(
        err.to_string(),
        "foreign-arch -> lib:arm64: only amd64 and all packages are considered, not arm64"
    );
}

#[test]
fn packages_of_other_architectures_are_ignored() {
    let stanzas = [
        stanza("a", "1", &["Depends: b, c"]),
        stanza("b", "9", &["Architecture: i386"]),
        stanza("b", "1", &["Architecture: all"]),
        stanza("c", "1", &[]),
    ];
    let resolution = extract(&stanzas, &["a"]).expect("resolves");
    assert_eq!(listed(&resolution), ["a 1", "b 1", "c 1"]);
    let err =
        extract(&[stanza("a", "1", &["Architecture: arm64"])], &["a"]).expect_err("only arm64");
    assert!(matches!(err, ResolveError::IncludeNotFound { .. }), "{err}");
}

#[test]
fn exclude_drops_seeds_but_keeps_what_is_depended_on() {
    let stanzas = [
        stanza("a", "1", &["Priority: required", "Depends: b"]),
        stanza("b", "1", &["Priority: required"]),
        stanza("c", "1", &["Priority: required"]),
        stanza("apt", "1", &[]),
    ];
    let resolution = resolve(
        &index(&stanzas),
        &select(Variant::Minbase, &[], &["b", "c"]),
    )
    .expect("resolves");
    assert_eq!(names(&resolution), ["a", "apt", "b"]);
}

#[test]
fn each_variant_starts_from_its_own_seeds() {
    let stanzas = [
        stanza("req", "1", &["Priority: required"]),
        stanza("ess", "1", &["Priority: optional", "Essential: yes"]),
        stanza("imp", "1", &["Priority: important"]),
        stanza("std", "1", &["Priority: standard"]),
        stanza("apt", "1", &["Priority: important"]),
        stanza(
            "build-essential",
            "1",
            &["Priority: optional", "Depends: make"],
        ),
        stanza("make", "1", &["Priority: optional"]),
        stanza("extra", "1", &["Priority: optional"]),
    ];
    let cases: [(Variant, &[&str]); 5] = [
        (Variant::Minbase, &["apt", "req"]),
        (Variant::Buildd, &["apt", "build-essential", "make", "req"]),
        (Variant::Important, &["apt", "imp", "req"]),
        (Variant::Essential, &["ess"]),
        (Variant::Extract, &["extra"]),
    ];
    for (variant, expected) in cases {
        let resolution =
            resolve(&index(&stanzas), &select(variant, &["extra"], &[])).expect("resolves");
        let mut expected = expected.to_vec();
        if !expected.contains(&"extra") {
            expected.push("extra");
            expected.sort();
        }
        assert_eq!(names(&resolution), expected, "{}", variant.name());
    }
}

#[test]
fn a_missing_include_is_named() {
    let err = extract(&[stanza("a", "1", &[])], &["a", "nosuch"]).expect_err("missing");
    assert_eq!(
        err.to_string(),
        "--include nosuch: no package of that name, and none provides it, for amd64 or all"
    );
}

#[test]
fn a_virtual_include_is_satisfied_by_a_provider() {
    let stanzas = [stanza("exim4", "1", &["Provides: mail-transport-agent"])];
    let resolution = extract(&stanzas, &["mail-transport-agent"]).expect("resolves");
    assert_eq!(names(&resolution), ["exim4"]);
}

#[test]
fn a_variant_seed_missing_from_the_index_is_named() {
    let err = resolve(
        &index(&[stanza("req", "1", &["Priority: required"])]),
        &select(Variant::Buildd, &[], &[]),
    )
    .expect_err("no apt");
    assert_eq!(
        err.to_string(),
        "variant buildd needs apt, which is not in the index for amd64 or all"
    );
}

#[test]
fn usrmerge_is_never_pulled_in_by_a_dependency() {
    let stanzas = [
        stanza(
            "init-system-helpers",
            "1",
            &["Depends: usrmerge | usr-is-merged"],
        ),
        stanza(
            "usrmerge",
            "37",
            &["Provides: usr-is-merged", "Depends: perl:any"],
        ),
        stanza("usr-is-merged", "37", &[]),
        stanza("needs-only-usrmerge", "1", &["Depends: usrmerge"]),
    ];
    let resolution =
        extract(&stanzas, &["init-system-helpers", "needs-only-usrmerge"]).expect("resolves");
    assert_eq!(
        names(&resolution),
        [
            "init-system-helpers",
            "needs-only-usrmerge",
            "usr-is-merged"
        ]
    );
    // Asked for by name, it is installed (and then its dependencies must hold).
    let err = extract(&stanzas, &["usrmerge"]).expect_err("no perl here");
    assert!(
        err.to_string().starts_with("usrmerge -> perl:any: "),
        "{err}"
    );
}

#[test]
fn the_result_does_not_depend_on_stanza_order() {
    let mut stanzas = vec![
        stanza("top", "1", &["Depends: x | y, v, w"]),
        stanza("v", "1", &["Depends: virt"]),
        stanza("w", "1", &["Depends: y | x"]),
        stanza("x", "1", &[]),
        stanza("y", "1", &["Provides: virt"]),
        stanza("p", "1", &["Provides: virt"]),
        stanza("v", "2", &["Depends: virt"]),
    ];
    let first = extract(&stanzas, &["top"]).expect("resolves");
    assert_eq!(listed(&first), ["p 1", "top 1", "v 2", "w 1", "x 1"]);
    for _ in 0..stanzas.len() {
        stanzas.rotate_left(1);
        let again = extract(&stanzas, &["top"]).expect("resolves");
        assert_eq!(listed(&again), listed(&first));
        stanzas.reverse();
        let again = extract(&stanzas, &["top"]).expect("resolves");
        assert_eq!(listed(&again), listed(&first));
    }
}

#[test]
fn a_malformed_dependency_names_the_package() {
    let err = extract(&[stanza("a", "1", &["Depends: b (>= 1"])], &["a"]).expect_err("bad");
    assert_eq!(err.to_string(), "a 1: cannot parse its Depends field");
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn print_packages_lists_name_and_version_sorted() {
    let stanzas = [
        stanza("zlib1g", "1:1.3", &[]),
        stanza("apt", "3.0", &["Depends: zlib1g"]),
    ];
    let resolution = extract(&stanzas, &["apt"]).expect("resolves");
    assert_eq!(print_packages(&resolution), "apt 3.0\nzlib1g 1:1.3\n");
    assert_eq!(resolution.get("zlib1g").map(|p| p.size), Some(100));
    assert!(resolution.get("nosuch").is_none());
    assert_eq!(resolution.download_size(), 200);
}

#[test]
fn a_conflict_makes_the_resolver_take_the_next_alternative() {
    let stanzas = [
        stanza("a", "1", &["Depends: b | c"]),
        stanza("b", "1", &["Conflicts: x"]),
        stanza("c", "1", &[]),
        stanza("x", "1", &[]),
    ];
    let resolution = extract(&stanzas, &["x", "a"]).expect("resolves");
    assert_eq!(names(&resolution), ["a", "c", "x"]);
}

#[test]
fn a_package_broken_by_the_selection_is_passed_over_for_another_version() {
    let stanzas = [
        stanza("a", "1", &["Depends: b"]),
        stanza("b", "2", &[]),
        stanza("b", "1", &[]),
        stanza("x", "1", &["Breaks: b (>= 2)"]),
    ];
    let resolution = extract(&stanzas, &["x", "a"]).expect("resolves");
    assert_eq!(listed(&resolution), ["a 1", "b 1", "x 1"]);
}

#[test]
fn two_conflicting_packages_fail_naming_both_and_the_relation() {
    let stanzas = [
        stanza("a", "1", &["Conflicts: b (<< 3)"]),
        stanza("b", "2", &[]),
    ];
    let err = extract(&stanzas, &["a", "b"]).expect_err("a conflict");
    match &err {
        ResolveError::Conflict(conflict) => {
            let Conflict {
                package,
                field,
                relation,
                other,
                other_version,
                ..
            } = conflict.as_ref();
            assert_eq!(
                (package.as_str(), *field, relation.as_str()),
                ("a", "Conflicts", "b (<< 3)")
            );
            assert_eq!((other.as_str(), other_version.as_str()), ("b", "2"));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("a 1 declares Conflicts: b (<< 3), but b 2"),
        "{text}"
    );
}

#[test]
fn breaks_count_like_conflicts_in_a_fresh_root() {
    let stanzas = [
        stanza("a", "1", &["Depends: b"]),
        stanza("b", "1", &[]),
        stanza("x", "1", &["Breaks: a"]),
    ];
    // `a` itself is a seed, so nothing else can be chosen: the clash is reported.
    let err = extract(&stanzas, &["x", "a"]).expect_err("a clash");
    assert!(
        matches!(&err, ResolveError::Conflict(c)
            if c.field == "Breaks" && c.package == "x" && c.other == "a"),
        "{err:?}"
    );
}

#[test]
fn a_conflict_on_a_virtual_name_hits_other_providers_not_the_package_itself() {
    let stanzas = [
        stanza(
            "a",
            "1",
            &["Provides: mta", "Conflicts: mta", "Replaces: mta"],
        ),
        stanza("b", "1", &["Provides: mta"]),
    ];
    let alone = extract(&stanzas, &["a"]).expect("a alone resolves");
    assert_eq!(names(&alone), ["a"]);
    let err = extract(&stanzas, &["a", "b"]).expect_err("a and b clash");
    assert!(
        matches!(&err, ResolveError::Conflict(c) if c.package == "a" && c.other == "b"),
        "{err:?}"
    );
}

#[test]
fn a_dependency_only_a_conflicting_package_meets_is_explained() {
    let stanzas = [
        stanza("a", "1", &["Depends: b"]),
        stanza("b", "1", &["Conflicts: x"]),
        stanza("x", "1", &[]),
    ];
    let err = extract(&stanzas, &["x", "a"]).expect_err("unsatisfiable");
    let text = err.to_string();
    assert!(
        text.contains("b 1 declares Conflicts: x, so it cannot be installed with x 1"),
        "{text}"
    );
}

#[test]
fn a_folded_depends_is_followed_in_full() {
    let stanzas = [
        stanza("a", "1", &["Depends: b,\n c (>= 1),\n d"]),
        stanza("b", "1", &[]),
        stanza("c", "1", &[]),
        stanza("d", "1", &[]),
    ];
    let resolution = extract(&stanzas, &["a"]).expect("resolves");
    assert_eq!(names(&resolution), ["a", "b", "c", "d"]);
}

#[test]
fn debootstraps_first_stage_is_required_with_its_dependencies() {
    let repo = index(&[
        stanza(
            "apt",
            "1",
            &["Priority: required", "Depends: libapt | other"],
        ),
        stanza("libapt", "1", &["Priority: optional", "Pre-Depends: libc"]),
        stanza("libc", "1", &["Priority: optional"]),
        stanza("other", "1", &["Priority: optional"]),
        stanza("mawk", "1", &["Priority: required", "Depends: awk-lib"]),
        stanza(
            "gawk-lib",
            "1",
            &["Priority: optional", "Provides: awk-lib"],
        ),
        stanza("make", "1", &["Priority: optional", "Depends: libc"]),
    ]);
    let owned: Vec<Package> = (0..repo.len())
        .map(|i| repo.package(i).expect("a valid stanza"))
        .collect();
    let packages: Vec<&Package> = owned.iter().collect();
    let first = extracted_first(&packages);
    let chosen: Vec<&str> = packages
        .iter()
        .zip(&first)
        .filter(|(_, f)| **f)
        .map(|(p, _)| p.name.as_str())
        .collect();
    // `other` is only a second alternative, `make` is not required and nothing required
    // depends on it.
    assert_eq!(chosen, ["apt", "libapt", "libc", "mawk", "gawk-lib"]);
}

/// `--include pkg:B` resolves in B's packages and merges as dpkg's multiarch allows.
#[test]
fn a_foreign_include_resolves_among_that_architectures_packages() {
    let stanzas = [
        stanza("libc6", "2", &["Multi-Arch: same", "Priority: required"]),
        stanza("sh", "1", &["Multi-Arch: foreign", "Priority: required"]),
        stanza("libc6", "2", &["Architecture: i386", "Multi-Arch: same"]),
        stanza("sh", "1", &["Architecture: i386", "Multi-Arch: foreign"]),
        stanza(
            "tool",
            "3",
            &["Architecture: i386", "Depends: libc6, sh, data"],
        ),
        stanza("data", "1", &["Architecture: all"]),
        stanza("libz", "1", &["Architecture: i386", "Multi-Arch: same"]),
        stanza("odd", "1", &[]),
        stanza("odd", "1", &["Architecture: i386", "Depends: libc6"]),
    ];
    let mut selection = select(Variant::Minbase, &["tool:i386", "libz:i386"], &[]);
    selection.include.push("apt".into());
    let stanzas = [&stanzas[..], &[stanza("apt", "1", &[])]].concat();
    let resolution = resolve(&index(&stanzas), &selection).expect("resolves");
    let chosen: Vec<String> = resolution
        .packages
        .iter()
        .map(|p| format!("{}:{}", p.name, p.architecture))
        .collect();
    // libc6 twice (Multi-Arch: same); sh only natively (Multi-Arch: foreign satisfies i386's
    // dependency); data once (all).
    assert_eq!(
        chosen,
        [
            "apt:amd64",
            "data:all",
            "libc6:amd64",
            "libc6:i386",
            "libz:i386",
            "sh:amd64",
            "tool:i386"
        ]
    );

    // A foreign package that is not Multi-Arch: same cannot sit beside its native self, and a
    // named foreign package is never silently replaced by the native one.
    for include in ["odd:i386", "sh:i386"] {
        let mut selection = select(Variant::Minbase, &[include, "odd"], &[]);
        selection.include.push("apt".into());
        let err = resolve(&index(&stanzas), &selection).expect_err(include);
        assert!(
            matches!(err, ResolveError::ForeignClash(_)),
            "{include}: {err}"
        );
    }
    // Without the qualifier, or with the native one, a name is native.
    let resolution = resolve(
        &index(&stanzas),
        &select(Variant::Extract, &["odd:amd64"], &[]),
    )
    .expect("native qualifier");
    assert_eq!(listed(&resolution), ["odd 1"]);
    assert_eq!(resolution.packages[0].architecture, "amd64");
}

/// Minbase with apt as the only seed and `include` on top, over `stanzas` plus apt.
fn with_foreign(stanzas: &[String], include: &[&str]) -> Result<Resolution, ResolveError> {
    let stanzas = [stanzas, &[stanza("apt", "1", &["Priority: required"])]].concat();
    resolve(&index(&stanzas), &select(Variant::Minbase, include, &[]))
}

fn qualified(resolution: &Resolution) -> Vec<String> {
    resolution
        .packages
        .iter()
        .map(|p| format!("{}:{} {}", p.name, p.architecture, p.version))
        .collect()
}

/// dpkg reads Conflicts and Breaks without a qualifier as covering every architecture: a
/// package chosen for arm64 that conflicts with a native one (or is broken by one) is refused,
/// naming both packages with their architectures, the relation and where each came from.
#[test]
fn conflicts_and_breaks_between_native_and_foreign_packages_are_refused() {
    let bar = stanza("bar", "1", &["Priority: required"]);
    let cases = [
        (
            vec![
                bar.clone(),
                stanza("foo", "2", &["Architecture: arm64", "Conflicts: bar"]),
            ],
            "foo:arm64 2 declares Conflicts: bar, but bar:amd64 1 is selected too \
             (foo:arm64 by --include foo:arm64; bar:amd64 by the amd64 package set)",
        ),
        (
            vec![
                stanza("bar", "1", &["Priority: required", "Breaks: foo (<< 3)"]),
                stanza("foo", "2", &["Architecture: arm64"]),
            ],
            "bar:amd64 1 declares Breaks: foo (<< 3), but foo:arm64 2 is selected too \
             (bar:amd64 by the amd64 package set; foo:arm64 by --include foo:arm64)",
        ),
        (
            // Through a name the native package provides.
            vec![
                stanza("bar", "1", &["Priority: required", "Provides: mta"]),
                stanza("foo", "2", &["Architecture: arm64", "Conflicts: mta"]),
            ],
            "foo:arm64 2 declares Conflicts: mta, but bar:amd64 1 is selected too",
        ),
        (
            // A dependency of the foreign package, not the package named.
            vec![
                bar.clone(),
                stanza("foo", "2", &["Architecture: arm64", "Depends: libfoo"]),
                stanza(
                    "libfoo",
                    "2",
                    &["Architecture: arm64", "Breaks: bar:native"],
                ),
            ],
            "libfoo:arm64 2 declares Breaks: bar:native, but bar:amd64 1 is selected too",
        ),
    ];
    for (stanzas, expected) in cases {
        let err = with_foreign(&stanzas, &["foo:arm64"]).expect_err(expected);
        assert!(matches!(err, ResolveError::Conflict(_)), "{err}");
        assert!(err.to_string().starts_with(expected), "{err}");
    }
}

/// What does not clash across architectures: a relation qualified with the other
/// architecture, a version the relation does not cover, and a package's own instance of
/// another architecture (Multi-Arch: same), even through a name it provides.
#[test]
fn relations_that_do_not_cover_the_other_architecture_pass() {
    let stanzas = [
        stanza("bar", "1", &["Priority: required"]),
        stanza(
            "foo",
            "2",
            &["Architecture: arm64", "Conflicts: bar:arm64, bar (>> 1)"],
        ),
        stanza(
            "libx",
            "1",
            &[
                "Priority: required",
                "Multi-Arch: same",
                "Provides: libx-abi",
                "Conflicts: libx-abi, libx",
            ],
        ),
        stanza(
            "libx",
            "1",
            &[
                "Architecture: arm64",
                "Multi-Arch: same",
                "Provides: libx-abi",
                "Conflicts: libx-abi, libx",
            ],
        ),
    ];
    let resolution = with_foreign(&stanzas, &["foo:arm64", "libx:arm64"]).expect("resolves");
    assert_eq!(
        qualified(&resolution),
        [
            "apt:amd64 1",
            "bar:amd64 1",
            "foo:arm64 2",
            "libx:amd64 1",
            "libx:arm64 1"
        ]
    );
    // The same relation qualified with the native architecture does hit.
    let mut stanzas = stanzas.to_vec();
    stanzas[1] = stanza("foo", "2", &["Architecture: arm64", "Conflicts: bar:amd64"]);
    let err = with_foreign(&stanzas, &["foo:arm64"]).expect_err("bar:amd64 is native");
    assert!(err.to_string().contains("Conflicts: bar:amd64"), "{err}");
}

/// A Multi-Arch: same package is one version on every architecture: the foreign solve takes
/// the native version even when a newer one exists for it, and when the foreign architecture
/// lacks that version the error names both.
#[test]
fn a_multi_arch_same_package_takes_the_native_version_on_every_architecture() {
    let native_libc = stanza("libc", "2", &["Priority: required", "Multi-Arch: same"]);
    let tool = stanza("tool", "1", &["Architecture: arm64", "Depends: libc"]);
    let arm_libc = |version| {
        stanza(
            "libc",
            version,
            &["Architecture: arm64", "Multi-Arch: same"],
        )
    };
    let stanzas = [
        native_libc.clone(),
        tool.clone(),
        arm_libc("3"),
        arm_libc("2"),
    ];
    let resolution = with_foreign(&stanzas, &["tool:arm64"]).expect("resolves");
    assert_eq!(
        qualified(&resolution),
        [
            "apt:amd64 1",
            "libc:amd64 2",
            "libc:arm64 2",
            "tool:arm64 1"
        ]
    );

    let err = with_foreign(&[native_libc, tool, arm_libc("3")], &["tool:arm64"])
        .expect_err("only libc 3 for arm64");
    let text = err.to_string();
    assert!(
        text.starts_with("tool -> libc: ") && text.contains("libc:amd64 2 (Multi-Arch: same"),
        "{text}"
    );
}

/// Only Multi-Arch: same packages are installed for two architectures: one that is not, named
/// for the foreign architecture while the native set has it, is refused naming both instances;
/// a Multi-Arch: foreign or allowed one too (dpkg would replace the native one, which a
/// bootstrap never asks for).
#[test]
fn a_package_that_is_not_multi_arch_same_is_never_installed_twice() {
    for multi_arch in ["none", "foreign", "allowed"] {
        let field = format!("Multi-Arch: {multi_arch}");
        let stanzas = [
            stanza("bar", "1", &["Priority: required", &field]),
            stanza("bar", "1", &["Architecture: arm64", &field]),
        ];
        let err = with_foreign(&stanzas, &["bar:arm64"]).expect_err(multi_arch);
        assert!(
            err.to_string().starts_with(
                "bar:arm64 1 cannot be installed beside bar:amd64 1: dpkg installs one \
                 package for two architectures only when both are Multi-Arch: same"
            ),
            "{multi_arch}: {err}"
        );
    }
}
