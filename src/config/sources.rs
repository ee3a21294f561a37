//! The config's files: the main one, then its drop-ins (`slices.d/*.toml`
//! beside it, in name order), merged into one document.
//!
//! Each file sits at its own offset of one virtual text, so every span the
//! reader and the validator keep names exactly one file and one place in
//! it, and a problem is reported in the file it came from. Merging: a
//! drop-in's value replaces the value before it, tables merge key by key,
//! and arrays of tables (`[[heal.service]]`) are added to.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::{Located, Problem};

/// Where the drop-ins of a main config file live: `slices.d/` beside it.
pub fn dropin_dir(main: &Path) -> PathBuf {
    crate::files::parent_dir(main).join("slices.d")
}

/// The files of one config, each with its place in the virtual text.
#[derive(Debug)]
pub struct Sources {
    files: Vec<File>,
}

#[derive(Debug)]
struct File {
    path: PathBuf,
    text: String,
    base: usize,
}

impl Sources {
    /// `files` in the order they merge: the main file first.
    pub fn new(files: Vec<(PathBuf, String)>) -> Sources {
        let mut base = 0usize;
        let files = files
            .into_iter()
            .map(|(path, text)| {
                let file = File { path, text, base };
                // One past the end, so a span at a file's very end is still
                // that file's.
                base = base.saturating_add(file.text.len()).saturating_add(1);
                file
            })
            .collect();
        Sources { files }
    }

    /// Parses every file and merges them in order; a file that is not
    /// valid TOML is a problem in that file, and the others still merge.
    pub fn document(&self, problems: &mut Vec<Problem>) -> DeTable<'_> {
        let mut merged = DeTable::new();
        for file in &self.files {
            match DeTable::parse(&file.text) {
                // The main file sits at 0: nothing to shift, and copying
                // the document was an eighth of a 1,000-slice `metrics`.
                Ok(document) if file.base == 0 => merge(&mut merged, document.into_inner()),
                Ok(document) => merge(&mut merged, shift_table(document.into_inner(), file.base)),
                Err(err) => {
                    let span = err
                        .span()
                        .unwrap_or_else(|| super::nesting::deepest_key(&file.text));
                    problems.push(Problem {
                        span: shifted(span, file.base),
                        key: String::new(),
                        message: format!("not valid TOML: {}", err.message()),
                    });
                }
            }
        }
        merged
    }

    /// A problem placed in its file: line and column (in characters, as
    /// editors count) of its start.
    pub fn locate(&self, problem: Problem) -> Located {
        let file = self
            .files
            .iter()
            .rev()
            .find(|file| file.base <= problem.span.start)
            .or(self.files.first());
        let (path, text, base) = file.map_or((Path::new(""), "", 0), |file| {
            (file.path.as_path(), file.text.as_str(), file.base)
        });
        let mut start = problem.span.start.saturating_sub(base).min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let before = &text[..start];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Located {
            file: path.to_path_buf(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            key: problem.key,
            message: problem.message,
        }
    }
}

fn shifted(span: Range<usize>, by: usize) -> Range<usize> {
    span.start.saturating_add(by)..span.end.saturating_add(by)
}

fn shift_value(value: Spanned<DeValue<'_>>, by: usize) -> Spanned<DeValue<'_>> {
    let span = shifted(value.span(), by);
    let inner = match value.into_inner() {
        DeValue::Table(table) => DeValue::Table(shift_table(table, by)),
        DeValue::Array(array) => DeValue::Array(
            array
                .into_iter()
                .map(|item| shift_value(item, by))
                .collect(),
        ),
        other => other,
    };
    Spanned::new(span, inner)
}

fn shift_table(table: DeTable<'_>, by: usize) -> DeTable<'_> {
    let mut shifted_table = DeTable::new();
    for (key, value) in table {
        let key_span = shifted(key.span(), by);
        shifted_table.insert(
            Spanned::new(key_span, key.into_inner()),
            shift_value(value, by),
        );
    }
    shifted_table
}

fn is_array_of_tables(array: &DeArray<'_>) -> bool {
    !array.is_empty()
        && array
            .iter()
            .all(|item| matches!(item.get_ref(), DeValue::Table(_)))
}

/// Merges `from` into `into`: tables key by key, arrays of tables added
/// to, anything else replaced (with the later file's place).
fn merge<'i>(into: &mut DeTable<'i>, from: DeTable<'i>) {
    for (key, value) in from {
        let Some(existing) = into.get_mut(&key) else {
            into.insert(key, value);
            continue;
        };
        match (existing.get_mut(), value.get_ref()) {
            (DeValue::Table(old), DeValue::Table(_)) => {
                if let DeValue::Table(new) = value.into_inner() {
                    merge(old, new);
                }
            }
            (DeValue::Array(old), DeValue::Array(new))
                if is_array_of_tables(old) && is_array_of_tables(new) =>
            {
                if let DeValue::Array(new) = value.into_inner() {
                    for item in new {
                        old.push(item);
                    }
                }
            }
            _ => {
                // The later key replaces the earlier, with its own place.
                into.remove(&key);
                into.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a, 'i>(table: &'a DeTable<'i>, name: &str) -> &'a Spanned<DeValue<'i>> {
        table
            .iter()
            .find(|(key, _)| key.get_ref().as_ref() == name)
            .map(|(_, value)| value)
            .unwrap_or_else(|| panic!("no key {name}"))
    }

    fn table<'a, 'i>(value: &'a Spanned<DeValue<'i>>) -> &'a DeTable<'i> {
        match value.get_ref() {
            DeValue::Table(table) => table,
            other => panic!("not a table: {other:?}"),
        }
    }

    fn sources(files: &[(&str, &str)]) -> Sources {
        Sources::new(
            files
                .iter()
                .map(|(path, text)| (PathBuf::from(path), text.to_string()))
                .collect(),
        )
    }

    #[test]
    fn drop_ins_replace_values_merge_tables_and_add_services() {
        let sources = sources(&[
            (
                "main.toml",
                "[slice.app]\nmemory_max = \"8G\"\n[[heal.service]]\nname = \"web\"\n",
            ),
            (
                "slices.d/10-big.toml",
                "[slice.app]\nmemory_max = \"12G\"\n[slice.app.web]\n[[heal.service]]\nname = \"db\"\n",
            ),
        ]);
        let mut problems = Vec::new();
        let document = sources.document(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let app = table(get(table(get(&document, "slice")), "app"));
        assert_eq!(get(app, "memory_max").get_ref().as_str(), Some("12G"));
        get(app, "web");
        let located = sources.locate(Problem {
            span: get(app, "memory_max").span(),
            key: "slice.app.memory_max".into(),
            message: String::new(),
        });
        assert_eq!(
            (located.file, located.line, located.column),
            (PathBuf::from("slices.d/10-big.toml"), 2, 14),
            "the replacing value keeps its own file and place"
        );
        let services = match get(table(get(&document, "heal")), "service").get_ref() {
            DeValue::Array(services) => services.len(),
            other => panic!("{other:?}"),
        };
        assert_eq!(services, 2, "[[heal.service]] entries add up");
    }

    #[test]
    fn a_syntax_error_is_placed_in_its_own_file() {
        let sources = sources(&[
            ("main.toml", "[slice.app]\n"),
            ("slices.d/20-bad.toml", "\n\n[slice.ops\n"),
        ]);
        let mut problems = Vec::new();
        sources.document(&mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let located = sources.locate(problems.remove(0));
        assert_eq!(located.file, PathBuf::from("slices.d/20-bad.toml"));
        assert_eq!(located.line, 3);
    }
}
