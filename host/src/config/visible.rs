//! Text typed by an operator (a silence's author, comment, matchers) or reported by a platform
//! (a BOSH task's description) shown in human-readable output: one line, nothing a terminal
//! acts on. A newline in a comment would otherwise split one silence over several lines of
//! `silence list`, or forge a second entry; an escape sequence could recolour or clear the
//! terminal. JSON output needs none of this: serde escapes every control character.

use std::borrow::Cow;

/// `s` with every character that could break or fake a line shown as a visible escape: `\n`,
/// `\r`, `\t`, `\\` (so a typed backslash cannot pass for an escape), and `\u{..}` (ESC is
/// `\u{1b}`) for the other control characters, the line and paragraph separators and the
/// bidirectional controls (which reorder what a terminal shows).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c,
            '\u{2028}' | '\u{2029}'                  // line, paragraph separator
            | '\u{200e}' | '\u{200f}' | '\u{061c}'   // direction marks
            | '\u{202a}'..='\u{202e}'                // embeddings, overrides
            | '\u{2066}'..='\u{2069}') // isolates
}

/// Text from the DB or a platform inside HTML or SVG (a mail's HTML part, the console's charts):
/// the five characters markup gives a meaning to, as entities.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn every_line_breaking_or_terminal_character_becomes_visible() {
        assert!(matches!(escape("kim"), std::borrow::Cow::Borrowed("kim")));
        assert_eq!(escape("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(escape("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(escape("x\u{7f}\u{85}\u{0}"), "x\\u{7f}\\u{85}\\u{0}");
        assert_eq!(escape("ab\u{202e}cd\u{2028}"), "ab\\u{202e}cd\\u{2028}");
        // a literal backslash-n typed by someone is not shown as an escaped newline
        assert_eq!(escape("a\\nb"), "a\\\\nb");
        assert_eq!(escape("한글 ok"), "한글 ok");
        for s in ["a\nb", "\u{1b}]0;x\u{7}", "x\r\n    7 active"] {
            assert!(!escape(s).chars().any(|c| c.is_control()), "{s:?}");
        }
    }
}
