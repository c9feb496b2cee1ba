//! `create_server`: validate the egg against the protocol and the node policy, claim the
//! id, ports and capacity in one step, check the host, pull the image when missing (from an
//! allowed registry), join the servers' network, prepare the volume and create the
//! container. A failed create leaves no container, no directory and no reservation behind.

use super::error::PortHolder;
use super::extras::Extras;
use super::plan::{self, Meta, PlanInput};
use super::server::Server;
use super::{Inner, Outcome, Reservation, ServerError, Slot, VolumeAccess, install, network, pull};
use crate::docker::{DockerClient, DockerError};
use crate::node::NodePolicy;
use proto::validate::{self, IdKind, ValidEgg};
use proto::{CreateServer, ServerState};
use serde_json::json;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

/// `create_server`; `epoch` is the command's (fencing), kept in the container's meta label.
pub(super) async fn create(inner: &Inner, c: CreateServer<'static>, epoch: u64) -> Outcome {
    let sid = c.server_id.to_string();
    validate::id(IdKind::Server, &sid)?;
    let valid = validate::egg(&c.egg_config)?;
    check_policy(&inner.cfg.policy, &valid)?;
    let docker = inner.docker().await?;
    let reservation = Reservation {
        memory: valid.limits.memory.0,
        cpu_millis: valid.limits.cpu.0,
        disk: valid.limits.disk.0,
        pids: u64::from(inner.cfg.policy.pids_per_server),
        ports: valid
            .ports
            .iter()
            .map(|p| plan::PortMeta {
                container: p.container,
                host: p.host,
                udp: p.protocol == validate::Protocol::Udp,
            })
            .collect(),
    };
    reserve(inner, &sid, reservation)?;
    match create_reserved(inner, &docker, &sid, &c, &valid, epoch).await {
        Ok(server) => {
            inner
                .servers
                .lock()
                .insert(sid.clone(), Slot::Ready(server.clone()));
            // With an install script the server is `installing` until it ends (unless its
            // files come by a restore: a transfer).
            if !c.skip_install {
                install::begin(inner, &server)?;
            }
            Ok(json!({
                "serverId": sid,
                "status": server.state(),
                "containerId": server.container_id,
            }))
        }
        Err(e) => {
            inner.servers.lock().remove(&sid);
            Err(e)
        }
    }
}

/// What the node policy forbids whatever the panel checked: low host ports and group 0
/// unless allowed.
fn check_policy(policy: &NodePolicy, valid: &ValidEgg) -> Result<(), ServerError> {
    if !policy.allow_low_ports
        && let Some(p) = valid.ports.iter().find(|p| p.host < 1024)
    {
        return Err(ServerError::Policy {
            field: "ports",
            reason: format!(
                "host port {} is below 1024; this node allows only ports 1024 and above \
                 (allowLowPorts)",
                p.host
            ),
        });
    }
    if !policy.allow_group_zero && valid.user.is_some_and(|(_, gid)| gid == 0) {
        return Err(ServerError::Policy {
            field: "user",
            reason: "group 0 (root) is not allowed on this node (allowGroupZero)".into(),
        });
    }
    Ok(())
}

/// Claims the id, the ports and the capacity in one step under the map lock.
fn reserve(inner: &Inner, sid: &str, want: Reservation) -> Result<(), ServerError> {
    let mut servers = inner.servers.lock();
    if servers.contains_key(sid) {
        return Err(ServerError::AlreadyExists {
            server_id: sid.to_owned(),
        });
    }
    let limits = &inner.limits;
    if servers.len() >= limits.servers {
        return Err(ServerError::Insufficient {
            what: "server slots",
            detail: format!(
                "this node runs at most {} servers (maxServers)",
                limits.servers
            ),
        });
    }
    let (mut memory, mut cpu, mut disk, mut pids) = (0u64, 0u32, 0u64, 0u64);
    for (other, slot) in servers.iter() {
        let r = slot.reservation();
        memory = memory.saturating_add(r.memory);
        cpu = cpu.saturating_add(r.cpu_millis);
        disk = disk.saturating_add(r.disk);
        pids = pids.saturating_add(r.pids);
        if let Some(p) = want
            .ports
            .iter()
            .find(|p| r.ports.iter().any(|q| q.host == p.host && q.udp == p.udp))
        {
            return Err(ServerError::PortConflict {
                port: p.host,
                protocol: p.protocol(),
                holder: PortHolder::Server(other.clone()),
            });
        }
    }
    let cap = inner.capacity;
    if memory.saturating_add(want.memory) > cap.memory {
        return Err(ServerError::Insufficient {
            what: "memory",
            detail: format!(
                "the server asks for {} MiB; {} MiB of the node's {} MiB are already reserved",
                want.memory >> 20,
                memory >> 20,
                cap.memory >> 20
            ),
        });
    }
    if cpu.saturating_add(want.cpu_millis) > cap.cpu_millis {
        return Err(ServerError::Insufficient {
            what: "CPU",
            detail: format!(
                "the server asks for {} cores; {} of the node's {} cores are already reserved",
                f64::from(want.cpu_millis) / 1000.0,
                f64::from(cpu) / 1000.0,
                f64::from(cap.cpu_millis) / 1000.0
            ),
        });
    }
    if disk.saturating_add(want.disk) > limits.disk {
        return Err(ServerError::Insufficient {
            what: "disk",
            detail: format!(
                "the server asks for {} MiB; {} MiB of the node's {} MiB are already committed",
                want.disk >> 20,
                disk >> 20,
                limits.disk >> 20
            ),
        });
    }
    if pids.saturating_add(want.pids) > limits.pids {
        return Err(ServerError::Insufficient {
            what: "processes",
            detail: format!(
                "each server may run {} processes; {} of the node's {} are already committed \
                 (maxTotalPids)",
                want.pids, pids, limits.pids
            ),
        });
    }
    servers.insert(sid.to_owned(), Slot::Creating(want));
    Ok(())
}

/// Everything after the reservation; on failure nothing is left behind.
async fn create_reserved(
    inner: &Inner,
    docker: &DockerClient,
    sid: &str,
    c: &CreateServer<'static>,
    valid: &ValidEgg,
    epoch: u64,
) -> Result<Arc<Server>, ServerError> {
    let policy = &inner.cfg.policy;
    for p in &valid.ports {
        check_port_free(
            policy.host_ip,
            p.host,
            p.protocol == validate::Protocol::Udp,
        )?;
    }
    check_disk(inner.volumes_dir(), valid.limits.disk.0)?;
    pull::ensure_image(inner, docker, sid, &c.egg_config.image).await?;
    network::ensure(docker, &policy.network).await?;
    let volume_path = inner.volume_path(sid);
    let volume_str = volume_path.to_string_lossy().into_owned();
    let input = PlanInput {
        agent_id: &inner.agent_id,
        server_id: sid,
        volume: &volume_str,
        policy,
        epoch,
    };
    let (spec, meta) = plan::plan(&input, &c.egg_config, valid);
    let created_dir = prepare_volume_dir(sid, &volume_path, &meta, inner.access)?;
    let cleanup_dir = || {
        if created_dir {
            let _ = std::fs::remove_dir(&volume_path);
        }
    };
    let volume = match inner.open_volume(&volume_path, &meta) {
        Ok(v) => Arc::new(v),
        Err(e) => {
            cleanup_dir();
            return Err(e.into());
        }
    };
    let extras = Extras::from_egg(&c.egg_config);
    let eggs_dir = inner.eggs_dir();
    if let Err(e) = extras.save(&eggs_dir, sid) {
        cleanup_dir();
        return Err(ServerError::Volume {
            server_id: sid.to_owned(),
            reason: format!("cannot store the egg's install script and config files: {e}"),
        });
    }
    let name = plan::container_name(&inner.cfg.name_prefix, sid);
    let container_id = match docker.container_create(&name, &spec).await {
        Ok(id) => id,
        Err(e) => {
            cleanup_dir();
            let _ = Extras::remove(&eggs_dir, sid);
            return Err(name_in_use(e, &name));
        }
    };
    log::info!("server {sid}: created container {container_id}");
    Ok(Arc::new(
        Server::new(
            sid.to_owned(),
            container_id,
            meta,
            volume,
            volume_path,
            inner.agent_id.clone(),
            inner.outbox.clone(),
            ServerState::Created,
        )
        .with_extras(extras),
    ))
}

/// Docker's "name already in use" names the container that holds it — someone else's:
/// the panel learns only that the name is taken.
fn name_in_use(e: DockerError, name: &str) -> ServerError {
    match e {
        DockerError::Conflict { message } if message.contains("already in use") => {
            ServerError::NameInUse {
                name: name.to_owned(),
            }
        }
        other => other.into(),
    }
}

/// A port another process holds cannot be published: Docker would only fail at start.
/// Publishing on every interface covers IPv6 too, so an IPv6-only listener on the port is
/// a conflict as well.
fn check_port_free(ip: IpAddr, port: u16, udp: bool) -> Result<(), ServerError> {
    let mut taken = bind_fails(SocketAddr::new(ip, port), udp, false);
    if ip == IpAddr::from([0, 0, 0, 0]) {
        taken = taken
            || bind_fails(
                SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
                udp,
                true,
            );
    }
    if taken {
        return Err(ServerError::PortConflict {
            port,
            protocol: if udp { "udp" } else { "tcp" },
            holder: PortHolder::Host,
        });
    }
    Ok(())
}

/// Whether binding `addr` fails because something holds it. For the IPv6 probe on a host
/// without IPv6 (`only_in_use`) only "address in use" counts.
fn bind_fails(addr: SocketAddr, udp: bool, only_in_use: bool) -> bool {
    let result = if udp {
        UdpSocket::bind(addr).map(drop)
    } else {
        TcpListener::bind(addr).map(drop)
    };
    match result {
        Ok(()) => false,
        Err(e) if only_in_use => e.kind() == std::io::ErrorKind::AddrInUse,
        Err(_) => true,
    }
}

/// The disk limit must fit in what the data directory's filesystem has free.
fn check_disk(dir: &Path, want: u64) -> Result<(), ServerError> {
    let Ok(st) = nix::sys::statvfs::statvfs(dir) else {
        return Ok(());
    };
    let free = st.blocks_available().saturating_mul(st.fragment_size());
    if want > free {
        return Err(ServerError::Insufficient {
            what: "disk",
            detail: format!(
                "the server asks for {} MiB; the data directory has {} MiB free",
                want >> 20,
                free >> 20
            ),
        });
    }
    Ok(())
}

/// Creates `DATA/volumes/<id>` for the container's user — owned by it (root agent) or shared
/// with it through ACLs (unprivileged agent); `true` if it was created now (an existing
/// one, from a server deleted without purge, is reused).
fn prepare_volume_dir(
    sid: &str,
    path: &Path,
    meta: &Meta,
    access: VolumeAccess,
) -> Result<bool, ServerError> {
    let err = |reason: String| ServerError::Volume {
        server_id: sid.to_owned(),
        reason,
    };
    let mode = match access {
        VolumeAccess::Chown => 0o750,
        VolumeAccess::Acl { .. } => 0o770,
    };
    let created = match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(err(e.to_string())),
    };
    let meta_fs = std::fs::symlink_metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta_fs.is_dir() {
        return Err(err("the volume path exists and is not a directory".into()));
    }
    let shared = match access {
        VolumeAccess::Chown => std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid))
            .map_err(|e| format!("cannot give the files to {}:{}: {e}", meta.uid, meta.gid)),
        VolumeAccess::Acl { agent } => share(path, meta.uid, agent),
    };
    if let Err(reason) = shared {
        if created {
            let _ = std::fs::remove_dir(path);
        }
        return Err(err(reason));
    }
    Ok(created)
}

/// The ACLs of an unprivileged agent's volume (see `files::acl`).
fn share(path: &Path, server_uid: u32, agent_uid: u32) -> Result<(), String> {
    use std::os::fd::AsFd;
    let dir = std::fs::File::open(path).map_err(|e| e.to_string())?;
    crate::files::acl::share_dir(dir.as_fd(), server_uid, agent_uid).map_err(|e| match e {
        nix::errno::Errno::EOPNOTSUPP => "the data directory's filesystem has no POSIX ACLs, \
            which an agent not running as root needs to share files with the server's user"
            .to_owned(),
        e => format!("cannot share the files with uid {server_uid}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_port_is_a_port_conflict() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let e = check_port_free(IpAddr::from([127, 0, 0, 1]), port, false).unwrap_err();
        assert_eq!(e.code(), proto::ErrorCode::PortConflict);
        assert!(
            matches!(
                e,
                ServerError::PortConflict {
                    holder: PortHolder::Host,
                    ..
                }
            ),
            "{e:?}"
        );
        drop(l);
        check_port_free(IpAddr::from([127, 0, 0, 1]), port, false).unwrap();
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        assert!(check_port_free(IpAddr::from([127, 0, 0, 1]), port, true).is_err());
    }

    /// A listener on an IPv6 address leaves `0.0.0.0` free, but publishing on every
    /// interface needs IPv6 too.
    #[test]
    fn an_ipv6_only_listener_is_a_port_conflict_too() {
        let v6 = TcpListener::bind("[::1]:0").expect("IPv6 loopback");
        let port = v6.local_addr().unwrap().port();
        // IPv4 alone is free...
        TcpListener::bind(("0.0.0.0", port)).unwrap();
        // ...but the port is not.
        let e = check_port_free(IpAddr::from([0, 0, 0, 0]), port, false).unwrap_err();
        assert!(
            matches!(
                e,
                ServerError::PortConflict {
                    holder: PortHolder::Host,
                    ..
                }
            ),
            "{e:?}"
        );
    }
}
