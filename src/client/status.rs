//! The client's health and status, from each server's session state (see
//! `metrics.rs`).
//!
//! Healthy while at least one server serves every service: visitors then
//! have a way in, and a client restarted for one server's outage would gain
//! nothing. Each server's own state is in the status (and in the
//! `porthole_client_connected{server}` gauge) for alerting per server.

use super::context::Context;
use super::metrics::{Registration, State};
use super::upstream::Upstream;
use crate::admin::status::{ServerStatus, ServiceStatus};
use crate::admin::{Health, Status};
use crate::tasks::lock;
use crate::transport::Transport;

pub(super) fn health<T: Transport>(ctx: &Context<T>) -> Health {
    let mut problems = Vec::new();
    for server in &ctx.upstreams {
        match problem(ctx, server) {
            None => return Health::Serving,
            Some(why) => problems.push(why),
        }
    }
    match problems.as_slice() {
        [one] => Health::Unavailable(one.clone()),
        _ => Health::Unavailable(format!(
            "no server serves every service: {}",
            problems.join("; ")
        )),
    }
}

/// Why `server` does not serve every service in force; `None` if it does.
fn problem<T: Transport>(ctx: &Context<T>, server: &Upstream<T>) -> Option<String> {
    let st = lock(&server.state);
    if let Some(why) = &st.gave_up {
        return Some(format!("gave up on {server}: {why}"));
    }
    if st.connected.is_none() {
        let why = st
            .last_loss
            .as_deref()
            .map_or(String::new(), |e| format!(": {e}"));
        return Some(format!("not connected to {server}{why}"));
    }
    ctx.live()
        .services
        .iter()
        .find_map(|s| match st.registration(&s.name) {
            Registration::Public(_) => None,
            Registration::Pending => Some(format!(
                "service {} is not registered with {server} yet",
                s.name
            )),
            Registration::Refused(why) => {
                Some(format!("service {} refused by {server}: {why}", s.name))
            }
        })
}

pub(super) fn status<T: Transport>(ctx: &Context<T>) -> Status {
    let problem = match health(ctx) {
        Health::Serving => None,
        Health::Unavailable(why) => Some(why),
    };
    let mut status = Status::new("client", problem);
    status.upstream = Some(ctx.settings.server.join(", "));
    status.servers = ctx.upstreams.iter().map(|u| server_status(u)).collect();
    let states: Vec<_> = ctx.upstreams.iter().map(|u| lock(&u.state)).collect();
    status.services = ctx
        .live()
        .services
        .iter()
        .map(|s| {
            let (state, public) = service_state(&states, &s.name);
            ServiceStatus {
                name: s.name.clone(),
                state,
                public,
                local: Some(s.local.clone()),
                client: None,
                visitors: ctx
                    .counters
                    .service(&s.name)
                    .map(|c| c.traffic.totals())
                    .unwrap_or_default(),
            }
        })
        .collect();
    status
}

fn server_status<T: Transport>(server: &Upstream<T>) -> ServerStatus {
    let st = lock(&server.state);
    let state = match (&st.gave_up, st.connected, &st.last_loss) {
        (Some(why), _, _) => format!("gave up: {why}"),
        (None, Some(_), _) => "connected".to_owned(),
        (None, None, Some(why)) => format!("reconnecting: {why}"),
        (None, None, None) => "connecting".to_owned(),
    };
    let mut services: Vec<String> = st.public().map(str::to_owned).collect();
    services.sort();
    ServerStatus {
        address: server.address.clone(),
        state,
        session: st.session.clone(),
        connected_seconds: st.connected.map_or(0, |t| t.elapsed().as_secs()),
        transport: server.transport.name().to_owned(),
        services,
    }
}

/// A service's state and public addresses over every server: `serving`
/// (at each), `serving at k of n servers`, or else as the first server
/// says (`registering`, `refused: …`), as with one server.
fn service_state(
    states: &[std::sync::MutexGuard<'_, State>],
    name: &str,
) -> (String, Option<String>) {
    let registrations: Vec<Registration> = states.iter().map(|st| st.registration(name)).collect();
    let public: Vec<&str> = registrations
        .iter()
        .filter_map(|r| match r {
            Registration::Public(p) => Some(p.as_str()),
            _ => None,
        })
        .collect();
    let joined = (!public.is_empty()).then(|| public.join(", "));
    let (k, n) = (public.len(), registrations.len());
    let state = if k == n {
        "serving".to_owned()
    } else if k > 0 {
        format!("serving at {k} of {n} servers")
    } else {
        let refused = registrations.iter().find_map(|r| match r {
            Registration::Refused(why) => Some(why),
            _ => None,
        });
        refused.map_or_else(|| "registering".to_owned(), |why| format!("refused: {why}"))
    };
    (state, joined)
}
