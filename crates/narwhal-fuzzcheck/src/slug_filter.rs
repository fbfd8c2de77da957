//! `.slugexclude` rules matched against paths.

use narwhal_slug::filter::{Action, Rules};

/// The input is the rules, then (after a NUL, which no rule may hold)
/// NUL-separated paths. Matching never panics; `is_excluded` follows the
/// first matching rule; a rule printed and parsed again matches the same paths.
pub fn check(data: &[u8]) {
    let (text, paths) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], data.get(at + 1..).unwrap_or_default()),
        None => (data, &[][..]),
    };
    let Ok(rules) = Rules::parse(text) else { return };
    let paths: Vec<&[u8]> = if paths.is_empty() { Vec::new() } else { paths.split(|&b| b == 0).collect() };
    for &path in &paths {
        for is_dir in [false, true] {
            let first = rules.first_match(path, is_dir);
            assert_eq!(
                rules.is_excluded(path, is_dir),
                first.is_some_and(|r| r.action() == Action::Exclude),
                "is_excluded does not follow the first match"
            );
        }
    }
    for rule in rules.rules() {
        if std::str::from_utf8(rule.pattern()).is_err() {
            continue;
        }
        let printed = rule.to_string();
        let again = match Rules::parse(printed.as_bytes()) {
            Ok(again) => again,
            Err(e) => panic!("rule {printed:?} does not parse back: {e}"),
        };
        let [back] = again.rules() else { panic!("rule {printed:?} parses back as {} rules", again.rules().len()) };
        assert_eq!(back.action(), rule.action());
        assert_eq!(back.pattern(), rule.pattern());
        for &path in &paths {
            for is_dir in [false, true] {
                assert_eq!(back.matches(path, is_dir), rule.matches(path, is_dir), "{printed:?} matches differently");
            }
        }
    }
}
