//! Java `.properties` (Minecraft's `server.properties`): set `key=value`, appending missing
//! keys. Only the value text of matching lines changes; comments and order stay (Wings
//! rewrites the file and loses comments after the header). Values are written escaped the
//! way Java reads them back, non-ASCII as `\uXXXX` like Wings, so a value can never start a
//! new line.

use super::{Prepared, Report, lines_with_ends, newline_of, push_line};

/// One logical line: its key, where its value starts and ends (byte offsets in the text).
struct Entry {
    key: String,
    value_start: usize,
    value_end: usize,
    /// Whether the line separates key and value at all (`key` alone has no separator, and
    /// a value written there needs one, or it would become part of the key).
    separated: bool,
}

pub(super) fn apply(text: &str, edits: &[Prepared<'_>], report: &mut Report) -> String {
    let mut out = text.to_owned();
    for edit in edits {
        out = apply_one(&out, edit, report);
    }
    out
}

fn apply_one(text: &str, edit: &Prepared<'_>, report: &mut Report) -> String {
    let entries = parse(text);
    let mut splices = Vec::new();
    let mut found = false;
    for e in entries.iter().filter(|e| e.key == edit.key) {
        found = true;
        let current = unescape(&text[e.value_start..e.value_end]);
        if let Some(new) = edit.new_text(Some(&current)) {
            let sep = if e.separated { "" } else { "=" };
            splices.push((
                e.value_start..e.value_end,
                format!("{sep}{}", escape_value(&new)),
            ));
        }
    }
    if found {
        return super::tree::splice(text, splices);
    }
    match edit.new_text(None) {
        Some(new) if !edit.key.is_empty() => {
            let mut out = text.to_owned();
            let nl = newline_of(text);
            let body = text.strip_suffix('\n').unwrap_or(text);
            let body = body.strip_suffix('\r').unwrap_or(body);
            if continues(body.rsplit('\n').next().unwrap_or("")) {
                // End a dangling continuation with an empty line first.
                push_line(&mut out, "", nl);
            }
            let line = format!("{}={}", escape_key(edit.key), escape_value(&new));
            push_line(&mut out, &line, nl);
            out
        }
        Some(_) => {
            edit.skip(report, "empty key");
            text.to_owned()
        }
        None => text.to_owned(),
    }
}

fn parse(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut offset = 0;
    let mut lines = lines_with_ends(text).peekable();
    while let Some((line, end)) = lines.next() {
        let start = offset;
        offset += line.len() + end.len();
        let trimmed = line.trim_start_matches([' ', '\t', '\x0c']);
        if trimmed.is_empty() || trimmed.starts_with(['#', '!']) {
            continue;
        }
        // A logical line continues while the physical one ends in an odd number of `\`.
        let mut value_end = start + line.len();
        let mut cont = continues(line);
        while cont {
            let Some((next, next_end)) = lines.next() else {
                break;
            };
            value_end = offset + next.len();
            offset += next.len() + next_end.len();
            cont = continues(next);
        }
        let key_start = start + (line.len() - trimmed.len());
        let (key, value_start, separated) = split_key(text, key_start, value_end);
        out.push(Entry {
            key,
            value_start,
            value_end,
            separated,
        });
    }
    out
}

fn continues(line: &str) -> bool {
    line.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// The unescaped key starting at `at`, where the value starts, and whether a separator
/// follows the key.
fn split_key(text: &str, at: usize, end: usize) -> (String, usize, bool) {
    let s = &text[at..end];
    let mut key_end = s.len();
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' | ' ' | '\t' | '\x0c' => {
                key_end = i;
                break;
            }
            _ => {}
        }
    }
    let mut rest = &s[key_end..];
    rest = rest.trim_start_matches([' ', '\t', '\x0c']);
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start_matches([' ', '\t', '\x0c']);
    }
    (unescape(&s[..key_end]), end - rest.len(), key_end < s.len())
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => match hex4(&mut chars) {
                Some(hi @ 0xd800..=0xdbff) => {
                    let mut look = chars.clone();
                    let lo = (look.next() == Some('\\') && look.next() == Some('u'))
                        .then(|| hex4(&mut look))
                        .flatten()
                        .filter(|lo| (0xdc00..=0xdfff).contains(lo));
                    match lo {
                        Some(lo) => {
                            chars = look;
                            let c = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                            out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                        }
                        None => out.push('\u{fffd}'),
                    }
                }
                Some(v) => out.push(char::from_u32(v).unwrap_or('\u{fffd}')),
                None => out.push('u'),
            },
            // A line continuation: skip the break and the next line's indentation.
            Some('\n') | Some('\r') => {
                while chars
                    .clone()
                    .next()
                    .is_some_and(|c| matches!(c, '\n' | ' ' | '\t' | '\x0c'))
                {
                    chars.next();
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Four hex digits after `\u`; consumes them only when they are there.
fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let hex: String = chars.clone().take(4).collect();
    let v = u32::from_str_radix(&hex, 16)
        .ok()
        .filter(|_| hex.len() == 4)?;
    for _ in 0..4 {
        chars.next();
    }
    Some(v)
}

fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        if c == ' ' && i == 0 {
            out.push_str("\\ ");
        } else {
            escape_char(c, &mut out);
        }
    }
    out
}

fn escape_key(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '=' | ':' | ' ' | '#' | '!') {
            out.push('\\');
            out.push(c);
        } else {
            escape_char(c, &mut out);
        }
    }
    out
}

fn escape_char(c: char, out: &mut String) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0c' => out.push_str("\\f"),
        c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
        c => {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip() {
        for s in ["a b", " lead", "é€😀", "x\ny\\z", "tab\there"] {
            assert_eq!(unescape(&escape_value(s)), s);
        }
        assert_eq!(escape_value("§aHi"), "\\u00a7aHi");
    }

    #[test]
    fn keys_and_continuations() {
        let t = "# c\nkey = v\\\n   more\nother:x\n  spaced   value here\n";
        let e = parse(t);
        let keys: Vec<_> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["key", "other", "spaced"]);
        assert_eq!(unescape(&t[e[0].value_start..e[0].value_end]), "vmore");
        assert_eq!(&t[e[2].value_start..e[2].value_end], "value here");
    }
}
