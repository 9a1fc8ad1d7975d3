//! Thin async drivers: frames in and out of a byte stream, decisions left to
//! the machines. Deadlines are the caller's (one for the whole handshake, see
//! `crate::wire::with_timeout`).

use futures_lite::{AsyncRead, AsyncWrite};

use super::{Accepted, ClientHandshake, ClientStep, HandshakeError};
use crate::protocol::Frame;
use crate::wire::{read_frame, write_frame};

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
        match machine.on_frame(receive(link).await?)? {
            ClientStep::Send(frame) => send(link, &frame).await?,
            ClientStep::SendLast(frame) => {
                send(link, &frame).await?;
                return Ok(None);
            }
            ClientStep::Accepted(accepted) => return Ok(Some(accepted)),
        }
    }
}

/// Reads the peer's next frame.
pub async fn receive<S: AsyncRead + Unpin>(link: &mut S) -> Result<Frame, HandshakeError> {
    read_frame(link).await.map_err(HandshakeError::from)
}

/// Writes one frame and flushes it.
pub async fn send<S: AsyncWrite + Unpin>(
    link: &mut S,
    frame: &Frame,
) -> Result<(), HandshakeError> {
    write_frame(link, frame).await.map_err(HandshakeError::from)
}
