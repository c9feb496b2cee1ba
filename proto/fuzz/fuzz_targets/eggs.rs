//! Arbitrary bytes through egg import and every config-file parser. Besides "never panics,
//! never hangs": an imported egg passes its own check again and round-trips through our own
//! egg format; a structured file that parsed keeps parsing after the edits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::eggs::{self, Context, Edit, EditValue, ParserKind};

const PARSERS: [ParserKind; 6] = [
    ParserKind::Properties,
    ParserKind::Yaml,
    ParserKind::Json,
    ParserKind::Ini,
    ParserKind::Xml,
    ParserKind::File,
];

fuzz_target!(|data: &[u8]| {
    if let Ok(imported) = eggs::import(data) {
        let json = serde_json::to_vec(&imported.egg).expect("stored eggs serialise");
        let again = eggs::import(&json).expect("our own format re-imports");
        assert_eq!(again.egg, imported.egg);
    }
    // First line: edits as `key=value` pairs separated by `;`; the rest: the file.
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (head, file) = data.split_at(split);
    let edits: Vec<Edit> = String::from_utf8_lossy(head)
        .split(';')
        .take(8)
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, "{{server.build.default.port}}"));
            let (v, if_value) = match v.split_once('?') {
                Some((v, c)) => (v, Some(c.to_owned())),
                None => (v, None),
            };
            Edit {
                key: k.to_owned(),
                value: EditValue::Text(v.to_owned()),
                if_value,
            }
        })
        .collect();
    let ctx = Context {
        ip: "0.0.0.0".into(),
        port: 25565,
        memory_mib: 1024,
        env: vec![("A".into(), "b".into())],
        docker_interface: None,
    };
    for p in PARSERS {
        let before = eggs::apply(p, file, &[], &ctx).is_ok();
        if let Ok((out, _)) = eggs::apply(p, file, &edits, &ctx) {
            if before && matches!(p, ParserKind::Json | ParserKind::Yaml | ParserKind::Xml) {
                assert!(
                    eggs::apply(p, &out, &[], &ctx).is_ok(),
                    "{p:?} output no longer parses"
                );
            }
        }
    }
});
