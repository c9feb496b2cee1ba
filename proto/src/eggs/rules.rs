//! The Laravel validation rules egg variables carry (`required|string|between:3,15`).
//!
//! The subset is the one the public eggs use (README.md, "Survey"). Values are the strings
//! a user sends for a variable. Decisions, all documented in README.md:
//! - An empty value passes every rule except `required` (Laravel turns `""` into null, and
//!   eggs write `nullable` inconsistently).
//! - `max`/`min`/`between`/`size`/`gt`/… compare the number when the list has `numeric` or
//!   `integer`, else the length in characters (Laravel's size semantics).
//! - `boolean` accepts `0`, `1`, `true` and `false`.
//! - A rule this module does not know (or a `regex` the `regex` crate cannot compile, such as
//!   one with look-around) is ignored and reported as a warning at import; a known rule with
//!   malformed parameters (`max:abc`, `between:5`) refuses the egg.
//! - Rules written as one string are split on `|` except inside a `regex:`/`not_regex:`
//!   pattern, which is kept whole up to its closing delimiter (Laravel itself would split it).

use regex::{Regex, RegexBuilder};

/// Longest regex pattern accepted, and the compiled-size limits.
const MAX_PATTERN: usize = 1024;
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One parsed rule.
#[derive(Debug, Clone)]
enum Rule {
    Required,
    Integer,
    Numeric,
    Boolean,
    Between(f64, f64),
    Max(f64),
    Min(f64),
    Size(f64),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    In(Vec<String>),
    NotIn(Vec<String>),
    Regex(Box<Regex>, String),
    NotRegex(Box<Regex>, String),
    Digits(usize),
    DigitsBetween(usize, usize),
    Alpha,
    AlphaNum,
    AlphaDash,
    Url,
    StartsWith(Vec<String>),
    EndsWith(Vec<String>),
}

/// A variable's parsed rules.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    numeric: bool,
}

/// A known rule with malformed parameters (refuses the egg at import).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule `{rule}`: {reason}")]
pub struct RuleParseError {
    pub rule: String,
    pub reason: String,
}

/// A value refused by a rule; the message names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment.{variable}: {message}")]
pub struct RuleError {
    pub variable: String,
    pub message: String,
}

/// Splits a rule string on `|`, keeping `regex:` patterns whole.
pub fn split(rules: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut parts = rules.split('|');
    while let Some(part) = parts.next() {
        let mut rule = part.to_owned();
        if let Some(pat) = regex_param(&rule) {
            let mut pat_len = pat.len();
            while !delimited(&rule[rule.len() - pat_len..]) {
                let Some(next) = parts.next() else { break };
                rule.push('|');
                rule.push_str(next);
                pat_len += 1 + next.len();
            }
        }
        let rule = rule.trim();
        if !rule.is_empty() {
            out.push(rule.to_owned());
        }
    }
    out
}

fn regex_param(rule: &str) -> Option<&str> {
    rule.trim_start()
        .strip_prefix("regex:")
        .or_else(|| rule.trim_start().strip_prefix("not_regex:"))
}

/// Whether a PHP pattern (`/…/flags`) is complete: its closing delimiter is followed only by
/// flag letters.
fn delimited(pat: &str) -> bool {
    split_delimited(pat).is_some()
}

/// `/body/flags` → (body, flags), PHP style: any non-alphanumeric, non-backslash delimiter,
/// with bracket pairs for `(`, `[`, `{`, `<`.
fn split_delimited(pat: &str) -> Option<(&str, &str)> {
    let pat = pat.trim_start();
    let open = pat.chars().next()?;
    if open.is_alphanumeric() || open == '\\' || open.is_whitespace() {
        return None;
    }
    let close = match open {
        '(' => ')',
        '[' => ']',
        '{' => '}',
        '<' => '>',
        c => c,
    };
    let rest = &pat[open.len_utf8()..];
    let end = rest.rfind(close)?;
    let flags = &rest[end + close.len_utf8()..];
    if !flags.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    Some((&rest[..end], flags))
}

/// Compiles a pattern with the size limits every untrusted regex here gets.
pub fn compile_regex(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN {
        return Err(format!("pattern longer than {MAX_PATTERN} bytes"));
    }
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(64)
        .build()
        .map_err(|e| format!("regex does not compile: {}", first_line(&e.to_string())))
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .chars()
        .take(200)
        .collect()
}

/// A PHP `/…/flags` pattern as a Rust regex.
fn php_regex(param: &str) -> Result<Regex, Unsupported> {
    let (body, flags) = split_delimited(param).ok_or_else(|| {
        Unsupported::Malformed("must be a delimited pattern such as `/^[a-z]+$/`".into())
    })?;
    let mut prefix = String::new();
    for f in flags.chars() {
        match f {
            'i' | 'm' | 's' | 'x' | 'U' => prefix.push(f),
            'u' | 'D' => {}
            other => return Err(Unsupported::Ignored(format!("regex flag `{other}`"))),
        }
    }
    let pattern = if prefix.is_empty() {
        body.to_owned()
    } else {
        format!("(?{prefix}){body}")
    };
    compile_regex(&pattern).map_err(Unsupported::Ignored)
}

enum Unsupported {
    /// A known rule whose parameters make no sense: refuse.
    Malformed(String),
    /// Not supported here: ignore with a warning.
    Ignored(String),
}

impl RuleSet {
    /// Parses a variable's rules. Returns the set and one warning per ignored rule, or an
    /// error for a known rule with malformed parameters.
    pub fn parse(rules: &[String]) -> Result<(RuleSet, Vec<String>), RuleParseError> {
        let mut set = RuleSet::default();
        let mut warnings = Vec::new();
        for raw in rules {
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            match parse_one(raw) {
                Ok(Some(rule)) => {
                    set.numeric |= matches!(rule, Rule::Integer | Rule::Numeric);
                    set.rules.push(rule);
                }
                Ok(None) => {}
                Err(Unsupported::Ignored(why)) => {
                    warnings.push(format!("rule `{}` ignored: {why}", clip(raw)));
                }
                Err(Unsupported::Malformed(reason)) => {
                    return Err(RuleParseError {
                        rule: clip(raw),
                        reason,
                    });
                }
            }
        }
        Ok((set, warnings))
    }

    /// Whether the rules include `required`.
    pub fn required(&self) -> bool {
        self.rules.iter().any(|r| matches!(r, Rule::Required))
    }

    /// Checks `value` of variable `variable`.
    pub fn check(&self, variable: &str, value: &str) -> Result<(), RuleError> {
        let fail = |message: String| {
            Err(RuleError {
                variable: variable.to_owned(),
                message,
            })
        };
        if value.trim().is_empty() {
            if self.required() {
                return fail("is required".into());
            }
            return Ok(());
        }
        for rule in &self.rules {
            if let Some(msg) = self.violation(rule, value) {
                return fail(msg);
            }
        }
        Ok(())
    }

    fn violation(&self, rule: &Rule, v: &str) -> Option<String> {
        let size = || self.size(v);
        let unit = if self.numeric && numeric(v).is_some() {
            ""
        } else {
            " characters"
        };
        let bad = |ok: bool, msg: String| (!ok).then_some(msg);
        match rule {
            Rule::Required => None,
            Rule::Integer => bad(integer(v), "must be an integer".into()),
            Rule::Numeric => bad(numeric(v).is_some(), "must be a number".into()),
            Rule::Boolean => bad(
                matches!(v, "0" | "1" | "true" | "false"),
                "must be one of 0, 1, true, false".into(),
            ),
            Rule::Between(a, b) => bad(
                size() >= *a && size() <= *b,
                format!("must be between {}{unit} and {}{unit}", n(*a), n(*b)),
            ),
            Rule::Max(m) => bad(size() <= *m, format!("must be at most {}{unit}", n(*m))),
            Rule::Min(m) => bad(size() >= *m, format!("must be at least {}{unit}", n(*m))),
            Rule::Size(s) => bad(size() == *s, format!("must be exactly {}{unit}", n(*s))),
            Rule::Gt(m) => bad(size() > *m, format!("must be greater than {}{unit}", n(*m))),
            Rule::Gte(m) => bad(size() >= *m, format!("must be at least {}{unit}", n(*m))),
            Rule::Lt(m) => bad(size() < *m, format!("must be less than {}{unit}", n(*m))),
            Rule::Lte(m) => bad(size() <= *m, format!("must be at most {}{unit}", n(*m))),
            Rule::In(list) => bad(
                list.iter().any(|x| x == v),
                format!("must be one of: {}", list.join(", ")),
            ),
            Rule::NotIn(list) => bad(
                !list.iter().any(|x| x == v),
                format!("must not be one of: {}", list.join(", ")),
            ),
            Rule::Regex(re, src) => bad(re.is_match(v), format!("must match {src}")),
            Rule::NotRegex(re, src) => bad(!re.is_match(v), format!("must not match {src}")),
            Rule::Digits(d) => bad(
                all_digits(v) && v.len() == *d,
                format!("must be exactly {d} digits"),
            ),
            Rule::DigitsBetween(a, b) => bad(
                all_digits(v) && (*a..=*b).contains(&v.len()),
                format!("must be {a} to {b} digits"),
            ),
            Rule::Alpha => bad(
                v.chars().all(char::is_alphabetic),
                "may contain only letters".into(),
            ),
            Rule::AlphaNum => bad(
                v.chars().all(char::is_alphanumeric),
                "may contain only letters and digits".into(),
            ),
            Rule::AlphaDash => bad(
                v.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-'),
                "may contain only letters, digits, '-' and '_'".into(),
            ),
            Rule::Url => bad(url(v), "must be a URL (scheme://host…)".into()),
            Rule::StartsWith(list) => bad(
                list.iter().any(|p| v.starts_with(p.as_str())),
                format!("must start with one of: {}", list.join(", ")),
            ),
            Rule::EndsWith(list) => bad(
                list.iter().any(|p| v.ends_with(p.as_str())),
                format!("must end with one of: {}", list.join(", ")),
            ),
        }
    }

    /// Laravel's size: the number for numeric rule sets, else the length in characters.
    fn size(&self, v: &str) -> f64 {
        match (self.numeric, numeric(v)) {
            (true, Some(x)) => x,
            _ => v.chars().count() as f64,
        }
    }
}

fn n(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

fn parse_one(raw: &str) -> Result<Option<Rule>, Unsupported> {
    let (name, param) = match raw.split_once(':') {
        Some((n, p)) => (n.trim(), Some(p)),
        None => (raw, None),
    };
    let need = || param.ok_or_else(|| Unsupported::Malformed("needs parameters".into()));
    Ok(Some(match name {
        "nullable" | "string" | "present" | "sometimes" | "bail" | "filled" => return Ok(None),
        "required" => Rule::Required,
        "integer" | "int" => Rule::Integer,
        "numeric" => Rule::Numeric,
        "boolean" | "bool" => Rule::Boolean,
        "between" => {
            let (a, b) = two_numbers(need()?)?;
            Rule::Between(a, b)
        }
        "max" => Rule::Max(number(need()?)?),
        "min" => Rule::Min(number(need()?)?),
        "size" => Rule::Size(number(need()?)?),
        "gt" | "gte" | "lt" | "lte" => {
            let x = number(need()?).map_err(|_| {
                Unsupported::Ignored("only a numeric parameter is supported".into())
            })?;
            match name {
                "gt" => Rule::Gt(x),
                "gte" => Rule::Gte(x),
                "lt" => Rule::Lt(x),
                _ => Rule::Lte(x),
            }
        }
        "in" => Rule::In(csv(need()?)),
        "not_in" => Rule::NotIn(csv(need()?)),
        "starts_with" => Rule::StartsWith(csv(need()?)),
        "ends_with" => Rule::EndsWith(csv(need()?)),
        "regex" => {
            let p = need()?;
            Rule::Regex(Box::new(php_regex(p)?), clip(p.trim()))
        }
        "not_regex" => {
            let p = need()?;
            Rule::NotRegex(Box::new(php_regex(p)?), clip(p.trim()))
        }
        "digits" => Rule::Digits(count(need()?)?),
        "digits_between" => {
            let (a, b) = two_numbers(need()?)?;
            if a < 0.0 || b < a || b > 1e6 || a.fract() != 0.0 || b.fract() != 0.0 {
                return Err(Unsupported::Malformed("needs two counts a <= b".into()));
            }
            Rule::DigitsBetween(a as usize, b as usize)
        }
        "alpha" => Rule::Alpha,
        "alpha_num" => Rule::AlphaNum,
        "alpha_dash" => Rule::AlphaDash,
        "url" | "active_url" => Rule::Url,
        other => {
            return Err(Unsupported::Ignored(format!(
                "`{}` is not a supported rule",
                clip(other)
            )));
        }
    }))
}

fn number(p: &str) -> Result<f64, Unsupported> {
    numeric(p)
        .filter(|x| x.is_finite())
        .ok_or_else(|| Unsupported::Malformed(format!("`{}` is not a number", clip(p))))
}

fn count(p: &str) -> Result<usize, Unsupported> {
    let x = number(p)?;
    if !(0.0..=1e6).contains(&x) || x.fract() != 0.0 {
        return Err(Unsupported::Malformed("needs a count".into()));
    }
    Ok(x as usize)
}

fn two_numbers(p: &str) -> Result<(f64, f64), Unsupported> {
    let mut it = p.split(',');
    match (it.next(), it.next(), it.next()) {
        (Some(a), Some(b), None) => Ok((number(a)?, number(b)?)),
        _ => Err(Unsupported::Malformed("needs two numbers `a,b`".into())),
    }
}

/// PHP `str_getcsv`: comma separated, `"…"` quoting with `""` for a quote.
fn csv(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = p.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// PHP's `is_numeric`: optional surrounding whitespace, sign, decimal digits with an optional
/// fraction and exponent.
pub fn numeric(v: &str) -> Option<f64> {
    let t = v.trim_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let b = t.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - f;
    }
    if digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let e = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == e {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    t.parse::<f64>().ok()
}

/// `FILTER_VALIDATE_INT`: optional sign, no leading zeros, fits in 64 bits.
fn integer(v: &str) -> bool {
    let t = v.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    !digits.is_empty()
        && digits.bytes().all(|c| c.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && t.parse::<i64>().is_ok()
}

fn all_digits(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit())
}

fn url(v: &str) -> bool {
    let Some((scheme, rest)) = v.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    scheme_ok && !host.is_empty() && !v.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rules: &str) -> RuleSet {
        let (set, warnings) = RuleSet::parse(&split(rules)).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        set
    }

    fn msg(rules: &str, value: &str) -> String {
        set(rules).check("V", value).unwrap_err().to_string()
    }

    #[test]
    fn split_keeps_pipes_inside_regex() {
        assert_eq!(
            split("required|regex:/^(a|b)$/|max:3"),
            ["required", "regex:/^(a|b)$/", "max:3"]
        );
        assert_eq!(split("nullable||string|"), ["nullable", "string"]);
        assert_eq!(split("regex:/a|b"), ["regex:/a|b"]);
    }

    #[test]
    fn required_and_empty_values() {
        assert_eq!(msg("required|string", ""), "environment.V: is required");
        assert_eq!(msg("required|string", "  "), "environment.V: is required");
        assert!(set("nullable|string|max:3").check("V", "").is_ok());
        assert!(set("string|in:a,b").check("V", "").is_ok());
    }

    #[test]
    fn sizes_are_lengths_or_numbers() {
        assert_eq!(
            msg("required|string|between:3,15", "ab"),
            "environment.V: must be between 3 characters and 15 characters"
        );
        assert!(set("string|max:3").check("V", "héé").is_ok());
        assert_eq!(
            msg("required|integer|between:1,100", "101"),
            "environment.V: must be between 1 and 100"
        );
        assert!(set("numeric|min:0.5").check("V", "0.75").is_ok());
        assert_eq!(
            msg("numeric|max:10", "11"),
            "environment.V: must be at most 10"
        );
        assert_eq!(
            msg("numeric|gt:0", "0"),
            "environment.V: must be greater than 0"
        );
        assert!(set("size:2").check("V", "ab").is_ok());
    }

    #[test]
    fn types() {
        assert_eq!(msg("integer", "1.5"), "environment.V: must be an integer");
        assert_eq!(msg("integer", "007"), "environment.V: must be an integer");
        assert!(set("integer").check("V", "-42").is_ok());
        assert!(set("int").check("V", "42").is_ok());
        assert_eq!(msg("numeric", "0x1A"), "environment.V: must be a number");
        assert!(set("numeric").check("V", " 1e3 ").is_ok());
        for ok in ["0", "1", "true", "false"] {
            assert!(set("boolean").check("V", ok).is_ok());
        }
        assert_eq!(
            msg("boolean", "yes"),
            "environment.V: must be one of 0, 1, true, false"
        );
    }

    #[test]
    fn lists_and_patterns() {
        assert_eq!(
            msg("in:survival,creative", "hardcore"),
            "environment.V: must be one of: survival, creative"
        );
        assert!(set(r#"in:"a,b",c"#).check("V", "a,b").is_ok());
        assert!(set("not_in:root").check("V", "root").is_err());
        assert!(
            set(r"regex:/^([\w\d._-]+)(\.jar)$/")
                .check("V", "paper.jar")
                .is_ok()
        );
        assert_eq!(
            msg(r"regex:/^([\w\d._-]+)(\.jar)$/", "paper.zip"),
            r"environment.V: must match /^([\w\d._-]+)(\.jar)$/"
        );
        assert!(set("regex:/^(a|b)$/i").check("V", "B").is_ok());
        assert!(set("regex:(^[0-9]+$)").check("V", "12").is_ok());
        assert!(set("not_regex:/\\s/").check("V", "a b").is_err());
        assert!(set("digits_between:1,3").check("V", "1234").is_err());
        assert!(set("digits:4").check("V", "1234").is_ok());
        assert!(set("alpha_dash").check("V", "a-b_c1").is_ok());
        assert!(set("alpha_dash").check("V", "a b").is_err());
        assert!(set("alpha_num").check("V", "ab1").is_ok());
        assert!(set("url").check("V", "https://example.com/x").is_ok());
        assert!(set("url").check("V", "example.com").is_err());
        assert!(set("starts_with:a,b").check("V", "bx").is_ok());
        assert!(set("ends_with:.jar").check("V", "x.zip").is_err());
    }

    #[test]
    fn unknown_rules_warn_and_malformed_refuse() {
        let (_, w) = RuleSet::parse(&split("required|uuid|regex:/(?=a)/")).unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("uuid"));
        let e = RuleSet::parse(&split("max:abc")).unwrap_err();
        assert_eq!(e.to_string(), "rule `max:abc`: `abc` is not a number");
        assert!(RuleSet::parse(&split("between:5")).is_err());
        assert!(RuleSet::parse(&split("regex:abc")).is_err());
        assert!(RuleSet::parse(&split("max")).is_err());
    }

    #[test]
    fn huge_regex_is_refused_not_compiled() {
        let big = format!("regex:/{}/", "a{1000}".repeat(200));
        let (_, w) = RuleSet::parse(&[big]).unwrap();
        assert_eq!(w.len(), 1);
    }
}
