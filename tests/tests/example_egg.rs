//! The repository's example egg (`tests/fakegame/egg.json`) is valid for the wire contract
//! and uses the image `build-image.sh` builds.

#[test]
fn example_egg_is_valid_and_uses_the_fakegame_image() {
    let text = std::fs::read_to_string(e2e::repo_root().join("tests/fakegame/egg.json"))
        .expect("egg.json");
    let egg: proto::egg::EggConfig<'_> = serde_json::from_str(&text).expect("egg.json decodes");
    proto::validate::egg(&egg).unwrap_or_else(|e| panic!("egg.json is invalid: {e}"));
    assert_eq!(&*egg.image, e2e::FAKEGAME_IMAGE);
    assert!(egg.startup.contains("{{SERVER_PORT}}"));
    let q = egg.query.as_ref().expect("query section");
    assert_eq!((&*q.kind, q.port), ("minecraft", 25565));
    assert_eq!(
        egg.stop.as_ref().and_then(|s| s.command.as_deref()),
        Some("stop")
    );
    let script = e2e::repo_root().join("tests/fakegame/build-image.sh");
    let text = std::fs::read_to_string(&script).expect("build-image.sh");
    assert!(text.contains("ctrl-fakegame:latest"));
}
