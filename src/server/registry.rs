//! Live sessions and the public ports they own.
//!
//! A public port belongs to a service; a service has an owner session while its
//! client is connected. When a client vanishes without saying goodbye, its
//! services *linger* (listener still bound, visitors refused) for
//! `reconnect_grace`, and a reconnecting client reclaims them: an explicit port is
//! reclaimed by asking for it again, a server-picked port (`remote_port: 0`) by the
//! same client process asking for the same service name. Only a session of the
//! same principal reclaims (the shared token's sessions among themselves, a
//! `clients` entry only its own), so no client ever takes over another's port.
//!
//! A public port is served by one listener per worker, all bound with
//! `SO_REUSEPORT`: the kernel spreads visitors across them, and each worker
//! accepts its own visitors and serves them where they arrived, so a visitor
//! never crosses threads. A UDP service's port is one UDP socket per worker
//! in the same way (the kernel hashes each source to one socket, so a flow
//! stays on its worker; see [`super::udp`]). A port is a protocol and a
//! number: a TCP and a UDP service may hold the same number. Ports this
//! process holds are claimed process-wide, so two servers in one process
//! never join each other's group.

use std::collections::HashSet;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tracing::{debug, info};

use super::credentials::Principal;
use super::metrics::{Counters, Reason};
use super::refusal::Refusal;
use super::session::Session;
use super::udp;
use crate::config::Protocol;
use crate::metrics::{Sharded, Traffic};
use crate::protocol::{ClientId, SessionId};
use crate::runtime::{self, Task};
use crate::tasks::{TaskSet, lock};
use crate::transport::{self, Transport};

/// Public ports (live and lingering) the whole server keeps open; each holds
/// one listener (a descriptor) per worker. Lingering services count too, so
/// clients that register and vanish in a loop cannot run the server out of
/// descriptors.
pub const MAX_PUBLIC_PORTS: usize = 4096;
/// Random ports tried when the server picks one in a large allowed range.
const PICK_ATTEMPTS: usize = 128;
/// Ended sessions remembered, so that a data link a client dialled just
/// before its session ended (it was exiting, or reconnecting) is no news in
/// the log. Session ids are random: a stranger cannot name one. 16 bytes
/// each, so 16 KiB at most.
const RECENTLY_ENDED: usize = 1024;

pub(crate) struct Registry<T: Transport> {
    /// Where public ports bind (`public_bind`, else the control port's IP).
    public_ip: IpAddr,
    sessions: Mutex<HashMap<SessionId, Weak<Session<T>>>>,
    ports: Mutex<HashMap<Port, Arc<Service<T>>>>,
    /// Grace-period timers of lingering services.
    reapers: TaskSet,
    epochs: AtomicU64,
    /// The last [`RECENTLY_ENDED`] sessions that ended, oldest first.
    ended: Mutex<VecDeque<SessionId>>,
    counters: Arc<Counters>,
}

/// A public port: TCP and UDP numbers are separate.
pub(crate) type Port = (Protocol, u16);

/// What a `Register` asks for: a name, a port number (0: the server picks),
/// the public-address flag and the protocol.
pub(crate) type Wanted<'a> = (&'a str, u16, bool, Protocol);

pub(crate) struct Service<T: Transport> {
    pub port: u16,
    pub protocol: Protocol,
    /// A UDP service's flows now, bounded by `max_udp_flows`.
    pub(super) flows: AtomicUsize,
    state: Mutex<ServiceState<T>>,
    /// The accept loops, one per worker; dropped (cancelled) with the service.
    /// Each holds the port's claim, so the port is claimed until the last of
    /// its listeners is closed (on its worker, possibly after the service).
    listeners: Mutex<Vec<Task<()>>>,
    /// Its visitors and their bytes; kept while the port lingers, so a
    /// client's reconnect does not reset them.
    pub traffic: Sharded<Traffic>,
    /// Its client asked for the public address in each `Start` (the
    /// service writes PROXY headers); set again by every registration.
    public_address: AtomicBool,
}

/// Public addresses this process listens on; see the module docs.
static CLAIMED: LazyLock<Mutex<HashSet<(Protocol, SocketAddr)>>> = LazyLock::new(Default::default);

/// A claimed address, released on drop.
pub(super) struct Claim((Protocol, SocketAddr));

impl Claim {
    fn take(protocol: Protocol, addr: SocketAddr) -> Option<Claim> {
        let key = (protocol, addr);
        lock(&CLAIMED).insert(key).then_some(Claim(key))
    }

    fn port(&self) -> u16 {
        self.0.1.port()
    }
}

/// A port's sockets, one per worker, before their loops start.
enum Bound {
    Tcp(Vec<std::net::TcpListener>),
    Udp(Vec<std::net::UdpSocket>),
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&CLAIMED).remove(&self.0);
    }
}

struct ServiceState<T: Transport> {
    name: String,
    client_id: ClientId,
    /// Whose port it is: only a session of the same principal reclaims it.
    principal: Principal,
    owner: Weak<Session<T>>,
    /// Bumped whenever ownership changes, so a grace timer started for one
    /// lingering period cannot remove a service reclaimed since.
    epoch: u64,
}

impl<T: Transport> Service<T> {
    pub fn name(&self) -> String {
        lock(&self.state).name.clone()
    }

    pub fn owner(&self) -> Option<Arc<Session<T>>> {
        lock(&self.state).owner.upgrade()
    }

    /// Whether each `Start` names the address the visitor connected to.
    pub fn wants_public_address(&self) -> bool {
        self.public_address.load(Ordering::Relaxed)
    }

    /// Closes the public port now. Visitors hold their service (for its
    /// counters), so dropping it from the registry alone would leave the
    /// listeners accepting while one of them lives.
    fn close(&self) {
        let listeners = std::mem::take(&mut *lock(&self.listeners));
        drop(listeners);
    }

    /// [`Service::close`], returning once every listener is closed on its
    /// worker: a visitor that connects after this is refused.
    async fn close_now(&self) {
        let listeners = std::mem::take(&mut *lock(&self.listeners));
        for listener in listeners {
            listener.cancel().await;
        }
    }
}

impl<T: Transport> Registry<T> {
    pub fn new(public_ip: IpAddr, counters: Arc<Counters>) -> Self {
        Registry {
            public_ip,
            counters,
            sessions: Mutex::new(HashMap::new()),
            ports: Mutex::new(HashMap::new()),
            reapers: TaskSet::new(),
            epochs: AtomicU64::new(0),
            ended: Mutex::new(VecDeque::new()),
        }
    }

    /// Records a new session. Older sessions of the same client process are
    /// superseded: their services are parked at once (so this session can
    /// reclaim them) and they are told to end.
    pub fn add_session(self: &Arc<Self>, session: &Arc<Session<T>>, grace: Duration) {
        let older: Vec<Arc<Session<T>>> = {
            let mut sessions = lock(&self.sessions);
            sessions.insert(session.id, Arc::downgrade(session));
            sessions
                .values()
                .filter_map(Weak::upgrade)
                .filter(|s| s.client_id == session.client_id && s.id != session.id)
                // A client id is sent in the clear: it names a process of
                // the same principal, never another client's.
                .filter(|s| s.credential.principal == session.credential.principal)
                .collect()
        };
        for old in older {
            self.end_session(&old, false, grace);
            old.supersede();
        }
    }

    /// Live sessions (for the session cap).
    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Every live session (for the admin endpoint).
    pub fn sessions(&self) -> Vec<Arc<Session<T>>> {
        lock(&self.sessions)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Every public port, live and lingering, by port number.
    pub fn services(&self) -> Vec<Arc<Service<T>>> {
        let mut services: Vec<_> = lock(&self.ports).values().cloned().collect();
        services.sort_by_key(|s| s.port);
        services
    }

    /// Where public ports bind.
    pub fn public_ip(&self) -> IpAddr {
        self.public_ip
    }

    pub fn session(&self, id: &SessionId) -> Option<Arc<Session<T>>> {
        lock(&self.sessions).get(id).and_then(Weak::upgrade)
    }

    /// Whether `id` is one of the last sessions that ended.
    pub fn recently_ended(&self, id: &SessionId) -> bool {
        lock(&self.ended).contains(id)
    }

    /// Binds (or reclaims) a public port for `name` owned by `session`;
    /// the flag and protocol as in `Register`.
    pub async fn register(
        self: &Arc<Self>,
        session: &Arc<Session<T>>,
        wanted: Wanted<'_>,
        allowed: &(dyn Fn(u16) -> bool + Sync),
    ) -> Result<Arc<Service<T>>, Refusal> {
        if let Some(service) = self.reclaim(session, wanted)? {
            return Ok(service);
        }
        if lock(&self.ports).len() >= MAX_PUBLIC_PORTS {
            return Err(Refusal::TooManyPorts {
                max: MAX_PUBLIC_PORTS,
            });
        }
        let (name, port, public_address, protocol) = wanted;
        let (bound, claim) = if port == 0 {
            self.pick(protocol, allowed)?
        } else {
            self.bind(protocol, port)?
        };
        let port = claim.port();
        let service = Arc::new(Service {
            port,
            protocol,
            flows: AtomicUsize::new(0),
            state: Mutex::new(ServiceState {
                name: name.to_owned(),
                client_id: session.client_id,
                principal: session.credential.principal.clone(),
                owner: Arc::downgrade(session),
                epoch: 0,
            }),
            listeners: Mutex::new(Vec::new()),
            traffic: Sharded::new(),
            public_address: AtomicBool::new(public_address),
        });
        let claim = Arc::new(claim);
        {
            let mut ports = lock(&self.ports);
            if ports.contains_key(&(protocol, port)) {
                return Err(Refusal::PortInUse { port });
            }
            ports.insert((protocol, port), service.clone());
        }
        let weak = || Arc::downgrade(&service);
        let counters = &self.counters;
        let tasks = match bound {
            Bound::Tcp(listeners) => listeners
                .into_iter()
                .enumerate()
                .map(|(worker, l)| {
                    let accept = accept_visitors(l, weak(), claim.clone(), counters.clone());
                    runtime::spawn_at(worker, accept)
                })
                .collect(),
            Bound::Udp(sockets) => sockets
                .into_iter()
                .enumerate()
                .map(|(worker, socket)| {
                    let receive = udp::receive(socket, weak(), claim.clone(), counters.clone());
                    runtime::spawn_at(worker, receive)
                })
                .collect(),
        };
        *lock(&service.listeners) = tasks;
        Ok(service)
    }

    /// Takes over a lingering service that this registration asks for again.
    fn reclaim(
        &self,
        session: &Arc<Session<T>>,
        (name, port, public_address, protocol): Wanted<'_>,
    ) -> Result<Option<Arc<Service<T>>>, Refusal> {
        let ports = lock(&self.ports);
        let found = if port != 0 {
            ports.get(&(protocol, port)).cloned()
        } else {
            ports
                .values()
                .find(|s| {
                    let st = lock(&s.state);
                    s.protocol == protocol
                        && st.owner.strong_count() == 0
                        && st.client_id == session.client_id
                        && st.principal == session.credential.principal
                        && st.name == name
                })
                .cloned()
        };
        let Some(service) = found else {
            return Ok(None);
        };
        let mut st = lock(&service.state);
        if st.owner.strong_count() > 0 || st.principal != session.credential.principal {
            return Err(Refusal::PortInUse { port });
        }
        st.owner = Arc::downgrade(session);
        st.name = name.to_owned();
        st.client_id = session.client_id;
        st.epoch = self.next_epoch();
        service
            .public_address
            .store(public_address, Ordering::Relaxed);
        drop(st);
        Ok(Some(service))
    }

    /// One listener (or UDP socket) per worker on `port`, all with
    /// `SO_REUSEPORT`.
    fn bind(&self, protocol: Protocol, port: u16) -> Result<(Bound, Claim), Refusal> {
        let addr = SocketAddr::new(self.public_ip, port);
        let claim = Claim::take(protocol, addr).ok_or(Refusal::PortInUse { port })?;
        let workers = runtime::workers();
        let bound = match protocol {
            Protocol::Tcp => runtime::sys::listen_group(addr, workers).map(Bound::Tcp),
            Protocol::Udp => runtime::sys::udp_group(addr, workers).map(Bound::Udp),
        };
        let bound = bound.map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => Refusal::PortInUse { port },
            _ => Refusal::Bind(e),
        })?;
        Ok((bound, claim))
    }

    fn pick(
        &self,
        protocol: Protocol,
        allowed: &(dyn Fn(u16) -> bool + Sync),
    ) -> Result<(Bound, Claim), Refusal> {
        let taken = |port: u16| lock(&self.ports).contains_key(&(protocol, port));
        for _ in 0..PICK_ATTEMPTS {
            let port = fastrand::u16(1..=u16::MAX);
            if !allowed(port) || taken(port) {
                continue;
            }
            if let Ok(bound) = self.bind(protocol, port) {
                return Ok(bound);
            }
        }
        // A small or crowded range: walk it once.
        for port in 1..=u16::MAX {
            if allowed(port) && !taken(port) {
                if let Ok(bound) = self.bind(protocol, port) {
                    return Ok(bound);
                }
            }
        }
        Err(Refusal::NoFreePort)
    }

    /// The session ended. Its services are removed now (`graceful`) or linger for
    /// `grace` so the client can reclaim them.
    pub fn end_session(self: &Arc<Self>, session: &Session<T>, graceful: bool, grace: Duration) {
        if lock(&self.sessions).remove(&session.id).is_some() {
            let mut ended = lock(&self.ended);
            if ended.len() == RECENTLY_ENDED {
                ended.pop_front();
            }
            ended.push_back(session.id);
        }
        let mut lingering = Vec::new();
        lock(&self.ports).retain(|port, service| {
            let mut st = lock(&service.state);
            if !std::ptr::eq(st.owner.as_ptr(), session) {
                return true;
            }
            if graceful {
                info!("service {} on port {} closed", st.name, port_name(port));
                service.close();
                return false;
            }
            st.owner = Weak::new();
            st.epoch = self.next_epoch();
            lingering.push((*port, st.epoch));
            true
        });
        if lingering.is_empty() {
            return;
        }
        let registry = Arc::downgrade(self);
        self.reapers.spawn(async move {
            smol::Timer::after(grace).await;
            if let Some(registry) = registry.upgrade() {
                registry.expire(&lingering);
            }
        });
    }

    /// Epochs are unique registry-wide, so a grace timer of one service can never
    /// match a later service on the same port.
    fn next_epoch(&self) -> u64 {
        self.epochs.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn expire(&self, candidates: &[(Port, u64)]) {
        let mut ports = lock(&self.ports);
        for (port, epoch) in candidates {
            let expired = ports.get(port).is_some_and(|s| {
                let st = lock(&s.state);
                st.epoch == *epoch && st.owner.strong_count() == 0
            });
            if expired {
                if let Some(service) = ports.remove(port) {
                    service.close();
                    info!(
                        "client did not come back: service {} on port {} closed",
                        service.name(),
                        port_name(port)
                    );
                }
            }
        }
    }

    /// `session`'s own service `name`, if it has one at `port` (or `port`
    /// is 0) and its flag is not `public_address` yet: the flag set, its
    /// port returned. Such a `Register` only changes how its visitors are
    /// started; the port and the visitors in flight stay. One that changes
    /// nothing is `None`: a duplicate, refused as before.
    pub fn update(
        &self,
        session: &Session<T>,
        (name, port, public_address, protocol): Wanted<'_>,
    ) -> Option<u16> {
        let ports = lock(&self.ports);
        let service = ports.values().find(|s| {
            let st = lock(&s.state);
            std::ptr::eq(st.owner.as_ptr(), session) && st.name == name
        })?;
        if service.protocol != protocol {
            return None;
        }
        let same = service.public_address.load(Ordering::Relaxed) == public_address;
        if same || (port != 0 && port != service.port) {
            return None;
        }
        service
            .public_address
            .store(public_address, Ordering::Relaxed);
        Some(service.port)
    }

    /// Closes the port of `session`'s service `name` (the client
    /// unregistered it) and returns it once closed; its visitors in flight
    /// go on.
    pub async fn release(&self, session: &Session<T>, name: &str) -> Option<u16> {
        let released = self.release_where(session, |st| st.name == name).await;
        released.first().copied()
    }

    /// Closes every port `session` owns (its credentials were revoked) and
    /// returns them once they are closed.
    pub async fn release_all(&self, session: &Session<T>) -> Vec<u16> {
        self.release_where(session, |_| true).await
    }

    /// Removes the services of `session` that `pick` chooses and closes
    /// their listeners, returning once closed: a visitor after this is
    /// refused.
    async fn release_where(
        &self,
        session: &Session<T>,
        pick: impl Fn(&ServiceState<T>) -> bool,
    ) -> Vec<u16> {
        let released: Vec<Arc<Service<T>>> = {
            let mut ports = lock(&self.ports);
            let chosen: Vec<Port> = ports
                .iter()
                .filter(|(_, s)| {
                    let st = lock(&s.state);
                    std::ptr::eq(st.owner.as_ptr(), session) && pick(&st)
                })
                .map(|(port, _)| *port)
                .collect();
            chosen.iter().filter_map(|p| ports.remove(p)).collect()
        };
        for service in &released {
            service.close_now().await;
        }
        released.iter().map(|s| s.port).collect()
    }

    /// Closes every public listener, live and lingering (a drain starts),
    /// and returns once they are closed on their workers: no new visitor is
    /// accepted after this; the ones in flight go on.
    pub async fn close_ports(&self) {
        let ports: Vec<_> = lock(&self.ports).drain().map(|(_, s)| s).collect();
        self.reapers.cancel_all();
        for service in ports {
            service.close_now().await;
        }
    }

    /// Closes every public listener and forgets every session (server stop).
    pub fn clear(&self) {
        let ports: Vec<_> = lock(&self.ports).drain().map(|(_, s)| s).collect();
        ports.iter().for_each(|s| s.close());
        lock(&self.sessions).clear();
        self.reapers.cancel_all();
    }
}

/// Accepts visitors on this worker's listener of a public port and hands each
/// to the owning session, which serves it on this worker.
async fn accept_visitors<T: Transport>(
    listener: std::net::TcpListener,
    service: Weak<Service<T>>,
    claim: Arc<Claim>,
    counters: Arc<Counters>,
) {
    let listener = match runtime::TcpListener::from_std(listener) {
        Ok(listener) => Listening {
            listener,
            _claim: claim,
        },
        Err(e) => return debug!("public listener not registered: {e}"),
    };
    let listener = &listener.listener;
    loop {
        let (visitor, addr) = match transport::accept(listener).await {
            Ok(v) => v,
            Err(e) => {
                debug!("public accept failed: {e}");
                runtime::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(service) = service.upgrade() else {
            return;
        };
        match service.owner() {
            Some(session) => session.visit(service, visitor, addr),
            None => {
                counters.refused(Reason::NoClient);
                // Its client is gone (the port lingers for its return): the
                // visitor is refused with a reset, as a closed port would be.
                debug!(
                    "visitor {addr} refused: port {} has no client right now",
                    service.port
                );
                visitor.abort();
            }
        }
    }
}

/// `10080` for a TCP port, `10053/udp` for a UDP one, in logs.
pub(crate) fn port_name((protocol, port): &Port) -> String {
    match protocol {
        Protocol::Tcp => port.to_string(),
        Protocol::Udp => format!("{port}/udp"),
    }
}

/// A public listener and the claim on its port: fields drop in order, so the
/// port is released only once the listener is closed.
struct Listening {
    listener: runtime::TcpListener,
    _claim: Arc<Claim>,
}
