//! Property tests: no input panics the decoder, and generated messages round-trip through
//! encode → decode (both the zero-copy simd-json path and serde_json agree).

use proptest::prelude::*;
use proto::egg::{EggConfig, EnvMap, Limits, PortMap, QueryConfig, StopConfig};
use proto::*;
use std::borrow::Cow;

fn s(v: String) -> Cow<'static, str> {
    Cow::Owned(v)
}

fn text() -> impl Strategy<Value = String> {
    // Includes quotes, backslashes, control characters and non-ASCII to exercise escaping.
    proptest::string::string_regex("[a-zA-Z0-9 _\\-\"\\\\\n\té€😀]{0,24}").unwrap()
}

fn ident() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,15}"
}

fn state() -> impl Strategy<Value = ServerState> {
    prop_oneof![
        Just(ServerState::Created),
        Just(ServerState::Starting),
        Just(ServerState::Running),
        Just(ServerState::Stopping),
        Just(ServerState::Stopped),
        Just(ServerState::Crashed),
    ]
}

fn finite() -> impl Strategy<Value = f64> {
    (0u32..100_000).prop_map(|v| f64::from(v) / 10.0)
}

fn egg() -> impl Strategy<Value = EggConfig<'static>> {
    (
        ident(),
        ident(),
        proptest::collection::vec((1u16..65535, 1i64..65535), 0..4),
        proptest::collection::vec(("[A-Z_]{1,8}", text()), 0..4),
        text(),
        proptest::option::of(ident()),
        proptest::option::of(1u16..65535),
    )
        .prop_map(
            |(name, image, ports, env, startup, stop, query)| EggConfig {
                name: s(name),
                image: s(image),
                ports: PortMap(
                    ports
                        .into_iter()
                        .map(|(c, h)| (s(c.to_string()), h))
                        .collect(),
                ),
                environment: EnvMap(env.into_iter().map(|(k, v)| (s(k), s(v))).collect()),
                limits: Limits {
                    memory: "512m".into(),
                    cpu: "1.5".into(),
                    disk: "2g".into(),
                },
                startup: s(startup),
                stop: stop.map(|c| StopConfig {
                    command: Some(s(c)),
                    signal: None,
                }),
                query: query.map(|port| QueryConfig {
                    kind: "minecraft".into(),
                    port,
                }),
                user: None,
                install: None,
                config_files: Vec::new(),
                done: Vec::new(),
                backup: None,
            },
        )
}

fn action() -> impl Strategy<Value = Action<'static>> {
    prop_oneof![
        (ident(), egg()).prop_map(|(id, egg)| Action::CreateServer(CreateServer {
            server_id: s(id),
            egg_config: Box::new(egg),
            skip_install: false,
        })),
        Just(Action::StartServer),
        (
            proptest::option::of(ident()),
            proptest::option::of(0u64..600)
        )
            .prop_map(|(sig, t)| {
                Action::StopServer(Some(StopServer {
                    signal: sig.map(s),
                    timeout: t,
                }))
            }),
        Just(Action::StopServer(None)),
        Just(Action::RestartServer(None)),
        Just(Action::GetStatus),
        (
            text(),
            proptest::option::of(0u64..5000),
            proptest::option::of(0u64..5000)
        )
            .prop_map(|(p, offset, limit)| Action::ListFiles(ListFiles {
                path: s(p),
                offset,
                limit
            })),
        text().prop_map(|p| Action::GetFile(PathPayload { path: s(p) })),
        Just(Action::KillServer(None)),
        any::<bool>().prop_map(|purge| Action::DeleteServer(Some(DeleteServer { purge }))),
        text().prop_map(|c| Action::SendCommand(SendCommand { command: s(c) })),
        (text(), text()).prop_map(|(p, c)| Action::WriteFile(WriteFile {
            path: s(p),
            content: s(c),
            encoding: ContentEncoding::Utf8
        })),
        ident().prop_map(|n| Action::Unknown(s(format!("x_{n}")))),
    ]
}

fn event_kind() -> impl Strategy<Value = EventKind<'static>> {
    prop_oneof![
        (
            ident(),
            state(),
            state(),
            proptest::option::of(1u64..99999),
            proptest::option::of(-255i64..255)
        )
            .prop_map(|(id, a, b, pid, code)| EventKind::ServerStatusChanged(
                StatusChanged {
                    server_id: s(id),
                    previous_status: a,
                    current_status: b,
                    pid,
                    exit_code: code,
                    oom_killed: None,
                    reason: None,
                }
            )),
        (ident(), text(), proptest::option::of(0u64..1000)).prop_map(|(id, m, dropped)| {
            EventKind::ServerLog(ServerLog {
                server_id: s(id),
                log_level: "INFO".into(),
                message: s(m),
                stream: None,
                dropped,
            })
        }),
        (ident(), finite(), finite()).prop_map(|(id, cpu, pct)| EventKind::ResourceUpdate(
            ResourceUpdate {
                server_id: s(id),
                cpu,
                memory: UsedPercent {
                    used: "100m".into(),
                    percentage: pct
                },
                disk: UsedPercent {
                    used: "1.2g".into(),
                    percentage: pct
                },
                network: None,
            }
        )),
    ]
}

fn message() -> impl Strategy<Value = Message<'static>> {
    prop_oneof![
        (
            ident(),
            proptest::option::of(ident()),
            proptest::option::of(ident()),
            action()
        )
            .prop_map(|(id, agent, server, action)| Message::Command(Command {
                id: s(id),
                timestamp: "2025-01-23T10:00:00Z".into(),
                agent_id: agent.map(s),
                server_id: server.map(s),
                epoch: None,
                action,
            })),
        (ident(), any::<bool>(), text()).prop_map(|(id, ok, msg)| {
            let ts: Cow<'static, str> = "2025-01-23T10:00:00Z".into();
            Message::Response(if ok {
                Response::ok(
                    s(id),
                    ts,
                    Some(serde_json::json!({"serverId": "x", "status": "running"})),
                )
            } else {
                Response::err(s(id), ts, ErrorCode::DockerError, msg)
            })
        }),
        (proptest::option::of(ident()), event_kind()).prop_map(|(id, kind)| Message::Event(
            Event {
                id: id.map(s),
                timestamp: "2025-01-23T10:00:00Z".into(),
                agent_id: None,
                server_id: None,
                kind,
            }
        )),
        ident().prop_map(|id| Message::Ping(Ping {
            id: s(id),
            timestamp: "t".into()
        })),
        (ident(), 0u64..100, finite()).prop_map(|(id, n, load)| Message::Pong(Pong {
            id: s(id),
            timestamp: "t".into(),
            agent_id: None,
            data: PongData {
                agent_status: "healthy".into(),
                active_servers: n,
                system_load: SystemLoad {
                    cpu: load,
                    memory: load,
                    disk: load
                },
            },
        })),
    ]
}

/// Bytes for long strings: mostly plain ASCII (so the 16/32/64-byte fast paths run), with
/// every kind of byte that stops them: `"`, `\\`, control characters, DEL, non-ASCII (valid
/// UTF-8 and stray continuation or lead bytes), and the bytes whose low nibble equals that of
/// `"` or `\\` (the AVX2 scan looks them up by nibble).
fn string_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        12 => Just(b'a'),
        3 => prop::sample::select(vec![
            b'"', b'\\', 0x00, 0x01, 0x1f, 0x7f, 0x80, 0xbf, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0,
            0xff, 0x02, 0x12, 0x32, 0x42, 0x0c, 0x2c, 0x4c, 0x6c, 0x7c, 0xa2, 0xdc, b'n', b'u',
        ]),
        1 => any::<u8>(),
    ]
}

proptest! {
    // Cheap cases, and a special byte must land in each lane of the vector scans.
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// The skimmer's string scans (SSE2 per 16 bytes, AVX2 per 64, SWAR, bytewise) accept
    /// exactly the strings serde_json accepts, wherever the special byte falls, and route
    /// the same envelope as the simd-json path when the frame is valid.
    #[test]
    fn long_strings_match_serde_json(body in proptest::collection::vec(string_byte(), 0..300), pad in 0usize..70) {
        let mut frame = br#"{"type":"event","event":"server_log","data":{"serverId":"s1","message":""#.to_vec();
        frame.extend_from_slice(&body);
        frame.extend_from_slice(b"\"}");
        // Padding after the string moves where the frame ends relative to the string, which
        // decides which scan handles its tail.
        frame.extend(std::iter::repeat_n(b' ', pad));
        frame.extend_from_slice(b"}");
        let ours = proto::skim::is_valid_json(&frame);
        let theirs = serde_json::from_slice::<serde_json::Value>(&frame).is_ok();
        prop_assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(&frame));
        let mut dec = Decoder::default();
        let skimmed = dec.envelope(&frame);
        prop_assert_eq!(skimmed.is_ok(), theirs);
        if let Ok(env) = skimmed {
            let mut dec2 = Decoder::default();
            prop_assert_eq!(env, dec2.envelope_with_simd_json(&frame).unwrap());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut dec = Decoder::default();
        let _ = dec.message(&bytes);
        let _ = dec.envelope(&bytes);
        let _ = serde_json::from_slice::<Message>(&bytes);
    }

    #[test]
    fn generated_messages_round_trip(msg in message()) {
        let frame = encode(&msg);
        let mut dec = Decoder::default();
        let back = dec.message(&frame).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&frame))))?;
        prop_assert_eq!(&back.clone().into_owned(), &msg);
        let via_serde: Message = serde_json::from_slice(&frame).unwrap();
        prop_assert_eq!(via_serde.into_owned(), msg.clone());
        let env = dec.envelope(&frame).unwrap().clone();
        prop_assert_eq!(env.kind, msg.kind());
        prop_assert_eq!(env.id.as_deref(), msg.id());
        // The skimmer and the simd-json path agree on every routing field.
        let mut dec2 = Decoder::default();
        let slow = dec2.envelope_with_simd_json(&frame).unwrap();
        prop_assert_eq!(env, slow);
    }

    #[test]
    fn skimmer_validity_matches_serde_json(msg in message(), flip in any::<u8>(), at in 0usize..400, cut in 0usize..400) {
        let mut frame = encode(&msg);
        let i = at % frame.len();
        frame[i] ^= flip;
        frame.truncate(cut.max(1).min(frame.len()));
        let ours = proto::skim::is_valid_json(&frame);
        match serde_json::from_slice::<serde_json::Value>(&frame) {
            Ok(_) => prop_assert!(ours, "serde_json accepts, skimmer rejects: {}", String::from_utf8_lossy(&frame)),
            Err(e) if e.to_string().contains("out of range") => {}
            Err(e) => prop_assert!(!ours, "skimmer accepts, serde_json rejects ({e}): {}", String::from_utf8_lossy(&frame)),
        }
    }

    #[test]
    fn mutated_frames_never_panic(msg in message(), cut in 0usize..400, flip in any::<u8>(), at in 0usize..400) {
        let mut frame = encode(&msg);
        if !frame.is_empty() {
            let i = at % frame.len();
            frame[i] ^= flip;
            frame.truncate(cut.max(1).min(frame.len()));
        }
        let mut dec = Decoder::default();
        let _ = dec.message(&frame);
        let _ = dec.envelope(&frame);
    }
}
