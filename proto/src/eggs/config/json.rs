//! JSON files, edited in place through a span tree (like Wings' sjson, which also splices
//! text): values keep their type when the new one parses as it (a number stays a number),
//! missing keys are added to their object. Whitespace-only input counts as `{}`.

use super::tree::{self, Found, Kind, MAX_DEPTH, Node, Style};
use super::{EditError, Prepared, Report};
use crate::eggs::model::{EditValue, ParserKind};

pub(super) fn apply(
    text: &str,
    edits: &[Prepared<'_>],
    report: &mut Report,
) -> Result<String, EditError> {
    let mut out = if text.trim().is_empty() {
        "{}\n".to_owned()
    } else {
        text.to_owned()
    };
    for edit in edits {
        let root = parse(&out).map_err(|m| EditError::parse(ParserKind::Json, m))?;
        let path = tree::parse_path(edit.key);
        let mut splices = Vec::new();
        for found in tree::resolve(&root, &path) {
            match found {
                Found::Node(node) => set(node, edit, report, &mut splices),
                Found::Missing { map, keys } => {
                    if let Some(new) = edit.new_text(None) {
                        splices.push(insert(&out, map, &keys, &render_new(&edit.value, &new)));
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
    node: &Node,
    edit: &Prepared<'_>,
    report: &mut Report,
    splices: &mut Vec<(std::ops::Range<usize>, String)>,
) {
    let Node::Scalar {
        span, kind, value, ..
    } = node
    else {
        edit.skip(report, "the value there is an object or array");
        return;
    };
    let current = (*kind != Kind::Null).then_some(value.as_str());
    if let Some(new) = edit.new_text(current) {
        splices.push((span.clone(), render(&edit.value, &new, Some(*kind))));
    }
}

/// Renders `new`: typed by the egg (`Bool`), else mirroring the existing kind when `new`
/// parses as it, else a string.
pub(super) fn render(value: &EditValue, new: &str, existing: Option<Kind>) -> String {
    match (value, existing) {
        (EditValue::Bool(_), _) | (_, Some(Kind::Bool)) if tree::parse_bool(new).is_some() => {
            tree::parse_bool(new).unwrap_or_default().to_string()
        }
        (_, Some(Kind::Number)) if tree::json_number(new) => new.to_owned(),
        (EditValue::Number(_), None) if tree::json_number(new) => new.to_owned(),
        _ => serde_json::to_string(new).unwrap_or_else(|_| "\"\"".into()),
    }
}

fn render_new(value: &EditValue, new: &str) -> String {
    render(value, new, None)
}

/// Adds `keys` (nested objects for all but the last) to the object `map`.
fn insert(
    text: &str,
    map: &Node,
    keys: &[String],
    rendered: &str,
) -> (std::ops::Range<usize>, String) {
    let Node::Map { entries, span, .. } = map else {
        return (0..0, String::new());
    };
    let mut value = rendered.to_owned();
    for k in keys[1..].iter().rev() {
        value = format!("{{{}: {value}}}", quote(k));
    }
    let entry = format!("{}: {value}", quote(&keys[0]));
    match entries.last() {
        Some((_, key_span, last)) => {
            let indent = indent_before(text, key_span.start);
            let at = last.span().end;
            (at..at, format!(",\n{indent}{entry}"))
        }
        None => {
            let at = span.start + 1;
            (at..at, entry)
        }
    }
}

fn quote(k: &str) -> String {
    serde_json::to_string(k).unwrap_or_else(|_| "\"\"".into())
}

/// The whitespace before `at` on its line, if only whitespace precedes it.
fn indent_before(text: &str, at: usize) -> String {
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let pre = &text[line_start..at];
    if pre.chars().all(|c| c == ' ' || c == '\t') {
        pre.to_owned()
    } else {
        " ".into()
    }
}

/// Parses JSON into a span tree.
pub(super) fn parse(text: &str) -> Result<Node, String> {
    let mut p = P {
        s: text.as_bytes(),
        text,
        i: 0,
    };
    p.ws();
    let node = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(node)
}

struct P<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl P<'_> {
    fn err(&self, what: &str) -> String {
        let line = self.text[..self.i.min(self.text.len())]
            .matches('\n')
            .count()
            + 1;
        format!("{what} at line {line}")
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, String> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        let start = self.i;
        match self.s.get(self.i) {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => {
                let value = self.string()?;
                Ok(scalar(start..self.i, Kind::Str, Style::Double, value))
            }
            Some(b't') => self.word("true", Kind::Bool),
            Some(b'f') => self.word("false", Kind::Bool),
            Some(b'n') => self.word("null", Kind::Null),
            Some(b'-' | b'0'..=b'9') => {
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let n = &self.text[start..self.i];
                if !tree::json_number(n) {
                    return Err(self.err("invalid number"));
                }
                Ok(scalar(
                    start..self.i,
                    Kind::Number,
                    Style::Plain,
                    n.to_owned(),
                ))
            }
            _ => Err(self.err("expected a value")),
        }
    }

    fn word(&mut self, w: &str, kind: Kind) -> Result<Node, String> {
        let start = self.i;
        if !self.text[start..].starts_with(w) {
            return Err(self.err("expected a value"));
        }
        self.i += w.len();
        Ok(scalar(start..self.i, kind, Style::Plain, w.to_owned()))
    }

    fn string(&mut self) -> Result<String, String> {
        let start = self.i;
        self.i += 1;
        loop {
            match self.s.get(self.i) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => self.i += 2,
                Some(_) => self.i += 1,
            }
        }
        self.i += 1;
        if self.i > self.s.len() {
            return Err(self.err("unterminated string"));
        }
        serde_json::from_str::<String>(&self.text[start..self.i])
            .map_err(|_| self.err("invalid string"))
    }

    fn object(&mut self, depth: usize) -> Result<Node, String> {
        let start = self.i;
        self.i += 1;
        let mut entries = Vec::new();
        self.ws();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(Node::Map {
                entries,
                span: start..self.i,
                flow: true,
            });
        }
        loop {
            self.ws();
            if self.s.get(self.i) != Some(&b'"') {
                return Err(self.err("expected a key"));
            }
            let key_start = self.i;
            let key = self.string()?;
            let key_span = key_start..self.i;
            self.ws();
            if self.s.get(self.i) != Some(&b':') {
                return Err(self.err("expected `:`"));
            }
            self.i += 1;
            self.ws();
            let v = self.value(depth + 1)?;
            entries.push((key, key_span, v));
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Node::Map {
                        entries,
                        span: start..self.i,
                        flow: true,
                    });
                }
                _ => return Err(self.err("expected `,` or `}`")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Node, String> {
        let start = self.i;
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.s.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(Node::Seq {
                items,
                span: start..self.i,
            });
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Node::Seq {
                        items,
                        span: start..self.i,
                    });
                }
                _ => return Err(self.err("expected `,` or `]`")),
            }
        }
    }
}

fn scalar(span: std::ops::Range<usize>, kind: Kind, style: Style, value: String) -> Node {
    Node::Scalar {
        span,
        kind,
        style,
        value,
    }
}
