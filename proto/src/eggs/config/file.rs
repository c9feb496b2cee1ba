//! The `file` parser: every line that starts with `match` is replaced by the value (the
//! whole new line, as in Wings; an empty `match` replaces every line, which eggs use for
//! one-line files). Lines keep their terminators; nothing is appended when no
//! line matches. When several edits match one line, the first wins (Wings would write them
//! all, run together). A value with a line break is refused: it would add lines.

use super::{Prepared, Report, lines_with_ends, multiline};

pub(super) fn apply(text: &str, edits: &[Prepared<'_>], report: &mut Report) -> String {
    let usable: Vec<&Prepared<'_>> = edits
        .iter()
        .filter(|e| {
            let bad = multiline(&e.value.as_text());
            if bad {
                e.skip(report, "value contains a line break");
            }
            !bad
        })
        .collect();
    let mut out = String::with_capacity(text.len());
    for (line, end) in lines_with_ends(text) {
        let hit = usable
            .iter()
            .find(|e| line.starts_with(e.key))
            .and_then(|e| e.new_text(Some(line)));
        out.push_str(hit.as_deref().unwrap_or(line));
        out.push_str(end);
    }
    out
}
