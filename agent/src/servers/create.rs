//! `create_server`: validate the egg, claim the id, ports and capacity in one step, check
//! the host, pull the image when missing, prepare the volume and create the container. A
//! failed create leaves no container, no directory and no reservation behind.

use super::error::PortHolder;
use super::plan::{self, Meta, PlanInput};
use super::server::Server;
use super::{Inner, Outcome, Reservation, ServerError, Slot};
use crate::docker::DockerClient;
use crate::files::Volume;
use proto::validate::{self, IdKind};
use proto::{CreateServer, ServerState};
use serde_json::json;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

pub(super) async fn create(inner: &Inner, c: CreateServer<'static>) -> Outcome {
    let sid = c.server_id.to_string();
    validate::id(IdKind::Server, &sid)?;
    let valid = validate::egg(&c.egg_config)?;
    let docker = inner.docker().await?;
    let reservation = Reservation {
        memory: valid.limits.memory.0,
        cpu_millis: valid.limits.cpu.0,
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
    match create_reserved(inner, &docker, &sid, &c, &valid).await {
        Ok(server) => {
            let data = json!({
                "serverId": sid,
                "status": ServerState::Created,
                "containerId": server.container_id,
            });
            inner.servers.lock().insert(sid, Slot::Ready(server));
            Ok(data)
        }
        Err(e) => {
            inner.servers.lock().remove(&sid);
            Err(e)
        }
    }
}

/// Claims the id, the ports and the capacity in one step under the map lock.
fn reserve(inner: &Inner, sid: &str, want: Reservation) -> Result<(), ServerError> {
    let mut servers = inner.servers.lock();
    if servers.contains_key(sid) {
        return Err(ServerError::AlreadyExists {
            server_id: sid.to_owned(),
        });
    }
    let (mut memory, mut cpu) = (0u64, 0u32);
    for (other, slot) in servers.iter() {
        let r = slot.reservation();
        memory = memory.saturating_add(r.memory);
        cpu = cpu.saturating_add(r.cpu_millis);
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
    servers.insert(sid.to_owned(), Slot::Creating(want));
    Ok(())
}

/// Everything after the reservation; on failure nothing is left behind.
async fn create_reserved(
    inner: &Inner,
    docker: &DockerClient,
    sid: &str,
    c: &CreateServer<'static>,
    valid: &validate::ValidEgg,
) -> Result<Arc<Server>, ServerError> {
    for p in &valid.ports {
        check_port_free(
            inner.cfg.host_ip,
            p.host,
            p.protocol == validate::Protocol::Udp,
        )?;
    }
    check_disk(inner.volumes_dir(), valid.limits.disk.0)?;
    let image = c.egg_config.image.as_ref();
    if docker.image_inspect(image).await?.is_none() {
        log::info!("server {sid}: pulling image {image}");
        docker.image_pull(image).await?;
    }
    let volume_path = inner.volume_path(sid);
    let volume_str = volume_path.to_string_lossy().into_owned();
    let input = PlanInput {
        agent_id: &inner.agent_id,
        server_id: sid,
        volume: &volume_str,
        host_ip: inner.cfg.host_ip,
    };
    let (spec, meta) = plan::plan(&input, &c.egg_config, valid);
    let created_dir = prepare_volume_dir(sid, &volume_path, &meta)?;
    let cleanup_dir = || {
        if created_dir {
            let _ = std::fs::remove_dir(&volume_path);
        }
    };
    let volume = match Volume::open(&volume_path) {
        Ok(v) => Arc::new(v.with_owner(meta.uid, meta.gid)),
        Err(e) => {
            cleanup_dir();
            return Err(e.into());
        }
    };
    let container_id = match docker
        .container_create(&plan::container_name(sid), &spec)
        .await
    {
        Ok(id) => id,
        Err(e) => {
            cleanup_dir();
            return Err(e.into());
        }
    };
    log::info!("server {sid}: created container {container_id}");
    Ok(Arc::new(Server::new(
        sid.to_owned(),
        container_id,
        meta,
        volume,
        volume_path,
        inner.agent_id.clone(),
        inner.outbox.clone(),
        ServerState::Created,
    )))
}

/// A port another process holds cannot be published: Docker would only fail at start.
fn check_port_free(ip: IpAddr, port: u16, udp: bool) -> Result<(), ServerError> {
    let addr = SocketAddr::new(ip, port);
    let taken = if udp {
        UdpSocket::bind(addr).is_err()
    } else {
        TcpListener::bind(addr).is_err()
    };
    if taken {
        return Err(ServerError::PortConflict {
            port,
            protocol: if udp { "udp" } else { "tcp" },
            holder: PortHolder::Host,
        });
    }
    Ok(())
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

/// Creates `DATA/volumes/<id>` owned by the container's user; `true` if it was created now
/// (an existing one, from a server deleted without purge, is reused).
fn prepare_volume_dir(sid: &str, path: &Path, meta: &Meta) -> Result<bool, ServerError> {
    let err = |reason: String| ServerError::Volume {
        server_id: sid.to_owned(),
        reason,
    };
    let created = match std::fs::DirBuilder::new().mode(0o750).create(path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(err(e.to_string())),
    };
    let meta_fs = std::fs::symlink_metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta_fs.is_dir() {
        return Err(err("the volume path exists and is not a directory".into()));
    }
    if created && let Err(e) = std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid)) {
        let _ = std::fs::remove_dir(path);
        return Err(err(format!(
            "cannot give the files to {}:{}: {e}",
            meta.uid, meta.gid
        )));
    }
    Ok(created)
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
}
