//! Who may hold a handshake open at the control port, and who goes when too
//! many do.
//!
//! A connection is pending from accept until it has authenticated. Pending
//! connections cost a socket and a task each, so they are budgeted — and a
//! flood of connections that never authenticate must not be able to lock out
//! the clients the server is there for:
//!
//! - **Known** connections show, in their first bytes, a data-link hello that
//!   names a live session (see `handshake::peek_hello`): a client that already
//!   authenticated opening its data links. They have a budget of their own
//!   ([`MAX_PENDING_KNOWN`]) that strangers cannot touch, checked before any
//!   expensive step.
//! - **Strangers** (everything else: control links, TLS links whose hello
//!   cannot be peeked, data links naming no live session) share
//!   [`MAX_PENDING_HANDSHAKES`], and each source address (each /64 for IPv6)
//!   may hold at most [`MAX_PENDING_PER_SOURCE`] of them.
//! - When a budget is full, the **oldest** pending handshake of that budget is
//!   shed, never the newest connection: a legitimate handshake takes a round
//!   trip or two, so it completes long before a flood cycles through the
//!   budget, while a silent connection is always the oldest in the end.
//!
//! Together with the first-byte deadline (`hello_timeout`) this keeps a flood
//! of silent or trickling connections from one address to its own
//! per-source share, and from many addresses to the strangers' budget.

use smol::channel::{Receiver, Sender, bounded};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use crate::tasks::lock;

/// Strangers in their handshake at once, server-wide. Each costs a socket and
/// a small task for at most `handshake_timeout` (first bytes within
/// `hello_timeout`); past this the oldest is shed.
pub const MAX_PENDING_HANDSHAKES: usize = 1024;
/// Strangers in their handshake at once from one address (one /64 for IPv6):
/// one address cannot take more than this share of the budget. A NAT with
/// many clients behind it still has room: a handshake lasts milliseconds.
pub const MAX_PENDING_PER_SOURCE: usize = 64;
/// Connections naming a live session (data links of authenticated clients)
/// in their handshake at once: the share strangers cannot use.
pub const MAX_PENDING_KNOWN: usize = 1024;

/// Which budget a connection is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Stranger,
    Known,
}

/// Why a pending handshake was shed (for the folded log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShedCause {
    /// Its source had [`MAX_PENDING_PER_SOURCE`] pending.
    PerSource,
    /// Its budget was full.
    Budget,
}

impl ShedCause {
    pub fn describe(self) -> &'static str {
        match self {
            ShedCause::PerSource => "pending handshake shed: per-address handshake limit",
            ShedCause::Budget => "pending handshake shed: handshake budget full",
        }
    }
}

/// The budgets; see the module docs.
pub(crate) struct Admission {
    inner: Mutex<Inner>,
}

struct Inner {
    next_seq: u64,
    strangers: Budget,
    known: Budget,
}

/// One budget: pending handshakes oldest first, and by source.
struct Budget {
    max: usize,
    per_source: usize,
    /// By admission order; the sender wakes the handshake to shed it.
    pending: BTreeMap<u64, (IpAddr, Sender<()>)>,
    by_source: HashMap<IpAddr, VecDeque<u64>>,
}

/// A connection's place in a budget while it is pending; dropping it (the
/// handshake ended, or the connection became a session) frees the place.
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    class: Class,
    seq: u64,
    shed: Receiver<()>,
}

/// Completes when the ticket's handshake is shed; never when it ends normally.
pub(crate) struct Shed(Receiver<()>);

impl Shed {
    pub async fn wait(self) {
        if self.0.recv().await.is_err() {
            // The place was freed normally: never shed.
            std::future::pending::<()>().await;
        }
    }
}

impl Admission {
    pub fn new() -> Self {
        Self::with_limits(
            MAX_PENDING_HANDSHAKES,
            MAX_PENDING_PER_SOURCE,
            MAX_PENDING_KNOWN,
        )
    }

    pub fn with_limits(max: usize, per_source: usize, known: usize) -> Self {
        Admission {
            inner: Mutex::new(Inner {
                next_seq: 0,
                strangers: Budget::new(max, per_source),
                // Known connections are few per client; the per-source cap is
                // the whole budget (many clients may share one NAT address).
                known: Budget::new(known, known),
            }),
        }
    }

    /// Admits a connection from `ip`, shedding the oldest pending handshake of
    /// its budget when needed; returns who was shed, for the log.
    pub fn admit(
        self: &Arc<Self>,
        class: Class,
        ip: IpAddr,
    ) -> (Ticket, Option<(ShedCause, IpAddr)>) {
        let source = source_key(ip);
        let (tx, rx) = bounded(1);
        let mut inner = lock(&self.inner);
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let shed = inner.budget(class).make_room(source);
        inner.budget(class).insert(seq, source, tx);
        drop(inner);
        let ticket = Ticket {
            admission: self.clone(),
            class,
            seq,
            shed: rx,
        };
        (ticket, shed)
    }

    /// Pending handshakes in `class`.
    #[cfg(test)]
    pub fn pending(&self, class: Class) -> usize {
        lock(&self.inner).budget(class).pending.len()
    }
}

impl Inner {
    fn budget(&mut self, class: Class) -> &mut Budget {
        match class {
            Class::Stranger => &mut self.strangers,
            Class::Known => &mut self.known,
        }
    }
}

impl Budget {
    fn new(max: usize, per_source: usize) -> Self {
        Budget {
            max: max.max(1),
            per_source: per_source.max(1),
            pending: BTreeMap::new(),
            by_source: HashMap::new(),
        }
    }

    /// Sheds the oldest of `source` when it is at its share, else the oldest
    /// overall when the budget is full.
    fn make_room(&mut self, source: IpAddr) -> Option<(ShedCause, IpAddr)> {
        let own = self.by_source.get(&source).map_or(0, VecDeque::len);
        let (cause, victim) = if own >= self.per_source {
            let seq = self.by_source.get(&source)?.front().copied()?;
            (ShedCause::PerSource, seq)
        } else if self.pending.len() >= self.max {
            (ShedCause::Budget, *self.pending.keys().next()?)
        } else {
            return None;
        };
        let (ip, tx) = self.remove(victim)?;
        // Wakes the handshake, which then closes its connection.
        let _ = tx.try_send(());
        Some((cause, ip))
    }

    fn insert(&mut self, seq: u64, source: IpAddr, tx: Sender<()>) {
        self.pending.insert(seq, (source, tx));
        self.by_source.entry(source).or_default().push_back(seq);
    }

    fn remove(&mut self, seq: u64) -> Option<(IpAddr, Sender<()>)> {
        let (source, tx) = self.pending.remove(&seq)?;
        if let Some(list) = self.by_source.get_mut(&source) {
            list.retain(|&s| s != seq);
            if list.is_empty() {
                self.by_source.remove(&source);
            }
        }
        Some((source, tx))
    }
}

impl Ticket {
    /// Completes when this handshake is shed.
    pub fn shed(&self) -> Shed {
        Shed(self.shed.clone())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Already gone when it was shed.
        lock(&self.admission.inner)
            .budget(self.class)
            .remove(self.seq);
    }
}

/// The address a connection is budgeted under: IPv4 as is (IPv4-mapped IPv6
/// too), IPv6 by its /64 — one host usually holds a whole /64, so counting
/// single IPv6 addresses would give one attacker 2^64 shares.
pub(crate) fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    fn is_shed(ticket: &Ticket) -> bool {
        ticket.shed.try_recv().is_ok()
    }

    #[test]
    fn a_source_at_its_share_loses_its_oldest_not_the_newcomer() {
        let admission = Arc::new(Admission::with_limits(100, 2, 10));
        let (a, none) = admission.admit(Class::Stranger, v4(1));
        assert!(none.is_none());
        let (b, _) = admission.admit(Class::Stranger, v4(1));
        let (other, _) = admission.admit(Class::Stranger, v4(2));
        let (c, shed) = admission.admit(Class::Stranger, v4(1));
        assert_eq!(shed, Some((ShedCause::PerSource, v4(1))));
        assert!(is_shed(&a));
        assert!(!is_shed(&b) && !is_shed(&c) && !is_shed(&other));
        assert_eq!(admission.pending(Class::Stranger), 3);
        drop(a);
        assert_eq!(
            admission.pending(Class::Stranger),
            3,
            "a shed place is freed once"
        );
        drop((b, c, other));
        assert_eq!(admission.pending(Class::Stranger), 0);
    }

    #[test]
    fn a_full_budget_sheds_the_oldest_and_strangers_never_touch_the_known_share() {
        let admission = Arc::new(Admission::with_limits(2, 2, 1));
        let (known, _) = admission.admit(Class::Known, v4(9));
        let (a, _) = admission.admit(Class::Stranger, v4(1));
        let (b, _) = admission.admit(Class::Stranger, v4(2));
        let (c, shed) = admission.admit(Class::Stranger, v4(3));
        assert_eq!(shed, Some((ShedCause::Budget, v4(1))));
        assert!(is_shed(&a) && !is_shed(&b) && !is_shed(&c));
        assert!(!is_shed(&known), "the known share is separate");
        assert_eq!(admission.pending(Class::Known), 1);
    }

    #[test]
    fn a_normally_freed_place_never_reads_as_shed() {
        let admission = Arc::new(Admission::with_limits(2, 2, 1));
        let (ticket, _) = admission.admit(Class::Stranger, v4(1));
        let shed = ticket.shed();
        drop(ticket);
        let waited = smol::block_on(futures_lite::future::or(
            async {
                shed.wait().await;
                true
            },
            async { false },
        ));
        assert!(!waited);
    }

    #[test]
    fn ipv6_is_budgeted_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap_or(v4(0));
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap_or(v4(0));
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap_or(v4(0));
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap_or(v4(0));
        assert_eq!(source_key(mapped), v4(1));
    }
}
