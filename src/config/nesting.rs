//! A position for toml's one span-less error: a dotted key with too many
//! parts (`a.b.c…`, 80 or more) is refused as "recursion limit" without
//! saying where. Walking the document's parse events again finds the key.

use std::ops::Range;

use toml_parser::Source;
use toml_parser::parser::{Event, EventKind, parse_document};

/// The span of the dotted key with the most parts (the first of equals);
/// the start of the file when the document has no key at all.
pub fn deepest_key(text: &str) -> Range<usize> {
    let tokens = Source::new(text).lex().into_vec();
    let mut events: Vec<Event> = Vec::new();
    let mut ignored_errors = ();
    parse_document(
        &tokens,
        &mut |event| events.push(event),
        &mut ignored_errors,
    );
    let mut deepest: Option<(usize, Range<usize>)> = None;
    let mut current: Option<(usize, Range<usize>)> = None;
    for event in &events {
        match event.kind() {
            EventKind::SimpleKey => {
                let span = event.span();
                current = Some(match current.take() {
                    Some((parts, start)) => (parts + 1, start.start..span.end()),
                    None => (1, span.start()..span.end()),
                });
                if let Some((parts, span)) = &current
                    && deepest.as_ref().is_none_or(|(most, _)| parts > most)
                {
                    deepest = Some((*parts, span.clone()));
                }
            }
            // A dot and the blanks around it continue the key.
            EventKind::KeySep | EventKind::Whitespace => {}
            _ => current = None,
        }
    }
    deepest.map_or(0..0, |(_, span)| span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_longest_dotted_key() {
        let text = "[slice.ops]\nx = 1\n[slice.a.b.c]\ny.z = 2\n";
        let span = deepest_key(text);
        assert_eq!(&text[span], "slice.a.b.c");
        assert_eq!(deepest_key("# nothing\n"), 0..0);
    }

    #[test]
    fn whitespace_inside_a_key_does_not_split_it() {
        let text = "a . b . c = 1\nd.e = 2\n";
        assert_eq!(&text[deepest_key(text)], "a . b . c");
    }
}
