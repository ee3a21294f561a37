//! What dist/ ships beside the binary stays in step with it: the Grafana
//! dashboard and the Prometheus rules query only metrics the exporter
//! writes, and slices.toml(5) documents every key of the shipped example.
//! (promtool checks and unit-tests the rules in tests/package.sh.)

use std::collections::BTreeSet;

fn shipped(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// The `memslice_*` names in a PromQL expression.
fn metric_names(expr: &str, into: &mut BTreeSet<String>) {
    let mut rest = expr;
    while let Some(at) = rest.find("memslice_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        into.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
}

fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "definition", serde_json::Value::String(text)) => {
                        out.push(text.clone());
                    }
                    _ => exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| exprs(item, out)),
        _ => {}
    }
}

/// Per file, the metrics its queries name.
pub fn queried_metrics() -> Vec<(&'static str, BTreeSet<String>)> {
    let dashboard: serde_json::Value = serde_json::from_str(&shipped("dist/grafana/memslice.json"))
        .expect("the dashboard is JSON");
    let mut found = Vec::new();
    exprs(&dashboard, &mut found);
    assert!(
        found.len() > 10,
        "the dashboard has {} queries",
        found.len()
    );
    let mut in_dashboard = BTreeSet::new();
    found
        .iter()
        .for_each(|expr| metric_names(expr, &mut in_dashboard));
    let mut in_rules = BTreeSet::new();
    shipped("dist/prometheus/memslice.rules.yml")
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("expr:"))
        .for_each(|expr| metric_names(expr, &mut in_rules));
    vec![
        ("dist/grafana/memslice.json", in_dashboard),
        ("dist/prometheus/memslice.rules.yml", in_rules),
    ]
}

/// Fails unless every queried metric is a family of `exposition`.
pub fn assert_queried_metrics_exist(exposition: &str) {
    let families: BTreeSet<&str> = exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    for (file, names) in queried_metrics() {
        assert!(!names.is_empty(), "{file} queries no memslice metric");
        let missing: Vec<&String> = names
            .iter()
            .filter(|name| !families.contains(name.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "{file} queries {missing:?}, which the exporter does not write: {families:?}"
        );
    }
}

#[test]
fn the_man_page_documents_every_key_of_the_shipped_example() {
    let page = shipped("dist/man/slices.toml.5");
    let documented: BTreeSet<&str> = page
        .lines()
        .filter_map(|line| line.strip_prefix(".B "))
        .collect();
    let mut missing = Vec::new();
    for line in crate::fixture::SHIPPED.lines() {
        // Keys, and keys shown commented out (`# notify = [...]`).
        let line = line.trim_start_matches("# ");
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !documented.contains(key) {
            missing.push(key);
        }
    }
    assert!(
        missing.is_empty(),
        "dist/man/slices.toml.5 does not document {missing:?}"
    );
}
