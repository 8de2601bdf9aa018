//! Properties: selector matching is set inclusion, and `check` never panics on any input.

use proptest::prelude::*;
use std::collections::BTreeMap;
use sts_guard::check::check_objects;
use sts_guard::config::Config;
use sts_guard::inventory::load_objects;
use sts_guard::manifest::{Format, parse_bytes};
use sts_guard::model::{Labels, selector_matches};

fn labels() -> impl Strategy<Value = Labels> {
    prop::collection::btree_map("[a-c]{1,2}", "[x-z]{0,2}", 0..6)
}

proptest! {
    #[test]
    fn selector_matches_iff_its_pairs_are_a_subset(selector in labels(), pod in labels()) {
        let as_set = |m: &BTreeMap<String, String>| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<std::collections::BTreeSet<_>>();
        prop_assert_eq!(selector_matches(&selector, &pod), as_set(&selector).is_subset(&as_set(&pod)));
    }

    #[test]
    fn adding_labels_to_pods_never_breaks_a_match(selector in labels(), pod in labels(), extra in labels()) {
        if selector_matches(&selector, &pod) {
            let mut more = extra.clone();
            more.extend(pod.clone());
            prop_assert!(selector_matches(&selector, &more));
        }
    }

    #[test]
    fn check_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        run_check(&bytes);
    }

    #[test]
    fn check_never_panics_on_yaml_shaped_text(text in "(apiVersion: (v1|apps/v1)\n|kind: (Service|StatefulSet|List|Node)\n|metadata: \\{name: [a-z]{1,3}\\}\n|spec:\n|  [a-zA-Z]{1,12}: [-a-zA-Z0-9{}\\[\\],:'\" ]{0,12}\n|items:\n- |---\n|&a |\\*a |<<: )*") {
        run_check(text.as_bytes());
    }
}

fn run_check(bytes: &[u8]) {
    for format in [Format::Yaml, Format::Json, Format::Detect] {
        if let Ok(manifests) = parse_bytes("fuzz", bytes, format)
            && let Ok((objects, inventory)) = load_objects(manifests, "default")
        {
            let report = check_objects(objects, &inventory, &Config::default());
            let _ = sts_guard::report::sarif(&report);
            let _ = sts_guard::report::text(&report);
        }
    }
}
