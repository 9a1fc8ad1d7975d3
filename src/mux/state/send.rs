//! The send schedule: what the writer puts on the link next.

use super::*;

impl State {
    /// Encodes the next batch of frames into `out`: control frames first, then
    /// one data frame per ready stream in turn (round-robin), each at most
    /// [`MAX_DATA_LEN`] and within the stream's credit.
    pub fn fill(&mut self, out: &mut Vec<u8>) {
        while let Some((h, payload)) = self.control.pop_front() {
            out.extend_from_slice(&h.encode());
            out.extend_from_slice(&payload);
            if out.len() >= BATCH_LEN {
                return;
            }
        }
        while out.len() < BATCH_LEN {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            s.in_ready = false;
            let n = (s.send.len() as u64)
                .min(s.credit)
                .min(u64::from(MAX_DATA_LEN)) as usize;
            if n > 0 {
                out.extend_from_slice(&Header::new(Kind::Data, 0, id, n as u32).encode());
                let (a, b) = front(&s.send, n);
                out.extend_from_slice(a);
                out.extend_from_slice(b);
                s.send.drain(..n);
                s.credit -= n as u64;
                if let Some(w) = s.write_waker.take() {
                    w.wake();
                }
            }
            if !s.send.is_empty() && s.credit > 0 {
                s.in_ready = true;
                self.ready.push_back(id);
            } else if s.send.is_empty() && s.fin_requested && !s.fin_sent && !s.reset {
                s.fin_sent = true;
                out.extend_from_slice(&Header::new(Kind::Fin, 0, id, 0).encode());
                self.reap(id);
            }
        }
    }
}
