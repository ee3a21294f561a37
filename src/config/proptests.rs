//! The loader against hostile input: random bytes, the shipped example with
//! values replaced by extreme or garbage ones, with bytes flipped, and deep
//! nesting. No input may panic, and every refusal carries a message and a
//! position inside the file. Bounded to a few seconds in a debug build.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::{Config, ConfigError, NodeFacts};

const NODE: NodeFacts = NodeFacts {
    memory: 16 << 30,
    page_size: 4096,
};

const SHIPPED: &str = include_str!("../../slices.toml");

/// Values that sit on or past an edge of some key's range, or of TOML.
const EXTREMES: &[&str] = &[
    "0",
    "-1",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "9223372036854775807",
    "0x7fffffffffffffff",
    "0o777",
    "1e308",
    "nan",
    "-inf",
    "true",
    "1979-05-27T07:32:00Z",
    "[]",
    "{}",
    "[[]]",
    "[\"\"]",
    "[\"\\u0000\"]",
    "{ a = 1 }",
    "\"\"",
    "\" \"",
    "\"0\"",
    "\"max\"",
    "\"auto\"",
    "\"0%\"",
    "\"100%\"",
    "\"100.01%\"",
    "\"16383T\"",
    "\"99999999999999999999T\"",
    "\"18446744073709551615\"",
    "\"0s\"",
    "\"0ms\"",
    "\"18446744073709551615h\"",
    "\"18446744073709551615ms\"",
    "\"7d\"",
    "\"http://\"",
    "\"http://[::1\"",
    "\"http://exa mple/\"",
    "\"https://shop.example/\"",
    "\"a:99999\"",
    "\"[::1]:0\"",
    "\"::1:80\"",
    "\"\\u0000\"",
    "\"a\\nb\"",
    "\"/\"",
    "\"/tmp\"",
    "\"/tmp/\"",
    "\"..\"",
    "\"some 0s 0s\"",
    "\"full 10s 10s\"",
    "\"some 18446744073709551615h 1s\"",
    "\"23:59-00:00\"",
    "\"24:00-07:00\"",
    "\"Mars/Olympus\"",
    "\"../../../etc/passwd\"",
    "\"UTC\"",
    "\"system\"",
    "\"app\"",
    "\"app/tasks\"",
    "\"/app/tasks/\"",
    "\"ops\"",
    "\"systemd\"",
];

/// Every refusal is a non-empty message at a line and column of `bytes`.
fn holds(bytes: &[u8]) -> Result<(), TestCaseError> {
    let problems = match Config::parse_bytes(Path::new("slices.toml"), bytes, NODE) {
        Ok(_) => return Ok(()),
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(other) => return Err(TestCaseError::fail(format!("unexpected {other}"))),
    };
    prop_assert!(!problems.is_empty());
    // Positions past the first invalid byte are never given, so the lossy
    // text has the same lines and columns up to every position reported.
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.split('\n').collect();
    for problem in &problems {
        prop_assert!(
            (1..=lines.len()).contains(&problem.line),
            "{problem:?} is outside the {} lines",
            lines.len()
        );
        let width = lines[problem.line - 1].chars().count();
        prop_assert!(
            (1..=width + 1).contains(&problem.column),
            "{problem:?} is outside its line of {width} characters"
        );
        prop_assert!(!problem.message.trim().is_empty(), "{problem:?}");
    }
    Ok(())
}

/// The shipped example with the values of some `key = value` lines
/// replaced; `picks` choose the lines (modulo their number).
fn replaced(picks: &[(usize, String)]) -> String {
    let mut lines: Vec<String> = SHIPPED.lines().map(str::to_string).collect();
    let settings: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| !line.starts_with('#') && line.contains(" = "))
        .map(|(index, _)| index)
        .collect();
    for (pick, value) in picks {
        let index = settings[pick % settings.len()];
        if let Some((key, _)) = lines[index].split_once(" = ") {
            lines[index] = format!("{key} = {value}");
        }
    }
    lines.join("\n")
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(EXTREMES).prop_map(str::to_string),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => "[ -~]{0,24}".prop_map(|text| format!("{text:?}")),
        1 => (1usize..200).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
        1 => (1usize..6000).prop_map(|length| format!("\"{}\"", "x".repeat(length))),
    ]
}

/// Deep nesting of every kind TOML has: arrays, inline tables, dotted
/// keys, table headers, and a slice tree as deep as headers allow.
fn nested(kind: u8, depth: usize) -> String {
    let dotted = |depth: usize| vec!["a"; depth.max(1)].join(".");
    match kind % 7 {
        0 => format!("[slice.a]\nx = {}\n", "[".repeat(depth)),
        1 => format!(
            "[slice.a]\nx = {}1{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
        2 => format!("[slice.a]\nx = {}\n", "{ b = ".repeat(depth)),
        3 => format!("[slice.a]\nx = {}\n", "[{ a = ".repeat(depth)),
        4 => format!("[slice.{}]\n", dotted(depth)),
        5 => format!("[slice.a]\n{} = 1\n", dotted(depth)),
        _ => (1..=depth.min(90))
            .map(|level| format!("[slice.{}]\nmemory_low = \"max\"\n", dotted(level)))
            .collect(),
    }
}

proptest! {
    // The most likely to reach the arithmetic: it found the landed
    // reservation sum's overflow within 1,500 cases.
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn extreme_values_never_panic(
        picks in proptest::collection::vec((any::<usize>(), value()), 1..5),
    ) {
        holds(replaced(&picks).as_bytes())?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        holds(&bytes)?;
    }

    #[test]
    fn flipped_bytes_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = SHIPPED.as_bytes().to_vec();
        for (at, byte) in flips {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        holds(&bytes)?;
    }

    #[test]
    fn deep_nesting_never_panics(kind in any::<u8>(), depth in 0usize..400) {
        holds(nested(kind, depth).as_bytes())?;
    }
}
