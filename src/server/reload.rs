//! Settings replaced while the server runs: a new [`ServerSettings`] is put
//! in force whole (see [`Shared::settings`]), then credentials the new
//! settings no longer admit are revoked
//! ([`credentials::revoke_changed`]). Where new settings come from (SIGHUP,
//! a file watch, a test) is the caller's.

use smol::channel::Receiver;
use smol::net::TcpListener;
use std::io;
use std::sync::Arc;

use super::{Shared, credentials};
use crate::config::ServerSettings;
use crate::shutdown::Signal;
use crate::transport::Transport;

/// [`run`](super::run), putting in force every settings that arrives on
/// `reloads` (until it closes).
pub async fn run_with_reloads<T: Transport>(
    listener: TcpListener,
    settings: ServerSettings,
    transport: T,
    shutdown: Signal,
    reloads: Receiver<ServerSettings>,
) -> io::Result<()> {
    super::serve(listener, settings, transport, shutdown, Some(reloads)).await
}

/// Applies each settings from `reloads` in turn; owned by the server.
pub(super) async fn follow<T: Transport>(
    shared: Arc<Shared<T>>,
    reloads: Receiver<ServerSettings>,
) {
    while let Ok(new) = reloads.recv().await {
        apply(&shared, new);
    }
}

/// Puts `new` in force and revokes what it no longer admits.
pub(crate) fn apply<T: Transport>(shared: &Shared<T>, new: ServerSettings) {
    let old = shared.settings.swap(Arc::new(new));
    credentials::revoke_changed(shared, &old, &shared.settings());
}
