//! An egg document as a generic tree that keeps key order (the first `docker_images` entry
//! is the default image, so order matters and `serde_json::Value`'s sorted map would not
//! do), read from JSON or from YAML (Pelican's default export format).

use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Deepest nesting an egg document may have (real ones: 5).
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    Str(String),
    List(Vec<Doc>),
    Map(Vec<(String, Doc)>),
}

impl Doc {
    pub fn get(&self, key: &str) -> Option<&Doc> {
        match self {
            Doc::Map(m) => m.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short name of the kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Doc::Null => "null",
            Doc::Bool(_) => "a boolean",
            Doc::Number(_) => "a number",
            Doc::Str(_) => "a string",
            Doc::List(_) => "a list",
            Doc::Map(_) => "an object",
        }
    }

    /// Parses JSON, refusing nesting deeper than [`MAX_DEPTH`].
    pub fn from_json(text: &str) -> Result<Doc, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let doc = Doc::deserialize(&mut de).map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        if depth(&doc) > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(doc)
    }

    /// Parses the first YAML document. Aliases are refused (eggs never use them, and
    /// expanding them is how "billion laughs" inputs blow up).
    pub fn from_yaml(text: &str) -> Result<Doc, String> {
        let mut parser = Parser::new_from_str(text);
        let mut stack: Vec<Open> = Vec::new();
        let mut root: Option<Doc> = None;
        while let Some(ev) = parser.next_event() {
            let (ev, _) = ev.map_err(|e| format!("{} at line {}", e.info(), e.marker().line()))?;
            let node = match ev {
                Event::StreamEnd => break,
                Event::DocumentEnd if root.is_some() => break,
                Event::Alias(_) => return Err("YAML aliases are not supported in eggs".into()),
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
                    }
                    let is_map = matches!(ev, Event::MappingStart(..));
                    stack.push((Vec::new(), Vec::new(), is_map, None));
                    continue;
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    let (map, list, is_map, _) = stack.pop().ok_or("unbalanced YAML")?;
                    if is_map {
                        Doc::Map(map)
                    } else {
                        Doc::List(list)
                    }
                }
                Event::Scalar(v, style, _, _) => scalar(&v, style),
                _ => continue,
            };
            match stack.last_mut() {
                None => root = Some(node),
                Some((map, list, is_map, key)) => {
                    if !*is_map {
                        list.push(node);
                    } else if let Some(k) = key.take() {
                        map.push((k, node));
                    } else {
                        *key = Some(match node {
                            Doc::Str(s) => s,
                            Doc::Number(n) => n.to_string(),
                            Doc::Bool(b) => b.to_string(),
                            Doc::Null => String::new(),
                            _ => return Err("YAML mapping keys must be scalars".into()),
                        });
                    }
                }
            }
        }
        Ok(root.unwrap_or(Doc::Null))
    }
}

/// An open collection while reading YAML: entries, items, whether it is a mapping, and
/// the key waiting for its value.
type Open = (Vec<(String, Doc)>, Vec<Doc>, bool, Option<String>);

fn depth(d: &Doc) -> usize {
    match d {
        Doc::List(l) => 1 + l.iter().map(depth).max().unwrap_or(0),
        Doc::Map(m) => 1 + m.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        _ => 0,
    }
}

/// YAML core-schema resolution of a scalar.
fn scalar(v: &str, style: ScalarStyle) -> Doc {
    if style != ScalarStyle::Plain {
        return Doc::Str(v.to_owned());
    }
    match v {
        "" | "~" | "null" | "Null" | "NULL" => Doc::Null,
        "true" | "True" | "TRUE" => Doc::Bool(true),
        "false" | "False" | "FALSE" => Doc::Bool(false),
        _ => {
            if let Ok(i) = v.parse::<i64>() {
                return Doc::Number(i.into());
            }
            if super::config::tree::json_number(v)
                && let Some(n) = v.parse::<f64>().ok().and_then(serde_json::Number::from_f64)
            {
                return Doc::Number(n);
            }
            Doc::Str(v.to_owned())
        }
    }
}

impl<'de> Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Doc, D::Error> {
        d.deserialize_any(DocVisitor)
    }
}

struct DocVisitor;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = Doc;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Doc, E> {
        Ok(Doc::Null)
    }
    fn visit_none<E>(self) -> Result<Doc, E> {
        Ok(Doc::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Doc, E> {
        Ok(Doc::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Doc, E> {
        Ok(Doc::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Doc, E> {
        Ok(Doc::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Doc, E> {
        serde_json::Number::from_f64(v)
            .map(Doc::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Doc, E> {
        Ok(Doc::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Doc, E> {
        Ok(Doc::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Doc::List(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Doc>()? {
            out.push((k, v));
        }
        Ok(Doc::Map(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_order_and_limits_depth() {
        let d = Doc::from_json(r#"{"b":1,"a":[true,null,"x"]}"#).unwrap();
        let Doc::Map(m) = &d else { panic!() };
        assert_eq!(m[0].0, "b");
        assert!(Doc::from_json(&"[".repeat(40).to_string()).is_err());
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert!(Doc::from_json(&deep).unwrap_err().contains("deeper"));
    }

    #[test]
    fn yaml_scalars_and_aliases() {
        let d = Doc::from_yaml("a: 1\nb: 'x'\nc: yes\nd: ~\ne: [1.5, true]\n").unwrap();
        assert_eq!(d.get("a"), Some(&Doc::Number(1.into())));
        assert_eq!(d.get("b"), Some(&Doc::Str("x".into())));
        assert_eq!(d.get("c"), Some(&Doc::Str("yes".into())));
        assert_eq!(d.get("d"), Some(&Doc::Null));
        assert!(
            Doc::from_yaml("a: &x 1\nb: *x\n")
                .unwrap_err()
                .contains("aliases")
        );
    }
}
