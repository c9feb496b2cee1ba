//! XML files: `Root.Child.Leaf` sets the text of `<Leaf>` under `<Child>` under the root
//! element `<Root>` (`*` matches any element), creating missing elements when the path has no
//! wildcard; a value of the form `[attr='v']` sets an attribute instead (Wings' syntax).
//! Edits splice the original text (Wings re-indents the whole document). DTDs are passed
//! through untouched and entities are never expanded.

use std::ops::Range;

use quick_xml::Reader;
use quick_xml::events::Event;

use super::tree::{MAX_DEPTH, splice};
use super::{EditError, Prepared, Report, newline_of};
use crate::eggs::model::ParserKind;

struct Element {
    name: String,
    start: Range<usize>,
    /// `None` for `<x/>`.
    end: Option<Range<usize>>,
    children: Vec<Element>,
}

pub(super) fn apply(
    text: &str,
    edits: &[Prepared<'_>],
    report: &mut Report,
) -> Result<String, EditError> {
    let mut out = text.to_owned();
    for edit in edits {
        let root = parse(&out).map_err(|m| EditError::parse(ParserKind::Xml, m))?;
        let parts: Vec<&str> = edit.key.split('.').collect();
        out = match root {
            None => create_root(&out, &parts, edit),
            Some(root) => apply_one(&out, &root, &parts, edit, report),
        };
    }
    Ok(out)
}

fn create_root(text: &str, parts: &[&str], edit: &Prepared<'_>) -> String {
    let Some(new) = edit.new_text(None) else {
        return text.to_owned();
    };
    if parts.iter().any(|p| *p == "*" || !name_ok(p)) {
        return text.to_owned();
    }
    let nl = newline_of(text);
    let mut out = text.to_owned();
    if !out.contains("<?xml") {
        out.insert_str(
            0,
            &format!("<?xml version=\"1.0\" encoding=\"utf-8\"?>{nl}"),
        );
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str(nl);
    }
    out.push_str(&nest(parts, &new));
    out.push_str(nl);
    out
}

fn apply_one(
    text: &str,
    root: &Element,
    parts: &[&str],
    edit: &Prepared<'_>,
    report: &mut Report,
) -> String {
    if parts[0] != "*" && parts[0] != root.name {
        edit.skip(report, format!("the root element is <{}>", root.name));
        return text.to_owned();
    }
    let mut found = Vec::new();
    find(root, &parts[1..], &mut found);
    let mut splices = Vec::new();
    if found.is_empty() {
        if parts.contains(&"*") {
            return text.to_owned();
        }
        if let Some(new) = edit.new_text(None) {
            match create(text, root, &parts[1..], &new) {
                Some(s) => splices.push(s),
                None => edit.skip(report, "cannot create the element"),
            }
        }
    }
    for el in found {
        let current = el
            .end
            .as_ref()
            .map(|e| unescape(&text[el.start.end..e.start]));
        let Some(new) = edit.new_text(current.as_deref()) else {
            continue;
        };
        match attribute(&new) {
            Some((k, v)) => match set_attr(text, el, k, v) {
                Some(s) => splices.push(s),
                None => edit.skip(report, "cannot rewrite the start tag"),
            },
            None if !el.children.is_empty() => edit.skip(report, "the element has child elements"),
            None => splices.push(set_text(text, el, &new)),
        }
    }
    splice(text, splices)
}

fn find<'a>(el: &'a Element, path: &[&str], out: &mut Vec<&'a Element>) {
    let Some((first, rest)) = path.split_first() else {
        out.push(el);
        return;
    };
    for c in el
        .children
        .iter()
        .filter(|c| *first == "*" || c.name == *first)
    {
        find(c, rest, out);
    }
}

/// `[attr='value']` → (attr, value).
fn attribute(v: &str) -> Option<(&str, &str)> {
    let inner = v.strip_prefix('[')?.strip_suffix("']")?;
    let (k, v) = inner.split_once("='")?;
    (!k.is_empty() && k.chars().all(|c| c.is_alphanumeric() || c == '_')).then_some((k, v))
}

fn set_text(text: &str, el: &Element, new: &str) -> (Range<usize>, String) {
    let escaped = escape(new, false);
    match &el.end {
        Some(end) => (el.start.end..end.start, escaped),
        None => {
            // `<x .../>` → `<x ...>text</x>`
            let tag = &text[el.start.clone()];
            let open = tag.trim_end_matches('>').trim_end_matches('/').trim_end();
            (el.start.clone(), format!("{open}>{escaped}</{}>", el.name))
        }
    }
}

fn set_attr(text: &str, el: &Element, key: &str, value: &str) -> Option<(Range<usize>, String)> {
    let tag = &text[el.start.clone()];
    let inner = tag.strip_prefix('<')?.strip_suffix('>')?;
    let (inner, close) = match inner.strip_suffix('/') {
        Some(i) => (i, "/>"),
        None => (inner, ">"),
    };
    let start = quick_xml::events::BytesStart::from_content(inner, el.name.len());
    let mut attrs = Vec::new();
    for a in start.attributes() {
        let a = a.ok()?;
        let k: &str = a.key.as_ref();
        let k = k.to_owned();
        let v = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .ok()?
            .into_owned();
        attrs.push((k, v));
    }
    match attrs.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_owned(),
        None => attrs.push((key.to_owned(), value.to_owned())),
    }
    let mut out = format!("<{}", el.name);
    for (k, v) in attrs {
        out.push_str(&format!(" {k}=\"{}\"", escape(&v, true)));
    }
    out.push_str(close);
    Some((el.start.clone(), out))
}

/// Creates the missing tail of `path` below the deepest existing element on it.
fn create(text: &str, root: &Element, path: &[&str], new: &str) -> Option<(Range<usize>, String)> {
    if path.iter().any(|p| !name_ok(p)) || path.is_empty() {
        return None;
    }
    let mut el = root;
    let mut depth = 0;
    while let Some(c) = path
        .get(depth)
        .and_then(|p| el.children.iter().find(|c| c.name == *p))
    {
        el = c;
        depth += 1;
    }
    let content = match attribute(new) {
        Some((k, v)) => {
            let (last, parents) = path[depth..].split_last()?;
            let leaf = format!("<{last} {k}=\"{}\"/>", escape(v, true));
            wrap(parents, leaf)
        }
        None => nest(&path[depth..], new),
    };
    match &el.end {
        Some(end) => {
            let line_start = text[..end.start].rfind('\n').map(|i| i + 1);
            let indent = match line_start {
                Some(ls) if text[ls..end.start].trim().is_empty() => &text[ls..end.start],
                _ => "",
            };
            let nl = newline_of(text);
            if line_start.is_some() && !indent.is_empty() || text[..end.start].ends_with('\n') {
                Some((end.start..end.start, format!("  {content}{nl}{indent}")))
            } else {
                Some((end.start..end.start, content))
            }
        }
        None => {
            let tag = &text[el.start.clone()];
            let open = tag.trim_end_matches('>').trim_end_matches('/').trim_end();
            Some((el.start.clone(), format!("{open}>{content}</{}>", el.name)))
        }
    }
}

fn nest(names: &[&str], value: &str) -> String {
    match names.split_last() {
        Some((last, parents)) => wrap(
            parents,
            format!("<{last}>{}</{last}>", escape(value, false)),
        ),
        None => escape(value, false),
    }
}

fn wrap(parents: &[&str], mut inner: String) -> String {
    for p in parents.iter().rev() {
        inner = format!("<{p}>{inner}</{p}>");
    }
    inner
}

fn name_ok(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || "_-.".contains(c))
}

fn escape(s: &str, attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\n' if attr => out.push_str("&#10;"),
            c if c.is_control() && !matches!(c, '\n' | '\r' | '\t') => {
                out.push_str(&format!("&#{};", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(end) = after.find(';').filter(|e| *e <= 10) else {
            out.push('&');
            rest = after;
            continue;
        };
        let ent = &after[..end];
        let ch = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parses the element tree with byte spans (`None`: no root element).
fn parse(text: &str) -> Result<Option<Element>, String> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    let mut pos = 0usize;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("{e} at byte {}", reader.error_position()))?;
        let end = usize::try_from(reader.buffer_position())
            .unwrap_or(usize::MAX)
            .min(text.len());
        let span = pos..end;
        pos = end;
        match ev {
            Event::Eof => break,
            Event::Start(s) | Event::Empty(s) => {
                let empty = text[span.clone()].ends_with("/>");
                if stack.len() >= MAX_DEPTH {
                    return Err("nesting too deep".into());
                }
                let qname = s.name();
                let name: &str = qname.as_ref();
                let name = name.to_owned();
                let el = Element {
                    name,
                    start: span,
                    end: None,
                    children: Vec::new(),
                };
                if empty {
                    attach(&mut stack, &mut root, el)?;
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let mut el = stack.pop().ok_or("unbalanced end tag")?;
                el.end = Some(span);
                attach(&mut stack, &mut root, el)?;
            }
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(format!("<{}> is not closed", stack[stack.len() - 1].name));
    }
    Ok(root)
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) -> Result<(), String> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None if root.is_none() => *root = Some(el),
        None => return Err("more than one root element".into()),
    }
    Ok(())
}
