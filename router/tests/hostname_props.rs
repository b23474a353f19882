//! Property tests: hostname normalisation never panics, and normalising a
//! normalised name changes nothing.

use proptest::prelude::*;
use router::normalize;

fn check(input: &str) {
    if let Ok(once) = normalize(input) {
        let twice = normalize(&once).expect("a normalised name normalises again");
        assert_eq!(once, twice, "normalising {input:?} twice changed it");
        assert!(once.len() <= 253);
        assert!(
            once.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_strings_never_panic_and_are_idempotent(input in any::<String>()) {
        check(&input);
    }

    #[test]
    fn host_like_strings_are_idempotent(
        input in r"[a-zA-Z0-9\-\.:_\[\]%@ ]{0,80}|([a-zA-Zü0-9\-]{1,70}\.){1,5}[a-zA-Zé]{0,10}\.?(:[0-9]{0,6})?",
    ) {
        check(&input);
    }

    #[test]
    fn unicode_labels_are_idempotent(
        labels in proptest::collection::vec("[\\p{L}\\p{N}\\-]{1,20}", 1..5),
    ) {
        check(&labels.join("."));
    }
}
