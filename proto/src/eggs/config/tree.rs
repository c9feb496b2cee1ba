//! A span tree shared by the JSON and YAML editors: every node remembers where it sits in
//! the original text, so an edit is a splice and the rest of the file (comments, order,
//! spacing) stays as it was.

use std::ops::Range;

/// Deepest nesting any structured parser accepts.
pub const MAX_DEPTH: usize = 128;
/// Most nodes one wildcard path may touch.
pub const MAX_MATCHES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Single,
    Double,
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Number,
    Bool,
    Null,
}

#[derive(Debug, Clone)]
pub enum Node {
    Scalar {
        span: Range<usize>,
        kind: Kind,
        style: Style,
        value: String,
    },
    Map {
        entries: Vec<(String, Range<usize>, Node)>,
        span: Range<usize>,
        flow: bool,
    },
    Seq {
        items: Vec<Node>,
        span: Range<usize>,
    },
    /// Something an edit cannot go through (a YAML alias).
    Opaque { span: Range<usize> },
}

impl Node {
    pub fn span(&self) -> Range<usize> {
        match self {
            Node::Scalar { span, .. }
            | Node::Map { span, .. }
            | Node::Seq { span, .. }
            | Node::Opaque { span } => span.clone(),
        }
    }
}

/// One step of a `match` path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
    Any,
}

/// Parses `a.b[0].*.c` (a numeric component also indexes a sequence).
pub fn parse_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for comp in path.split('.') {
        let (name, mut rest) = match comp.find('[') {
            Some(i) if comp.ends_with(']') => (&comp[..i], &comp[i..]),
            _ => (comp, ""),
        };
        out.push(if name == "*" {
            Seg::Any
        } else {
            Seg::Key(name.to_owned())
        });
        if name.is_empty() {
            out.pop();
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else { break };
            match inner[..end].parse::<usize>() {
                Ok(i) => out.push(Seg::Index(i)),
                Err(_) if &inner[..end] == "*" => out.push(Seg::Any),
                Err(_) => out.push(Seg::Key(inner[..end].to_owned())),
            }
            rest = &inner[end + 1..];
        }
    }
    out
}

/// Where a path leads.
#[derive(Debug)]
pub enum Found<'a> {
    Node(&'a Node),
    /// The path stops existing below `map`; `keys` are the missing keys (all plain keys).
    Missing {
        map: &'a Node,
        keys: Vec<String>,
    },
    /// The path cannot be followed (through a scalar, past a sequence's end, or a missing
    /// wildcard / index step).
    Unreachable(String),
}

/// Resolves a path; wildcards fan out.
pub fn resolve<'a>(root: &'a Node, path: &[Seg]) -> Vec<Found<'a>> {
    let mut out = Vec::new();
    walk(root, path, &mut out);
    out
}

fn walk<'a>(node: &'a Node, path: &[Seg], out: &mut Vec<Found<'a>>) {
    if out.len() >= MAX_MATCHES {
        return;
    }
    let Some((seg, rest)) = path.split_first() else {
        out.push(Found::Node(node));
        return;
    };
    match (node, seg) {
        (Node::Map { entries, .. }, Seg::Key(k)) => {
            match entries.iter().rev().find(|(key, _, _)| key == k) {
                Some((_, _, child)) => walk(child, rest, out),
                None => missing(node, path, out),
            }
        }
        (Node::Map { entries, .. }, Seg::Index(i)) => {
            let k = i.to_string();
            match entries.iter().rev().find(|(key, _, _)| *key == k) {
                Some((_, _, child)) => walk(child, rest, out),
                None => missing(node, path, out),
            }
        }
        (Node::Map { entries, .. }, Seg::Any) => {
            for (_, _, child) in entries {
                walk(child, rest, out);
            }
        }
        (Node::Seq { items, .. }, Seg::Index(i)) => match items.get(*i) {
            Some(child) => walk(child, rest, out),
            None => out.push(Found::Unreachable(format!("index {i} is past the end"))),
        },
        (Node::Seq { items, .. }, Seg::Key(k)) if k.parse::<usize>().is_ok() => {
            match items.get(k.parse::<usize>().unwrap_or(usize::MAX)) {
                Some(child) => walk(child, rest, out),
                None => out.push(Found::Unreachable(format!("index {k} is past the end"))),
            }
        }
        (Node::Seq { items, .. }, Seg::Any) => {
            for child in items {
                walk(child, rest, out);
            }
        }
        (Node::Seq { .. }, Seg::Key(k)) => out.push(Found::Unreachable(format!(
            "`{k}` names a key but the value is a list"
        ))),
        (Node::Scalar { .. } | Node::Opaque { .. }, _) => out.push(Found::Unreachable(
            "the path goes through a value that is not a mapping".into(),
        )),
    }
}

fn missing<'a>(map: &'a Node, path: &[Seg], out: &mut Vec<Found<'a>>) {
    let mut keys = Vec::new();
    for seg in path {
        match seg {
            Seg::Key(k) => keys.push(k.clone()),
            _ => {
                out.push(Found::Unreachable(
                    "a missing part of the path has an index or wildcard".into(),
                ));
                return;
            }
        }
    }
    out.push(Found::Missing { map, keys });
}

/// Applies non-overlapping splices (sorted here) to `text`.
pub fn splice(text: &str, mut edits: Vec<(Range<usize>, String)>) -> String {
    edits.sort_by_key(|(r, _)| (r.start, r.end));
    let mut out = String::with_capacity(text.len() + 64);
    let mut at = 0;
    for (r, new) in edits {
        if r.start < at {
            continue;
        }
        out.push_str(&text[at..r.start]);
        out.push_str(&new);
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Go's `strconv.ParseBool` spellings.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A JSON number (RFC 8259 grammar).
pub fn json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(c) if c.is_ascii_digit() => {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        let s = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == s {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let s = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == s {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        use Seg::*;
        assert_eq!(
            parse_path("listeners[0].host"),
            [Key("listeners".into()), Index(0), Key("host".into())]
        );
        assert_eq!(
            parse_path("servers.*.address"),
            [Key("servers".into()), Any, Key("address".into())]
        );
        assert_eq!(parse_path("a.0"), [Key("a".into()), Key("0".into())]);
    }

    #[test]
    fn numbers() {
        for ok in ["0", "-1", "1.5", "1e9", "25565", "-0.0E+1"] {
            assert!(json_number(ok), "{ok}");
        }
        for bad in ["", "01", "1.", ".5", "+1", "1e", "0x1", "NaN"] {
            assert!(!json_number(bad), "{bad}");
        }
    }
}
