//! Thin async drivers: frames in and out of a byte stream, decisions left to
//! the machines. Deadlines are the caller's (one for the whole handshake, see
//! `crate::wire::with_timeout`).

use futures_lite::{AsyncRead, AsyncWrite};

use super::{Accepted, ClientHandshake, ClientStep, HandshakeError};
use crate::protocol::Frame;
use crate::wire::{TlsRecord, read_frame, write_frame};

/// Runs a client handshake on `link`: sends `hello`, then answers the
/// server's frames as `machine` says. `Some` for an accepted control link,
/// `None` for a data link that is ready for its first `Start`.
pub async fn client<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut S,
    mut machine: ClientHandshake<'_>,
    hello: Frame,
) -> Result<Option<Accepted>, HandshakeError> {
    send(link, &hello).await?;
    // At most two frames: the machine refuses anything after its last step.
    loop {
        match machine.on_frame(receive_from_server(link).await?)? {
            ClientStep::Send(frame) => send(link, &frame).await?,
            ClientStep::SendLast(frame) => {
                send(link, &frame).await?;
                return Ok(None);
            }
            ClientStep::Accepted(accepted) => return Ok(Some(accepted)),
        }
    }
}

/// Reads the client's next frame (the server's side). A TLS record instead
/// is [`HandshakeError::ClientSpeaksTls`]: this side reads plain frames, so
/// the client is the one speaking TLS.
pub async fn receive<S: AsyncRead + Unpin>(link: &mut S) -> Result<Frame, HandshakeError> {
    read(link, HandshakeError::ClientSpeaksTls).await
}

/// Reads the server's next frame (the client's side). A TLS record instead
/// (the alert a TLS server answers our plain hello with) is
/// [`HandshakeError::ServerSpeaksTls`].
async fn receive_from_server<S: AsyncRead + Unpin>(link: &mut S) -> Result<Frame, HandshakeError> {
    read(link, HandshakeError::ServerSpeaksTls).await
}

/// Reads a frame; `peer_speaks_tls` when a TLS record came instead.
async fn read<S: AsyncRead + Unpin>(
    link: &mut S,
    peer_speaks_tls: HandshakeError,
) -> Result<Frame, HandshakeError> {
    read_frame(link)
        .await
        .map_err(|e| match TlsRecord::in_error(&e) {
            Some(_) => peer_speaks_tls,
            None => HandshakeError::from(e),
        })
}

/// Writes one frame and flushes it.
pub async fn send<S: AsyncWrite + Unpin>(
    link: &mut S,
    frame: &Frame,
) -> Result<(), HandshakeError> {
    write_frame(link, frame).await.map_err(HandshakeError::from)
}
