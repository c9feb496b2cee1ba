//! YAML files, edited in place through a span tree built from saphyr-parser's events: only
//! the target scalar's text changes, so comments, key order and quoting elsewhere stay
//! (Wings round-trips through JSON and loses them). New values keep the existing type and
//! quote style when they can; missing keys are added after the last entry of their mapping
//! at its indentation. Aliases are not followed (no expansion, so no "billion laughs"); only
//! the first document of a stream is edited.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use saphyr_parser::{Event, Parser, ScalarStyle};

use super::tree::{self, Found, Kind, MAX_DEPTH, Node, Style};
use super::{EditError, Prepared, Report, newline_of};
use crate::eggs::model::{EditValue, ParserKind};

pub(super) fn apply(
    text: &str,
    edits: &[Prepared<'_>],
    report: &mut Report,
) -> Result<String, EditError> {
    let mut out = text.to_owned();
    for edit in edits {
        let root = parse(&out).map_err(|m| EditError::parse(ParserKind::Yaml, m))?;
        let path = tree::parse_path(edit.key);
        let mut splices = Vec::new();
        let empty = Node::Map {
            entries: Vec::new(),
            span: out.len()..out.len(),
            flow: false,
        };
        let root = root.as_ref().unwrap_or(&empty);
        for found in tree::resolve(root, &path) {
            match found {
                Found::Node(node) => set(&out, node, edit, report, &mut splices),
                Found::Missing { map, keys } => {
                    if let Some(new) = edit.new_text(None) {
                        let v = render(&edit.value, &new, None, Style::Plain);
                        splices.push(insert(&out, map, &keys, &v));
                    }
                }
                Found::Unreachable(why) => edit.skip(report, why),
            }
        }
        out = tree::splice(&out, splices);
    }
    Ok(out)
}

fn set(
    text: &str,
    node: &Node,
    edit: &Prepared<'_>,
    report: &mut Report,
    splices: &mut Vec<(Range<usize>, String)>,
) {
    let Node::Scalar {
        span,
        kind,
        style,
        value,
    } = node
    else {
        edit.skip(report, "the value there is a mapping, list or alias");
        return;
    };
    let current = (*kind != Kind::Null).then_some(value.as_str());
    let Some(new) = edit.new_text(current) else {
        return;
    };
    let rendered = render(&edit.value, &new, Some(*kind), *style);
    if *style != Style::Block {
        if span.is_empty() {
            // `key:` with nothing after it: saphyr puts the empty scalar before the colon.
            let after = &text[span.start..];
            let gap = after.len() - after.trim_start_matches([' ', '\t']).len();
            let at = if after[gap..].starts_with(':') {
                span.start + gap + 1
            } else {
                span.start
            };
            splices.push((at..at, format!(" {rendered}")));
        } else {
            splices.push((span.clone(), rendered));
        }
        return;
    }
    match block_region(text, span) {
        Some((region, trailing)) => splices.push((region, format!("{rendered}{trailing}"))),
        None => edit.skip(report, "cannot locate the block scalar's indicator"),
    }
}

/// A block scalar's span covers its content (and the next line's indentation); the region
/// to replace starts at its `|`/`>` indicator. Returns the region and the text to keep
/// after the new value.
fn block_region(text: &str, span: &Range<usize>) -> Option<(Range<usize>, String)> {
    let header_end = text[..span.start].rfind('\n')?;
    let line_start = text[..header_end].rfind('\n').map_or(0, |i| i + 1);
    let header = &text[line_start..header_end];
    let header = match header.find(" #") {
        Some(i) => &header[..i],
        None => header,
    }
    .trim_end();
    let ind = header.trim_end_matches(|c: char| c == '+' || c == '-' || c.is_ascii_digit());
    if !ind.ends_with(['|', '>']) {
        return None;
    }
    let start = line_start + ind.len() - 1;
    let content = &text[span.clone()];
    let trailing = match content.rfind('\n') {
        Some(i) => format!("{}{}", newline_of(text), &content[i + 1..]),
        None => String::new(),
    };
    Some((start..span.end, trailing))
}

/// Renders `new` as a YAML scalar: typed by the egg or mirroring the existing kind, strings
/// in the existing quote style when it can hold them.
fn render(value: &EditValue, new: &str, existing: Option<Kind>, style: Style) -> String {
    let bool_wanted = matches!(value, EditValue::Bool(_)) || existing == Some(Kind::Bool);
    if let (true, Some(b)) = (bool_wanted, tree::parse_bool(new)) {
        return b.to_string();
    }
    let number_wanted = existing == Some(Kind::Number)
        || (existing.is_none() && matches!(value, EditValue::Number(_)));
    if number_wanted && tree::json_number(new) {
        return new.to_owned();
    }
    string(new, style)
}

fn string(s: &str, style: Style) -> String {
    let controls = s.chars().any(|c| c.is_control());
    match style {
        Style::Double => double(s),
        _ if controls => double(s),
        Style::Single => single(s),
        _ if plain_safe(s) => s.to_owned(),
        _ => single(s),
    }
}

fn double(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn single(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Conservative: a safe character set, no indicator first, and nothing a YAML 1.1 or 1.2
/// reader (SnakeYAML, Go, saphyr) resolves to a bool, null, number or timestamp.
fn plain_safe(s: &str) -> bool {
    static TYPED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?ix)^(
                y|n|yes|no|on|off|true|false|null|~
              | [-+]?(\.[0-9_]+|[0-9][0-9_]*(\.[0-9_]*)?)(e[-+]?[0-9]+)?
              | [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?
              | [-+]?0[xob][0-9a-f_]+
              | [-+]?\.(inf|nan)
              | [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}.*
            )$",
        )
        .expect("static regex")
    });
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '/');
    first_ok
        && !s.ends_with([' ', ':'])
        && !s.contains(": ")
        && !s.contains(" #")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || " ._/@:+=-".contains(c))
        && !TYPED.is_match(s)
}

fn key_text(k: &str) -> String {
    if plain_safe(k) || (!k.is_empty() && k.bytes().all(|b| b.is_ascii_digit())) {
        k.to_owned()
    } else {
        string(k, Style::Single)
    }
}

/// Adds `keys` (nested mappings for all but the last) with value `v` to `map`.
fn insert(text: &str, map: &Node, keys: &[String], v: &str) -> (Range<usize>, String) {
    let nl = newline_of(text);
    let Node::Map {
        entries,
        span,
        flow,
    } = map
    else {
        return (0..0, String::new());
    };
    if *flow {
        let mut value = v.to_owned();
        for k in keys[1..].iter().rev() {
            value = format!("{{{}: {value}}}", key_text(k));
        }
        let entry = format!("{}: {value}", key_text(&keys[0]));
        return match entries.last() {
            Some((_, _, last)) => (last.span().end..last.span().end, format!(", {entry}")),
            None => (span.start + 1..span.start + 1, entry),
        };
    }
    let column = entries.first().map_or(0, |(_, ks, _)| {
        ks.start - text[..ks.start].rfind('\n').map_or(0, |i| i + 1)
    });
    let mut block = String::new();
    for (depth, k) in keys.iter().enumerate() {
        let pad = " ".repeat(column + 2 * depth);
        if depth + 1 == keys.len() {
            block.push_str(&format!("{pad}{}: {v}{nl}", key_text(k)));
        } else {
            block.push_str(&format!("{pad}{}:{nl}", key_text(k)));
        }
    }
    let Some((_, _, last)) = entries.last() else {
        // Empty document: append.
        let sep = if text.is_empty() || text.ends_with('\n') {
            ""
        } else {
            nl
        };
        return (text.len()..text.len(), format!("{sep}{block}"));
    };
    let end = last.span().end;
    let before = &text[..end];
    let tail = before.trim_end_matches([' ', '\t']);
    if tail.ends_with('\n') {
        return (tail.len()..tail.len(), block);
    }
    match text[end..].find('\n') {
        Some(i) => (end + i + 1..end + i + 1, block),
        None => (text.len()..text.len(), format!("{nl}{block}")),
    }
}

/// Parses the first document into a span tree (`None` for an empty stream/document).
fn parse(text: &str) -> Result<Option<Node>, String> {
    let mut parser = Parser::new_from_str(text);
    let offsets = Offsets::new(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root = None;
    while let Some(ev) = parser.next_event() {
        let (ev, span) = ev.map_err(|e| format!("{} at line {}", e.info(), e.marker().line()))?;
        let mut r = offsets.range(text, span.start.index()..span.end.index());
        let node = match ev {
            Event::DocumentEnd if stack.is_empty() && root.is_some() => break,
            Event::StreamEnd => break,
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err("nesting too deep".into());
                }
                stack.push(Frame {
                    map: matches!(ev, Event::MappingStart(..)),
                    flow: !r.is_empty(),
                    start: r.start,
                    end: r.end,
                    items: Vec::new(),
                    key: None,
                });
                continue;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let f = stack.pop().ok_or("unbalanced document")?;
                f.finish(r)
            }
            Event::Scalar(value, style, _, _) => {
                if matches!(style, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted) {
                    r.end = quoted_end(text, r.start, style).unwrap_or(r.end);
                }
                scalar(r, &value, style)
            }
            Event::Alias(_) => Node::Opaque { span: r },
            _ => continue,
        };
        match stack.last_mut() {
            Some(frame) => frame.push(node),
            None => root = Some(node),
        }
    }
    // An empty document (only comments, or nothing) has an implicit empty scalar root.
    Ok(root.filter(|n| !matches!(n, Node::Scalar { span, .. } if span.is_empty())))
}

/// saphyr reports character indices; this maps them to byte offsets (built only for
/// non-ASCII text, once per parse).
struct Offsets(Option<Vec<u32>>);

impl Offsets {
    fn new(text: &str) -> Offsets {
        if text.is_ascii() {
            return Offsets(None);
        }
        let mut v: Vec<u32> = text.char_indices().map(|(b, _)| b as u32).collect();
        v.push(text.len() as u32);
        Offsets(Some(v))
    }

    fn range(&self, text: &str, r: Range<usize>) -> Range<usize> {
        let at = |ci: usize| match &self.0 {
            None => ci.min(text.len()),
            Some(v) => v.get(ci).map_or(text.len(), |b| *b as usize),
        };
        at(r.start)..at(r.end).max(at(r.start))
    }
}

/// saphyr's span of a quoted scalar runs on over trailing blanks and a comment; this is
/// where the closing quote really is.
fn quoted_end(text: &str, start: usize, style: ScalarStyle) -> Option<usize> {
    let b = text.as_bytes();
    b.get(start)?;
    let mut i = start + 1;
    while i < b.len() {
        match (style, b[i]) {
            (ScalarStyle::DoubleQuoted, b'\\') => i += 2,
            (ScalarStyle::DoubleQuoted, b'"') => return Some(i + 1),
            (ScalarStyle::SingleQuoted, b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
            (ScalarStyle::SingleQuoted, b'\'') => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// A mapping key and its span.
type Key = (String, Range<usize>);

struct Frame {
    map: bool,
    flow: bool,
    start: usize,
    end: usize,
    items: Vec<(Option<Key>, Node)>,
    key: Option<Key>,
}

impl Frame {
    fn push(&mut self, node: Node) {
        if !self.map {
            self.end = self.end.max(node.span().end);
            self.items.push((None, node));
            return;
        }
        match self.key.take() {
            None => {
                let key = match &node {
                    Node::Scalar { value, span, .. } => (value.clone(), span.clone()),
                    // A complex key no path can name.
                    other => ("\u{0}".into(), other.span()),
                };
                self.key = Some(key);
            }
            Some(key) => {
                self.end = self.end.max(node.span().end);
                self.items.push((Some(key), node));
            }
        }
    }

    fn finish(self, end_event: Range<usize>) -> Node {
        let end = if self.flow { end_event.end } else { self.end };
        let span = self.start..end.max(self.start);
        if self.map {
            Node::Map {
                entries: self
                    .items
                    .into_iter()
                    .filter_map(|(k, v)| k.map(|(k, ks)| (k, ks, v)))
                    .collect(),
                span,
                flow: self.flow,
            }
        } else {
            Node::Seq {
                items: self.items.into_iter().map(|(_, v)| v).collect(),
                span,
            }
        }
    }
}

fn scalar(span: Range<usize>, value: &str, style: ScalarStyle) -> Node {
    let (style, kind) = match style {
        ScalarStyle::Plain => (Style::Plain, plain_kind(value)),
        ScalarStyle::SingleQuoted => (Style::Single, Kind::Str),
        ScalarStyle::DoubleQuoted => (Style::Double, Kind::Str),
        _ => (Style::Block, Kind::Str),
    };
    Node::Scalar {
        span,
        kind,
        style,
        value: value.to_owned(),
    }
}

/// YAML core-schema resolution of a plain scalar.
fn plain_kind(v: &str) -> Kind {
    match v {
        "" | "~" | "null" | "Null" | "NULL" => Kind::Null,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => Kind::Bool,
        _ if tree::json_number(v.strip_prefix('+').unwrap_or(v)) => Kind::Number,
        _ => Kind::Str,
    }
}
