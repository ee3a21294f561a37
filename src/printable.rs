//! Text from outside made safe to print: a control character (an escape
//! sequence for root's terminal, a carriage return or a new line that
//! forges a line of its own) is written out as `\x1b` or `\u{9b}` rather
//! than acted on. Tabs stay. What memslice prints or records of a
//! caller's command line, an HTTP error or a probe's reason goes through
//! here.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with its control characters written out. Pure.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(acted_on) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().saturating_add(8));
    for c in text.chars() {
        if !acted_on(c) {
            out.push(c);
        } else if c.is_ascii() {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    Cow::Owned(out)
}

/// C0 and C1 controls and DEL, but a tab.
fn acted_on(c: char) -> bool {
    c.is_control() && c != '\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_written_out_and_the_rest_stays() {
        assert!(matches!(printable("php import.php\tx é"), Cow::Borrowed(_)));
        assert_eq!(
            printable("a\x1b[2Jb\rc\nd\u{9b}e\u{7f}"),
            "a\\x1b[2Jb\\x0dc\\x0ad\\u{9b}e\\x7f"
        );
    }
}
