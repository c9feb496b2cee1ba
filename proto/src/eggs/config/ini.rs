//! INI files: `section.key` sets `key` in `[section]`, a bare `key` sets it before the first
//! section; `[Section Name].key` brackets a section name that contains dots (Unreal's
//! `[/Script/Engine.GameSession]`). After the section, the rest is the key (Wings' split).
//! Existing values are replaced in place; missing keys are added at the end of their section
//! (a missing section at the end of the file) with the section's `=` spacing.

use super::{Prepared, Report, lines_with_ends, multiline, newline_of};

pub(super) fn apply(text: &str, edits: &[Prepared<'_>], report: &mut Report) -> String {
    let mut out = text.to_owned();
    for edit in edits {
        if multiline(&edit.value.as_text()) {
            edit.skip(report, "value contains a line break");
            continue;
        }
        let (section, key) = split_path(edit.key);
        let key = key.trim();
        let section = section.map(|s| s.trim().to_owned());
        let key_ok =
            !key.is_empty() && !key.contains(['=', ':']) && !key.starts_with(['[', ';', '#']);
        if !key_ok || section.as_deref().is_some_and(|s| s.contains(']')) {
            edit.skip(report, "not a key an INI file can hold");
            continue;
        }
        out = apply_one(&out, section.as_deref(), key, edit);
    }
    out
}

/// `a.b.c` → (`a`, `b.c`); `[a.b].c` → (`a.b`, `c`); `c` → (none, `c`).
fn split_path(path: &str) -> (Option<String>, String) {
    let mut section = String::new();
    let mut depth = 0usize;
    for (i, c) in path.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => return (Some(section), path[i + 1..].to_owned()),
            c => section.push(c),
        }
    }
    (None, section)
}

struct Line<'a> {
    start: usize,
    body: &'a str,
    end: &'a str,
}

fn apply_one(text: &str, section: Option<&str>, key: &str, edit: &Prepared<'_>) -> String {
    let lines: Vec<Line<'_>> = {
        let mut at = 0;
        lines_with_ends(text)
            .map(|(body, end)| {
                let l = Line {
                    start: at,
                    body,
                    end,
                };
                at += body.len() + end.len();
                l
            })
            .collect()
    };
    let mut current: Option<&str> = None;
    let mut in_target = section.is_none();
    let mut last_in_section: Option<usize> = None;
    let mut seen_section = section.is_none();
    let mut spacing = "=";
    let mut splices = Vec::new();
    let mut found = false;
    for (i, line) in lines.iter().enumerate() {
        let t = line.body.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            current = Some(name.trim());
            in_target = section == current;
            seen_section |= in_target;
            continue;
        }
        if !in_target {
            continue;
        }
        if section.is_none() && current.is_some() {
            continue;
        }
        if !t.is_empty() && !t.starts_with([';', '#']) {
            last_in_section = Some(i);
        }
        let Some((k, v_start, sp)) = key_value(line.body) else {
            continue;
        };
        spacing = sp;
        if k != key {
            continue;
        }
        found = true;
        let raw = line.body[v_start..].trim_end();
        let from = line.start + v_start;
        // INI readers trim values, so surrounding blanks could not be read back anyway.
        if let Some(new) = edit.new_text(Some(raw)) {
            splices.push((from..from + raw.len(), new.trim().to_owned()));
        }
    }
    if found {
        return super::tree::splice(text, splices);
    }
    let Some(new) = edit.new_text(None) else {
        return text.to_owned();
    };
    let nl = newline_of(text);
    let entry = format!("{key}{spacing}{}", new.trim());
    match (seen_section, last_in_section) {
        (true, Some(i)) => {
            let l = &lines[i];
            let at = l.start + l.body.len() + l.end.len();
            let insert = if l.end.is_empty() {
                format!("{nl}{entry}")
            } else {
                format!("{entry}{}", l.end)
            };
            super::tree::splice(text, vec![(at..at, insert)])
        }
        (true, None) => insert_after_header(text, &lines, section, &entry, nl),
        (false, _) => {
            let mut out = text.to_owned();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push_str(nl);
            }
            if !out.is_empty() {
                out.push_str(nl);
            }
            out.push_str(&format!("[{}]{nl}{entry}{nl}", section.unwrap_or_default()));
            out
        }
    }
}

/// Inserts a key into a section that has none yet (right after its header), or at the top
/// of the file for the sectionless part.
fn insert_after_header(
    text: &str,
    lines: &[Line<'_>],
    section: Option<&str>,
    entry: &str,
    nl: &str,
) -> String {
    let Some(section) = section else {
        return format!("{entry}{nl}{text}");
    };
    let header = lines.iter().find(|l| {
        l.body
            .trim()
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|n| n.trim() == section)
    });
    match header {
        Some(l) => {
            let at = l.start + l.body.len();
            let end = if l.end.is_empty() { nl } else { l.end };
            super::tree::splice(
                text,
                vec![(at..at + l.end.len(), format!("{end}{entry}{end}"))],
            )
        }
        None => format!("{text}{nl}[{section}]{nl}{entry}{nl}"),
    }
}

/// `key<sp>=<sp>value` → (key, value offset, the `=` with its spacing).
fn key_value(line: &str) -> Option<(&str, usize, &'static str)> {
    let t = line.trim_start();
    if t.is_empty() || t.starts_with([';', '#', '[']) {
        return None;
    }
    let eq = line.find(['=', ':'])?;
    let key = line[..eq].trim();
    let before = &line[..eq];
    let after = &line[eq + 1..];
    let spacing = if before.ends_with([' ', '\t']) || after.starts_with([' ', '\t']) {
        " = "
    } else {
        "="
    };
    let v_start = eq + 1 + (after.len() - after.trim_start().len());
    Some((key, v_start, spacing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_split() {
        assert_eq!(split_path("port"), (None, "port".into()));
        assert_eq!(
            split_path("NETWORK.server_port"),
            (Some("NETWORK".into()), "server_port".into())
        );
        assert_eq!(split_path("a.b.c"), (Some("a".into()), "b.c".into()));
        assert_eq!(
            split_path("[/Script/Astro.AstroServerSettings].PublicIP"),
            (
                Some("/Script/Astro.AstroServerSettings".into()),
                "PublicIP".into()
            )
        );
    }
}
