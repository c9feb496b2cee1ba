//! Config-file edits: each parser on a realistic file, placeholders from the explicit
//! context only, and the report of what was left undone.

use proto::eggs::{self, Context, Edit, EditValue, ParserKind, Report};

fn ctx() -> Context {
    Context {
        ip: "0.0.0.0".into(),
        port: 25570,
        memory_mib: 1024,
        env: vec![
            ("MAX_PLAYERS".into(), "42".into()),
            ("MOTD".into(), "Hi § there".into()),
        ],
        docker_interface: Some("172.18.0.1".into()),
    }
}

fn e(key: &str, value: &str) -> Edit {
    Edit {
        key: key.into(),
        value: EditValue::Text(value.into()),
        if_value: None,
    }
}

fn run(parser: ParserKind, original: &str, edits: &[Edit]) -> (String, Report) {
    let (bytes, report) = eggs::apply(parser, original.as_bytes(), edits, &ctx()).unwrap();
    (String::from_utf8(bytes).unwrap(), report)
}

#[test]
fn properties_keeps_comments_and_appends() {
    let original = "#Minecraft server properties\n#Mon Jan 01 2025\nenable-query=false\n# the port\nserver-port=25565\nmotd=A Minecraft Server\nserver-ip=\n";
    let (out, report) = run(
        ParserKind::Properties,
        original,
        &[
            e("server-port", "{{server.allocations.default.port}}"),
            e("server-ip", "{{server.build.default.ip}}"),
            e("query.port", "{{server.build.default.port}}"),
            e("motd", "{{env.MOTD}}"),
            e("max-players", "{{server.environment.MAX_PLAYERS}}"),
        ],
    );
    assert_eq!(
        out,
        "#Minecraft server properties\n#Mon Jan 01 2025\nenable-query=false\n# the port\nserver-port=25570\nmotd=Hi \\u00a7 there\nserver-ip=0.0.0.0\nquery.port=25570\nmax-players=42\n"
    );
    assert_eq!(report, Report::default());
}

#[test]
fn properties_if_value_and_injection() {
    let edits = [
        Edit {
            key: "level-type".into(),
            value: EditValue::Text("flat".into()),
            if_value: Some("default".into()),
        },
        e("motd", "x\nop-permission-level=4"),
    ];
    let (out, _) = run(
        ParserKind::Properties,
        "level-type=default\r\nmotd=a\r\n",
        &edits,
    );
    assert_eq!(out, "level-type=flat\r\nmotd=x\\nop-permission-level=4\r\n");
    let (out, _) = run(
        ParserKind::Properties,
        "level-type=amplified\n",
        &edits[..1],
    );
    assert_eq!(out, "level-type=amplified\n");
}

const BUNGEE: &str = "\
# BungeeCord config
listeners:
- query_port: 25577
  motd: '&1Another Bungee server'   # shown in the list
  host: 0.0.0.0:25577
  max_players: 1
servers:
  lobby:
    motd: '&1Just another BungeeCord - Forced Host'
    address: localhost:25565
    restricted: false
  games:
    address: 10.0.0.5:25566
online_mode: true
player_limit: -1
banner: |
  line one
  line two
ip_forward: false
";

#[test]
fn yaml_in_place_with_wildcards_regex_and_types() {
    let edits = [
        e("listeners[0].host", "0.0.0.0:{{server.build.default.port}}"),
        e("listeners.0.query_port", "{{server.build.default.port}}"),
        Edit {
            key: "servers.*.address".into(),
            value: EditValue::Text("{{config.docker.interface}}$2".into()),
            if_value: Some(r"regex:^(127\.0\.0\.1|localhost)(:\d{1,5})?$".into()),
        },
        e("online_mode", "false"),
        e("player_limit", "{{env.MAX_PLAYERS}}"),
        e("banner", "one line"),
        e("settings.network.port", "{{server.build.default.port}}"),
        e("listeners[0].motd", "it's {{env.MOTD}}"),
    ];
    let (out, report) = run(ParserKind::Yaml, BUNGEE, &edits);
    assert_eq!(
        out,
        "\
# BungeeCord config
listeners:
- query_port: 25570
  motd: 'it''s Hi § there'   # shown in the list
  host: 0.0.0.0:25570
  max_players: 1
servers:
  lobby:
    motd: '&1Just another BungeeCord - Forced Host'
    address: 172.18.0.1:25565
    restricted: false
  games:
    address: 10.0.0.5:25566
online_mode: false
player_limit: 42
banner: one line
ip_forward: false
settings:
  network:
    port: '25570'
"
    );
    assert!(report.skipped.is_empty(), "{report:?}");
}

#[test]
fn yaml_types_quotes_and_flow() {
    let original = "a: \"dq\"\nb: 'sq'\nc: 3\nd: {x: 1}\ne:\n";
    let (out, _) = run(
        ParserKind::Yaml,
        original,
        &[
            e("a", "new\tvalue"),
            e("b", "yes"),
            e("c", "not a number"),
            e("d.y", "2"),
            e("e", "filled"),
        ],
    );
    assert_eq!(
        out,
        "a: \"new\\tvalue\"\nb: 'yes'\nc: not a number\nd: {x: 1, 'y': '2'}\ne: filled\n"
    );
    let (out, _) = run(ParserKind::Yaml, "", &[e("port", "1")]);
    assert_eq!(out, "port: '1'\n");
    let typed = Edit {
        key: "port".into(),
        value: EditValue::Number(7.into()),
        if_value: None,
    };
    let (out, _) = run(ParserKind::Yaml, "# only a comment\n", &[typed]);
    assert_eq!(out, "# only a comment\nport: 7\n");
}

#[test]
fn yaml_report_and_errors() {
    let (out, report) = run(
        ParserKind::Yaml,
        "a: [1, 2]\nb: 1\n",
        &[e("a.x", "1"), e("b.c", "2"), e("a", "3")],
    );
    assert_eq!(out, "a: [1, 2]\nb: 1\n");
    assert_eq!(report.skipped.len(), 3, "{report:?}");
    let err = eggs::apply(ParserKind::Yaml, b"a: [1\n", &[e("a", "1")], &ctx()).unwrap_err();
    assert!(matches!(err, eggs::EditError::Parse { parser: "yaml", .. }));
}

#[test]
fn json_keeps_layout_and_types() {
    let original = r#"{
  "name": "My server",
  "port": 7777,
  "public": true,
  "admins": ["a", "b"],
  "net": {
    "bind": "127.0.0.1"
  }
}
"#;
    let (out, report) = run(
        ParserKind::Json,
        original,
        &[
            e("port", "{{server.allocations.default.port}}"),
            e("public", "0"),
            e("name", "{{env.MOTD}} \"quoted\""),
            e("net.bind", "{{server.allocations.default.ip}}"),
            e("net.extra.deep", "x"),
            e("admins.1", "c"),
            e("admins.5", "d"),
        ],
    );
    assert_eq!(
        out,
        r#"{
  "name": "Hi § there \"quoted\"",
  "port": 25570,
  "public": false,
  "admins": ["a", "c"],
  "net": {
    "bind": "0.0.0.0",
    "extra": {"deep": "x"}
  }
}
"#
    );
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    let (out, _) = run(ParserKind::Json, "  ", &[e("a", "b")]);
    assert_eq!(out, "{\"a\": \"b\"}\n");
    assert!(eggs::apply(ParserKind::Json, b"{\"a\":", &[e("a", "b")], &ctx()).is_err());
}

#[test]
fn ini_sections_brackets_and_new_keys() {
    let original = "\
; game settings
Motd=hello
[/Script/Game.ServerSettings]
Port=7777
ServerName = old

[Network]
MaxPlayers = 8
";
    let (out, report) = run(
        ParserKind::Ini,
        original,
        &[
            e(
                "[/Script/Game.ServerSettings].Port",
                "{{server.allocations.default.port}}",
            ),
            e("[/Script/Game.ServerSettings].ServerName", "{{env.MOTD}}"),
            e("[/Script/Game.ServerSettings].Password", "secret"),
            e("Network.MaxPlayers", "{{env.MAX_PLAYERS}}"),
            e("Motd", "top"),
            e("Extra.Key", "v"),
            e("Network.Evil", "x\n[Admin]\nroot=1"),
        ],
    );
    assert_eq!(
        out,
        "\
; game settings
Motd=top
[/Script/Game.ServerSettings]
Port=25570
ServerName = Hi § there
Password = secret

[Network]
MaxPlayers = 42

[Extra]
Key=v
"
    );
    assert_eq!(report.skipped.len(), 1);
    assert!(report.skipped[0].contains("line break"));
}

#[test]
fn xml_text_attributes_and_creation() {
    let original = r#"<?xml version="1.0"?>
<!-- dedicated config -->
<MyConfigDedicated xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <ServerPort>27016</ServerPort>
  <SessionSettings>
    <MaxPlayers>4</MaxPlayers>
    <Flag/>
  </SessionSettings>
  <Mods><Mod id="1"/></Mods>
</MyConfigDedicated>
"#;
    let (out, report) = run(
        ParserKind::Xml,
        original,
        &[
            e(
                "MyConfigDedicated.ServerPort",
                "{{server.allocations.default.port}}",
            ),
            e(
                "MyConfigDedicated.SessionSettings.MaxPlayers",
                "{{env.MAX_PLAYERS}}",
            ),
            e("MyConfigDedicated.SessionSettings.Flag", "a<b"),
            e("MyConfigDedicated.Mods.Mod", "[id='42']"),
            e("MyConfigDedicated.ServerName", "{{env.MOTD}}"),
            e("Other.Root", "x"),
        ],
    );
    assert_eq!(
        out,
        r#"<?xml version="1.0"?>
<!-- dedicated config -->
<MyConfigDedicated xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <ServerPort>25570</ServerPort>
  <SessionSettings>
    <MaxPlayers>42</MaxPlayers>
    <Flag>a&lt;b</Flag>
  </SessionSettings>
  <Mods><Mod id="42"/></Mods>
  <ServerName>Hi § there</ServerName>
</MyConfigDedicated>
"#
    );
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    let (out, _) = run(ParserKind::Xml, "", &[e("Root.Port", "1")]);
    assert_eq!(
        out,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Root><Port>1</Port></Root>\n"
    );
    // Entities are never expanded; a DOCTYPE passes through untouched.
    let lol = "<!DOCTYPE r [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]>\n<r><v>&b;</v></r>";
    let (out, _) = run(ParserKind::Xml, lol, &[e("r.w", "1")]);
    assert_eq!(
        out,
        "<!DOCTYPE r [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]>\n<r><v>&b;</v><w>1</w></r>"
    );
}

#[test]
fn file_parser_prefix_lines() {
    let original = "sv_hostname \"old\"\r\nsv_port 27015\r\nsv_maxclients 8\r\n";
    let (out, report) = run(
        ParserKind::File,
        original,
        &[
            e("sv_port", "sv_port {{server.build.default.port}}"),
            e("sv_hostname", "sv_hostname \"{{env.MOTD}}\""),
            e("sv_maxclients", "sv_maxclients 1\nrcon_password x"),
            e("missing", "missing 1"),
        ],
    );
    assert_eq!(
        out,
        "sv_hostname \"Hi § there\"\r\nsv_port 25570\r\nsv_maxclients 8\r\n"
    );
    assert_eq!(report.skipped.len(), 1);
    let (out, _) = run(
        ParserKind::File,
        "7777\n",
        &[e("", "{{server.allocations.default.port}}")],
    );
    assert_eq!(out, "25570\n");
}

#[test]
fn placeholders_never_come_from_the_process_environment() {
    // HOME and PATH are set in every test process; the agent's secrets would be too.
    let mut c = ctx();
    c.docker_interface = None;
    let edits = [
        e("home", "{{env.HOME}}"),
        e("path", "{{server.build.env.PATH}}"),
        e("iface", "{{config.docker.interface}}"),
        e("port", "{{server.allocations.default.port}}"),
    ];
    let (bytes, report) = eggs::apply(ParserKind::Properties, b"", &edits, &c).unwrap();
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "home={{env.HOME}}\npath={{server.build.env.PATH}}\niface={{config.docker.interface}}\nport=25570\n"
    );
    assert_eq!(
        report.unknown_placeholders,
        [
            "env.HOME",
            "server.build.env.PATH",
            "config.docker.interface"
        ]
    );
}

#[test]
fn limits_and_encodings() {
    let big = vec![b'a'; eggs::config::MAX_CONFIG_BYTES + 1];
    assert!(matches!(
        eggs::apply(ParserKind::File, &big, &[], &ctx()),
        Err(eggs::EditError::TooLarge { .. })
    ));
    assert_eq!(
        eggs::apply(ParserKind::File, b"\xff\xfe", &[], &ctx()),
        Err(eggs::EditError::NotUtf8)
    );
    let (out, _) = run(ParserKind::Properties, "\u{feff}a=1\n", &[e("a", "2")]);
    assert_eq!(out, "\u{feff}a=2\n");
    let deep = format!("{}1{}", "[".repeat(500), "]".repeat(500));
    assert!(eggs::apply(ParserKind::Json, deep.as_bytes(), &[e("a", "b")], &ctx()).is_err());
    let deep_yaml = format!("{}1{}", "[".repeat(500), "]".repeat(500));
    assert!(
        eggs::apply(
            ParserKind::Yaml,
            deep_yaml.as_bytes(),
            &[e("a", "b")],
            &ctx()
        )
        .is_err()
    );
}
