//! Aborting a TCP connection: closing it with a reset (RST) instead of a FIN.
//!
//! A FIN says "every byte was sent": a peer whose protocol has no length of its
//! own (HTTP/1.0 read-to-close, a file streamed to EOF) takes what it got for the
//! whole. So a connection whose transfer was cut — its relay failed, its task was
//! cancelled, the other end's process died — must end with a reset. Setting
//! `SO_LINGER` to 0 before the close does that, and a close that follows never
//! blocks.
//!
//! [`AbortGuard`] turns every way out of a scope but the clean one into a reset:
//! a relay arms it, returns early on an error with `?` or is dropped mid-way
//! (the owning task cancelled), and the guard sets linger 0 on its way out; the
//! clean path disarms it, which costs no system call.

use std::io;

use super::TcpStream;

impl TcpStream {
    /// Makes the coming close of this socket a reset (see the module docs). The
    /// socket stays usable until it is closed.
    pub fn reset_on_close(&self) -> io::Result<()> {
        super::sys::linger_zero(self.get_ref())
    }

    /// Closes the connection with a reset: for a connection cut short, whose
    /// peer must not take what it got for the whole transfer.
    pub fn abort(self) {
        // Failing (it cannot on a socket we own), the close below is a FIN:
        // nothing better is left to do.
        let _ = self.reset_on_close();
    }

    /// A guard that resets this socket's coming close unless disarmed.
    pub fn abort_guard(&self) -> AbortGuard<'_> {
        AbortGuard { socket: Some(self) }
    }
}

/// Sets linger 0 on its socket when dropped armed; see the module docs.
#[must_use = "dropping the guard at once resets the socket"]
#[derive(Debug)]
pub struct AbortGuard<'a> {
    socket: Option<&'a TcpStream>,
}

impl AbortGuard<'_> {
    /// The scope ended cleanly: the socket closes with a FIN as usual.
    pub fn disarm(mut self) {
        self.socket = None;
    }
}

impl Drop for AbortGuard<'_> {
    fn drop(&mut self) {
        if let Some(socket) = self.socket {
            let _ = socket.reset_on_close();
        }
    }
}
