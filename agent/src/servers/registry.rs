//! Which registries the Docker Engine may pull from on the panel's behalf.
//!
//! A pull makes the Engine (on this host) fetch from whatever address the image names, so an
//! image such as `127.0.0.1:8080/x` would turn the panel into a client of the node's local
//! services (server-side request forgery). Registries whose name resolves to a loopback,
//! link-local, private or otherwise non-public address are refused unless the node policy
//! lists them (`allowedRegistries`); Docker Hub and public registries need no entry. The
//! check resolves the name once, just before the pull; a registry that answers differently
//! to the Engine a moment later (DNS rebinding) is not caught, which is why private
//! registries belong on the allowlist and nowhere else.

use super::ServerError;
use crate::docker::{DockerError, PullFailure};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

/// Checks that `image` may be pulled under the node's `allowed` registries.
pub(super) async fn check_pull(image: &str, allowed: &[String]) -> Result<(), ServerError> {
    let Some(registry) = proto::validate::image_registry(image) else {
        return Ok(()); // Docker Hub
    };
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(registry)) {
        return Ok(());
    }
    let refuse = |reason: String| ServerError::RegistryRefused {
        image: image.to_owned(),
        registry: registry.to_owned(),
        reason,
    };
    let (host, port) = split_port(registry);
    if host.eq_ignore_ascii_case("localhost") {
        return Err(refuse("it is this host".into()));
    }
    let target = format!("{host}:{port}");
    let addrs = smol::unblock(move || target.to_socket_addrs().map(|a| a.collect::<Vec<_>>()))
        .await
        .unwrap_or_default();
    if addrs.is_empty() {
        // Fail closed: the Engine would not reach it either (it uses the same resolver
        // configuration), and an answer we did not see cannot be checked.
        log::warn!("registry {registry} of image {image} does not resolve");
        return Err(DockerError::ImagePull {
            image: image.to_owned(),
            failure: PullFailure::Unreachable,
        }
        .into());
    }
    if let Some(a) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(refuse(format!(
            "it resolves to the non-public address {}",
            a.ip()
        )));
    }
    Ok(())
}

/// `host:port` → (`host`, port); HTTPS's 443 when no port is written.
fn split_port(registry: &str) -> (&str, u16) {
    match registry.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().unwrap_or(443)),
        None => (registry, 443),
    }
}

/// Whether an address is on the public internet (not loopback, private, link-local,
/// shared, documentation, multicast or reserved space).
pub(super) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64: an IPv4 address in disguise
        || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "140.82.112.33",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn private_registries_need_the_allowlist() {
        smol::block_on(async {
            check_pull("alpine:3", &[]).await.unwrap();
            check_pull("ctrl-fakegame:latest", &[]).await.unwrap();
            for image in [
                "127.0.0.1:32160/probe/x:1",
                "localhost:5000/x",
                "localhost/x",
                "10.0.0.7/team/img",
                "169.254.169.254/latest/x",
                "127.1:80/x",
            ] {
                let e = check_pull(image, &[]).await.unwrap_err();
                assert_eq!(e.code(), proto::ErrorCode::ConfigInvalid, "{image}: {e}");
                assert!(e.to_string().contains("allowedRegistries"), "{e}");
            }
            let allowed = vec!["127.0.0.1:32160".to_string()];
            check_pull("127.0.0.1:32160/probe/x:1", &allowed)
                .await
                .unwrap();
            // The allowlist names a registry exactly, port included.
            assert!(
                check_pull("127.0.0.1:32161/probe/x:1", &allowed)
                    .await
                    .is_err()
            );
            // A name that does not resolve is not pulled from either: a Docker error
            // naming the image, as the pull itself would have failed.
            let e = check_pull("no-such-host.invalid/x:1", &[])
                .await
                .unwrap_err();
            assert_eq!(e.code(), proto::ErrorCode::DockerError, "{e}");
            assert!(e.to_string().contains("no-such-host.invalid/x:1"), "{e}");
        });
    }
}
