//! Property tests for eggs: no input panics import or any config parser, edits keep
//! structured files parseable, and applying the same edits twice changes nothing more.

use proptest::prelude::*;
use proto::eggs::{self, Context, Edit, EditValue, ParserKind};

const PARSERS: [ParserKind; 6] = [
    ParserKind::Properties,
    ParserKind::Yaml,
    ParserKind::Json,
    ParserKind::Ini,
    ParserKind::Xml,
    ParserKind::File,
];

fn ctx() -> Context {
    Context {
        ip: "10.0.0.1".into(),
        port: 25565,
        memory_mib: 512,
        env: vec![("A".into(), "é\"'\n".into())],
        docker_interface: None,
    }
}

/// Text with the characters every format treats specially.
fn messy() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-z0-9 \\t\\n\\r#;:=\\[\\]{}<>/&\"'\\\\.,*|>!%@`é€-]{0,200}")
        .unwrap()
}

fn key() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-z0-9.*\\[\\]_ -]{0,20}").unwrap()
}

fn value() -> impl Strategy<Value = EditValue> {
    prop_oneof![
        any::<bool>().prop_map(EditValue::Bool),
        any::<i32>().prop_map(|n| EditValue::Number(n.into())),
        proptest::string::string_regex(
            "[a-z0-9 \\n'\"{}.:<>&$-]{0,20}|\\{\\{env.A\\}\\}|\\[id='x'\\]"
        )
        .unwrap()
        .prop_map(EditValue::Text),
    ]
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    proptest::collection::vec(
        (
            key(),
            value(),
            proptest::option::of(prop_oneof![
                Just("regex:^(.*)$".to_string()),
                Just("regex:(".to_string()),
                "[a-z]{0,3}"
            ]),
        )
            .prop_map(|(key, value, if_value)| Edit {
                key,
                value,
                if_value,
            }),
        0..6,
    )
}

/// A small JSON-ish document tree, rendered as JSON text or YAML text.
fn json_doc() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i32>().prop_map(|n| n.into()),
        "[a-z0-9 :#'\"é]{0,8}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn yaml_of(v: &serde_json::Value, indent: usize, out: &mut String) {
    use serde_json::Value;
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                match x {
                    Value::Object(n) if !n.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        yaml_of(x, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        yaml_of(x, indent + 2, out);
                    }
                    _ => out.push_str(&format!("{pad}{k}: {x}  # c\n")),
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for x in a {
                out.push_str(&format!("{pad}- {x}\n"));
            }
        }
        other => out.push_str(&format!("{pad}{other}\n")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn import_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = eggs::import(&bytes);
    }

    #[test]
    fn import_never_panics_on_messy_text(text in messy()) {
        let _ = eggs::import(text.as_bytes());
        let _ = eggs::import(format!("meta:\n  version: PLCN_v3\n{text}").as_bytes());
    }

    #[test]
    fn import_never_panics_on_egg_shaped_json(doc in json_doc(), field in prop_oneof![
        Just("docker_images"), Just("config"), Just("variables"), Just("scripts"),
        Just("startup_commands"), Just("startup"), Just("name"), Just("features"),
    ]) {
        let base = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/eggs/ptdl_v2.json")).unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&base).unwrap();
        v[field] = doc.clone();
        let _ = eggs::import(&serde_json::to_vec(&v).unwrap());
        v["config"] = serde_json::json!({"files": doc.to_string(), "startup": doc.clone(), "stop": doc});
        let _ = eggs::import(&serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn parsers_never_panic(text in messy(), edits in edits()) {
        for p in PARSERS {
            let _ = eggs::apply(p, text.as_bytes(), &edits, &ctx());
        }
    }

    #[test]
    fn parsers_never_panic_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300), edits in edits()) {
        for p in PARSERS {
            let _ = eggs::apply(p, &bytes, &edits, &ctx());
        }
    }

    #[test]
    fn json_stays_json_and_idempotent(doc in json_doc(), edits in edits()) {
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let (once, _) = eggs::apply(ParserKind::Json, text.as_bytes(), &edits, &ctx()).unwrap();
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&once).is_ok(), "{}", String::from_utf8_lossy(&once));
        let unconditional: Vec<Edit> = edits
            .into_iter()
            .filter(|e| e.if_value.is_none() && !e.key.contains('*'))
            .collect();
        let (a, _) = eggs::apply(ParserKind::Json, text.as_bytes(), &unconditional, &ctx()).unwrap();
        let (b, _) = eggs::apply(ParserKind::Json, &a, &unconditional, &ctx()).unwrap();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn yaml_stays_yaml_and_idempotent(doc in json_doc(), edits in edits()) {
        let mut text = String::new();
        yaml_of(&doc, 0, &mut text);
        // A wildcard edit applied before another edit creates the keys it would match is
        // order-dependent (as in Wings), so idempotence is checked without wildcards.
        let unconditional: Vec<Edit> = edits
            .into_iter()
            .filter(|e| e.if_value.is_none() && !e.key.contains('*'))
            .collect();
        if let Ok((a, _)) = eggs::apply(ParserKind::Yaml, text.as_bytes(), &unconditional, &ctx()) {
            prop_assert!(eggs::apply(ParserKind::Yaml, &a, &[], &ctx()).is_ok(), "{}", String::from_utf8_lossy(&a));
            let (b, _) = eggs::apply(ParserKind::Yaml, &a, &unconditional, &ctx()).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
        }
    }

    #[test]
    fn line_formats_idempotent_and_never_gain_lines_from_values(text in messy(), edits in edits()) {
        let unconditional: Vec<Edit> = edits.into_iter().filter(|e| e.if_value.is_none()).collect();
        for p in [ParserKind::Properties, ParserKind::Ini] {
            let (a, _) = eggs::apply(p, text.as_bytes(), &unconditional, &ctx()).unwrap();
            let (b, _) = eggs::apply(p, &a, &unconditional, &ctx()).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b), "{:?}", p);
            // Each edit adds at most one line (a key, or a section and a key).
            let added = a.iter().filter(|&&c| c == b'\n').count() as isize
                - text.bytes().filter(|&c| c == b'\n').count() as isize;
            prop_assert!(added <= 3 * unconditional.len() as isize + 1, "{:?} {}", p, added);
        }
    }
}

/// Found by the property above: a `.properties` line that is a key alone (`*`) got the
/// value glued to the key (`*false`), and the next start appended a second line.
#[test]
fn a_key_without_separator_gets_one() {
    let edits = [Edit {
        key: "*".into(),
        value: EditValue::Bool(false),
        if_value: None,
    }];
    let (a, _) = eggs::apply(ParserKind::Properties, b"*\n", &edits, &ctx()).unwrap();
    assert_eq!(String::from_utf8_lossy(&a), "*=false\n");
    let (b, _) = eggs::apply(ParserKind::Properties, &a, &edits, &ctx()).unwrap();
    assert_eq!(a, b);
}
