//! Frames from the peer, applied to the state: every check a hostile peer
//! could fail ends the session with a [`Violation`].

use super::*;

impl State {
    fn peer_opens_odd(&self) -> bool {
        self.side == Side::Server
    }

    /// Applies one frame from the peer.
    pub fn on_frame(&mut self, h: Header, payload: &[u8]) -> Result<(), Violation> {
        match h.kind {
            Kind::Open => self.on_open(h.stream, payload),
            Kind::Data => self.on_data(h.stream, payload),
            Kind::Window => self.on_window(h.stream, u64::from(h.length)),
            Kind::Fin => {
                if let Some(s) = self.streams.get_mut(&h.stream) {
                    s.remote_fin = true;
                    s.wake();
                }
                self.reap(h.stream);
                Ok(())
            }
            Kind::Reset => {
                if let Some(s) = self.streams.get_mut(&h.stream) {
                    s.reset = true;
                    s.send.clear();
                    s.wake();
                }
                self.reap(h.stream);
                Ok(())
            }
            Kind::Ping => {
                if h.flags & FLAG_ACK == 0 {
                    let pong = Header::new(Kind::Ping, FLAG_ACK, 0, h.length);
                    self.control.push_back((pong, Vec::new()));
                } else if let Some((nonce, sent)) = self.ping {
                    if nonce == h.length {
                        self.rtt = Some(sent.elapsed());
                        self.ping = None;
                    }
                }
                Ok(())
            }
            Kind::GoAway => {
                self.go_away_received = true;
                Ok(())
            }
        }
    }

    fn on_open(&mut self, id: u32, payload: &[u8]) -> Result<(), Violation> {
        if (id % 2 == 1) != self.peer_opens_odd() {
            return Err(Violation::WrongParity { stream: id });
        }
        if id <= self.last_peer_id {
            let last = self.last_peer_id;
            return Err(Violation::ReusedId { stream: id, last });
        }
        self.last_peer_id = id;
        let refuse = !self.config.accept_streams || self.go_away_sent || self.closed.is_some();
        if refuse || self.admit().is_err() {
            let reset = Header::new(Kind::Reset, 0, id, RESET_REFUSED);
            self.control.push_back((reset, Vec::new()));
            return Ok(());
        }
        self.insert(id);
        self.accepted.push_back((id, payload.to_vec()));
        if let Some(w) = self.accept_waker.take() {
            w.wake();
        }
        Ok(())
    }

    fn on_data(&mut self, id: u32, payload: &[u8]) -> Result<(), Violation> {
        let Some(s) = self.streams.get_mut(&id) else {
            // A stream we already reset or finished: its in-flight bytes are
            // dropped, never buffered.
            return Ok(());
        };
        let len = payload.len() as u64;
        if s.remote_fin {
            return Err(Violation::DataAfterFin { stream: id });
        }
        if len > s.recv_credit {
            return Err(Violation::BeyondCredit {
                stream: id,
                len,
                credit: s.recv_credit,
            });
        }
        if s.reset || s.orphan {
            return Ok(());
        }
        s.recv_credit -= len;
        s.recv.extend(payload);
        if let Some(w) = s.read_waker.take() {
            w.wake();
        }
        Ok(())
    }

    fn on_window(&mut self, id: u32, grant: u64) -> Result<(), Violation> {
        let Some(s) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        s.credit += grant;
        if s.credit > MAX_CREDIT {
            return Err(Violation::CreditOverflow {
                stream: id,
                credit: s.credit,
                max: MAX_CREDIT,
            });
        }
        if !s.send.is_empty() && !s.in_ready {
            s.in_ready = true;
            self.ready.push_back(id);
        }
        Ok(())
    }
}
