//! Egg import: our fixtures in every supported format, hostile eggs, variable rules, and the
//! `eggConfig` extensions on the wire.

use proto::eggs::{self, *};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/eggs/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn text(s: &str) -> EditValue {
    EditValue::Text(s.into())
}

fn edit(key: &str, value: EditValue) -> Edit {
    Edit {
        key: key.into(),
        value,
        if_value: None,
    }
}

fn var(name: &str, env: &str, default: &str, view: bool, edit: bool, rules: &[&str]) -> Variable {
    Variable {
        name: name.into(),
        env: env.into(),
        default: default.into(),
        description: String::new(),
        user_viewable: view,
        user_editable: edit,
        rules: rules.iter().map(|r| r.to_string()).collect(),
    }
}

#[test]
fn ptdl_v2_every_field() {
    let imported = import(&fixture("ptdl_v2.json")).unwrap();
    assert_eq!(imported.format, SourceFormat::PtdlV2);
    let egg = &imported.egg;
    assert_eq!(egg.name, "Test Paper");
    assert_eq!(egg.author, "ops@example.com");
    assert_eq!(
        egg.description,
        "A test egg in the Pterodactyl v2 export format."
    );
    assert_eq!(egg.features, ["eula", "java_version"]);
    assert_eq!(
        egg.images,
        [
            EggImage {
                label: "Java 21".into(),
                image: "ghcr.io/example/yolks:java_21".into()
            },
            EggImage {
                label: "Java 17".into(),
                image: "ghcr.io/example/yolks:java_17".into()
            },
        ]
    );
    assert_eq!(egg.default_image().label, "Java 21");
    assert_eq!(
        egg.image("ghcr.io/example/yolks:java_17").unwrap().label,
        "Java 17"
    );
    assert_eq!(
        egg.startups,
        [Startup {
            name: "Default".into(),
            command: "java -Xms128M -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}} --port {{SERVER_PORT}}".into()
        }]
    );
    assert_eq!(egg.stop, Some(Stop::Command("stop".into())));
    assert_eq!(egg.done, [")! For help, type "]);
    let mut jar = var(
        "Server Jar File",
        "SERVER_JARFILE",
        "server.jar",
        true,
        true,
        &["required", r"regex:/^([\w\d._-]+)(\.jar)$/", "max:80"],
    );
    jar.description = "The jar to run.".into();
    let mut players = var(
        "Max Players",
        "MAX_PLAYERS",
        "20",
        true,
        false,
        &["required", "integer", "between:1,500"],
    );
    players.description = "Player slots.".into();
    let mode = var(
        "Game Mode",
        "GAMEMODE",
        "survival",
        false,
        false,
        &[
            "required",
            "string",
            "in:survival,creative,adventure",
            "regex:/^(survival|creative|adventure)$/",
        ],
    );
    let mut build = var(
        "Build",
        "BUILD_NUMBER",
        "latest",
        true,
        true,
        &["nullable", "string", "max:20", "uuid"],
    );
    build.description = "Build number or latest.".into();
    assert_eq!(egg.variables, [jar, players, mode, build]);
    assert_eq!(
        imported.warnings,
        ["variables.BUILD_NUMBER: rule `uuid` ignored: `uuid` is not a supported rule"]
    );
    assert_eq!(
        egg.config_files,
        [
            ConfigFile {
                path: "server.properties".into(),
                parser: ParserKind::Properties,
                edits: vec![
                    edit("server-ip", text("0.0.0.0")),
                    edit("server-port", text("{{server.build.default.port}}")),
                    edit("query.port", text("{{server.build.default.port}}")),
                    edit("max-players", text("{{env.MAX_PLAYERS}}")),
                ],
            },
            ConfigFile {
                path: "config/proxy.yml".into(),
                parser: ParserKind::Yaml,
                edits: vec![
                    edit(
                        "listeners[0].host",
                        text("0.0.0.0:{{server.build.default.port}}")
                    ),
                    Edit {
                        key: "servers.*.address".into(),
                        value: text("{{config.docker.interface}}$2"),
                        if_value: Some(r"regex:^(127\.0\.0\.1|localhost)(:\d{1,5})?$".into()),
                    },
                    edit("online_mode", EditValue::Bool(true)),
                    edit("player_limit", EditValue::Number(50.into())),
                ],
            },
        ]
    );
    assert_eq!(
        egg.install,
        Some(InstallScript {
            image: "ghcr.io/example/installers:alpine".into(),
            entrypoint: "ash".into(),
            script: "#!/bin/ash\ncd /mnt/server\necho installed > installed.txt\n".into(),
        })
    );
}

#[test]
fn plcn_v3_yaml_every_field() {
    let imported = import(&fixture("plcn_v3.yaml")).unwrap();
    assert_eq!(imported.format, SourceFormat::PlcnV3);
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
    let egg = &imported.egg;
    assert_eq!(egg.name, "Space Survival");
    assert!(egg.description.starts_with("PLCN_v3 YAML export"));
    assert_eq!(egg.features, ["steam_disk_space"]);
    let labels: Vec<_> = egg.images.iter().map(|i| i.label.as_str()).collect();
    assert_eq!(labels, ["Wine Latest", "Wine Staging"]);
    let names: Vec<_> = egg.startups.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Default", "With cheats"]);
    assert!(
        egg.startup(Some("With cheats"))
            .unwrap()
            .command
            .ends_with("-cheats")
    );
    assert_eq!(egg.stop, Some(Stop::Signal("SIGINT".into())));
    assert_eq!(egg.done, ["Game ready", "\u{1b}[32mGame ready"]);
    let parsers: Vec<_> = egg
        .config_files
        .iter()
        .map(|f| (f.path.as_str(), f.parser))
        .collect();
    assert_eq!(
        parsers,
        [
            ("Config/Server.ini", ParserKind::Ini),
            ("Saves/Dedicated.xml", ParserKind::Xml),
            ("port.txt", ParserKind::File),
            ("extra.yml", ParserKind::Yaml),
        ]
    );
    assert_eq!(
        egg.config_files[1].edits[2],
        edit("MyConfigDedicated.Mods.Mod", text("[id='42']"))
    );
    assert_eq!(egg.config_files[2].edits[0].key, "");
    assert_eq!(
        egg.variables,
        [
            {
                let mut v = var(
                    "Max Players",
                    "MAX_PLAYERS",
                    "8",
                    true,
                    true,
                    &["required", "numeric", "between:1,64"],
                );
                v.description = "Player slots".into();
                v
            },
            var(
                "Enable PvP",
                "PVP",
                "false",
                true,
                true,
                &["required", "boolean"]
            ),
        ]
    );
    let install = egg.install.as_ref().unwrap();
    assert_eq!(install.image, "ghcr.io/example/installers:debian");
    assert_eq!(install.entrypoint, "bash");
    assert!(install.script.starts_with("#!/bin/bash\nmkdir -p"));
}

#[test]
fn ptdl_v1_plcn_v1_and_our_own() {
    let v1 = import(&fixture("ptdl_v1.json")).unwrap();
    assert_eq!(v1.format, SourceFormat::PtdlV1);
    assert_eq!(v1.egg.images.len(), 2);
    assert_eq!(v1.egg.images[0].label, "quay.io/example/game:latest");
    assert_eq!(v1.egg.stop, Some(Stop::Signal("SIGINT".into())));
    assert_eq!(v1.egg.done, ["Server started"]);
    assert_eq!(
        v1.egg.install, None,
        "an empty script means no install step"
    );
    assert!(v1.egg.config_files.is_empty());

    let p1 = import(&fixture("plcn_v1.json")).unwrap();
    assert_eq!(p1.format, SourceFormat::PlcnV1);
    assert_eq!(p1.egg.stop, Some(Stop::Signal("SIGTERM".into())));
    assert_eq!(p1.egg.done, ["listening on", "ready"]);
    assert_eq!(
        p1.egg.variables[0].rules,
        ["required", "string", r"regex:/^[\w ]+$/", "max:32"]
    );
    assert_eq!(p1.egg.config_files[0].parser, ParserKind::Json);
    assert_eq!(
        p1.egg.config_files[0].edits[1],
        edit("net.public", EditValue::Bool(true))
    );

    let own = import(&fixture("ctrl.json")).unwrap();
    assert_eq!(own.format, SourceFormat::Ctrl);
    assert_eq!(own.egg.config_files[0].path, "game.properties");
    // Our own format round-trips through its JSON form.
    let json = serde_json::to_vec(&own.egg).unwrap();
    assert_eq!(import(&json).unwrap().egg, own.egg);
}

#[test]
fn unknown_version_is_config_invalid() {
    let e = import(br#"{"meta":{"version":"PTDL_v9"},"name":"x"}"#).unwrap_err();
    assert_eq!(e.code(), proto::ErrorCode::ConfigInvalid);
    assert_eq!(
        e.to_string(),
        "meta.version `PTDL_v9` is not a known egg format (PTDL_v1, PTDL_v2, PLCN_v1, PLCN_v2, PLCN_v3)"
    );
    assert!(matches!(
        import(br#"{"meta":{},"name":"x"}"#),
        Err(ImportError::UnknownVersion(_))
    ));
    assert!(matches!(import(b"{not json"), Err(ImportError::Syntax(_))));
    assert!(matches!(import(b"- a\n- b\n"), Err(ImportError::Field(_))));
}

fn ptdl_with(patch: impl FnOnce(&mut serde_json::Value)) -> Result<Imported, ImportError> {
    let mut v: serde_json::Value = serde_json::from_slice(&fixture("ptdl_v2.json")).unwrap();
    patch(&mut v);
    import(&serde_json::to_vec(&v).unwrap())
}

fn files_with(files: serde_json::Value) -> Result<Imported, ImportError> {
    ptdl_with(|v| v["config"]["files"] = serde_json::Value::String(files.to_string()))
}

#[test]
fn hostile_config_paths() {
    let e = files_with(
        serde_json::json!({"../../etc/passwd": {"parser": "file", "find": {"root": "x"}}}),
    )
    .unwrap_err();
    assert_eq!(e.code(), proto::ErrorCode::ConfigInvalid);
    assert!(e.to_string().contains("must not contain `..`"), "{e}");
    assert!(files_with(serde_json::json!({"a/../../b": {"parser": "file", "find": {}}})).is_err());
    assert!(files_with(serde_json::json!({"a\u{0}b": {"parser": "file", "find": {}}})).is_err());
    assert!(files_with(serde_json::json!({"a\\..\\b": {"parser": "file", "find": {}}})).is_err());
    // An absolute path names a file under the server root, as in Wings: neutralised.
    let ok =
        files_with(serde_json::json!({"/etc/passwd": {"parser": "file", "find": {}}})).unwrap();
    assert_eq!(ok.egg.config_files[0].path, "etc/passwd");
    let e = files_with(serde_json::json!({"x.cfg": {"parser": "toml", "find": {}}})).unwrap_err();
    assert!(e.to_string().contains("`toml` is not supported"), "{e}");
}

#[test]
fn hostile_install_and_limits() {
    let e = ptdl_with(|v| v["scripts"]["installation"]["privileged"] = true.into()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "scripts.installation.privileged: is not supported: install containers run with the same confinement as servers"
    );
    let e = ptdl_with(|v| v["scripts"]["installation"]["entrypoint"] = "bash -c 'id'".into())
        .unwrap_err();
    assert!(e.to_string().starts_with("install.entrypoint"), "{e}");
    let e =
        ptdl_with(|v| v["scripts"]["installation"]["container"] = "Not A Ref".into()).unwrap_err();
    assert!(e.to_string().starts_with("install.image"), "{e}");
    let e = ptdl_with(|v| v["name"] = "x".repeat(200).into()).unwrap_err();
    assert_eq!(e.to_string(), "name: must be at most 128 bytes");
    let e = ptdl_with(|v| {
        let one = v["variables"][0].clone();
        v["variables"] = (0..200)
            .map(|i| {
                let mut x = one.clone();
                x["env_variable"] = format!("V{i}").into();
                x
            })
            .collect();
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "variables: at most 128 variables");
    let e = ptdl_with(|v| v["variables"][0]["env_variable"] = "SERVER_PORT".into()).unwrap_err();
    assert!(e.to_string().contains("set by the agent"), "{e}");
    let e = ptdl_with(|v| v["variables"][0]["env_variable"] = "A-B".into()).unwrap_err();
    assert!(e.to_string().starts_with("variables[0].env"), "{e}");
    let e = ptdl_with(|v| v["variables"][1]["rules"] = "required|between:5".into()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "variables.MAX_PLAYERS.rules: rule `between:5`: needs two numbers `a,b`"
    );
    let e = ptdl_with(|v| v["config"]["stop"] = "say bye\nop me".into()).unwrap_err();
    assert!(e.to_string().starts_with("stop.command"), "{e}");
    let huge = vec![b' '; check::MAX_EGG_BYTES + 1];
    let e = import(&huge).unwrap_err();
    assert_eq!(e.code(), proto::ErrorCode::PayloadTooLarge);
    let bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n";
    assert!(
        import(bomb.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("aliases")
    );
}

#[test]
fn startup_placeholders() {
    let ok = ptdl_with(|v| v["startup"] = "./run {{UNDEFINED_THING}} {{SERVER_JARFILE}}".into())
        .unwrap();
    assert!(ok.warnings.iter().any(|w| w.contains("UNDEFINED_THING")));
    assert_eq!(
        eggs::startup_command(&ok.egg, None).unwrap(),
        "./run  {{SERVER_JARFILE}}"
    );
    let e = ptdl_with(|v| v["startup"] = "./run {{BROKEN]".into()).unwrap_err();
    assert!(e.to_string().starts_with("startups[0].command"), "{e}");
}

#[test]
fn environment_checks_rules_and_fills_defaults() {
    let egg = import(&fixture("ptdl_v2.json")).unwrap().egg;
    let env = eggs::environment(&egg, &[("MAX_PLAYERS".into(), "64".into())]).unwrap();
    assert_eq!(
        env,
        [
            ("SERVER_JARFILE".to_string(), "server.jar".to_string()),
            ("MAX_PLAYERS".into(), "64".into()),
            ("GAMEMODE".into(), "survival".into()),
            ("BUILD_NUMBER".into(), "latest".into()),
        ]
    );
    let e = eggs::environment(&egg, &[("MAX_PLAYERS".into(), "501".into())]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "environment.MAX_PLAYERS: must be between 1 and 500"
    );
    let e = eggs::environment(&egg, &[("SERVER_JARFILE".into(), "x.zip".into())]).unwrap_err();
    assert_eq!(e.variable, "SERVER_JARFILE");
    let e = eggs::environment(&egg, &[("GAMEMODE".into(), "".into())]).unwrap_err();
    assert_eq!(e.to_string(), "environment.GAMEMODE: is required");
    let e = eggs::environment(&egg, &[("PATH".into(), "/tmp".into())]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "environment.PATH: is not a variable of this egg"
    );
}

const CREATE: &str = r#"{"id":"m1","type":"command","timestamp":"2025-01-23T10:00:00Z","agentId":"a1",
 "action":"create_server","payload":{"serverId":"s1","eggConfig":{
  "name":"paper","image":"ghcr.io/example/yolks:java_21","ports":{"25565":25565},
  "environment":{"SERVER_JARFILE":"server.jar"},"limits":{"memory":"1g","cpu":"1","disk":"1g"},
  "startup":"java -jar {{SERVER_JARFILE}}","stop":{"command":"stop"},
  "install":{"image":"ghcr.io/example/installers:alpine","entrypoint":"ash","script":"echo hi\n"},
  "configFiles":[{"path":"server.properties","parser":"properties",
     "edits":[{"match":"server-port","value":"{{server.allocations.default.port}}"},
              {"match":"enable-query","value":true},
              {"match":"max","value":20,"ifValue":"10"}]}],
  "done":[")! For help, type "]}}}"#;

fn egg_of(text: &str) -> proto::EggConfig<'static> {
    let msg = proto::decode(text.as_bytes()).unwrap();
    match msg {
        proto::Message::Command(c) => match c.action {
            proto::Action::CreateServer(cs) => *cs.egg_config,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn wire_extensions_decode_and_validate() {
    let egg = egg_of(CREATE);
    proto::validate::egg(&egg).unwrap();
    assert_eq!(egg.done, [")! For help, type "]);
    assert_eq!(egg.install.as_ref().unwrap().entrypoint, "ash");
    let edits = &egg.config_files[0].edits;
    assert_eq!(edits[1].value, EditValue::Bool(true));
    assert_eq!(edits[2].value, EditValue::Number(20.into()));
    assert_eq!(edits[2].if_value.as_deref(), Some("10"));
    // serde_json agrees with the zero-copy decoder, and re-encoding keeps the fields.
    let v: serde_json::Value = serde_json::from_str(CREATE).unwrap();
    let inner = v["payload"]["eggConfig"].to_string();
    let via_json: proto::EggConfig = serde_json::from_str(&inner).unwrap();
    assert_eq!(via_json, egg);
    let encoded = serde_json::to_vec(&egg).unwrap();
    let again: proto::EggConfig = serde_json::from_slice(&encoded).unwrap();
    assert_eq!(again, egg);
}

#[test]
fn wire_extensions_refuse_hostile_values() {
    let bad = |from: &str, to: &str| {
        let text = CREATE.replace(from, to);
        assert_ne!(text, CREATE, "{from}");
        let egg = egg_of(&text);
        let e = proto::validate::egg(&egg).unwrap_err();
        assert_eq!(e.code(), proto::ErrorCode::ConfigInvalid);
        e.to_string()
    };
    assert!(
        bad(
            r#""path":"server.properties""#,
            r#""path":"../server.properties""#
        )
        .starts_with("eggConfig.configFiles[0].path")
    );
    assert!(
        bad(
            r#""path":"server.properties""#,
            r#""path":"/server.properties""#
        )
        .contains("must be normalised")
    );
    assert!(
        bad(r#""entrypoint":"ash""#, r#""entrypoint":"ash -c id""#)
            .starts_with("eggConfig.install.entrypoint")
    );
    assert!(
        bad(r#""done":[")! For help, type "]"#, r#""done":["a\nb"]"#)
            .starts_with("eggConfig.done[0]")
    );
    assert!(
        bad(r#""ifValue":"10""#, r#""ifValue":"regex:(""#)
            .starts_with("eggConfig.configFiles[0].edits[2].ifValue")
    );
    // Unknown fields inside the extensions are refused at decode (no "privileged").
    let text = CREATE.replace(
        r#""entrypoint":"ash","#,
        r#""entrypoint":"ash","privileged":true,"#,
    );
    assert!(proto::decode(text.as_bytes()).is_err());
}
