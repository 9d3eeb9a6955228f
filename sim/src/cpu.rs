//! The simulated CPUs: how long each call into a member takes (measured thread CPU time, or
//! counted operations times calibrated costs), on the member's own timeline or on a few
//! shared cores.

use std::time::Duration;

use gka_host::member::{MemberCore, MemberEvent, SwitchEvent};

use crate::queue::{Event, ToSequencer};
use crate::{CostMode, KeyRecord, Sim, SimError};

/// This thread's CPU time.
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc == 0 {
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    } else {
        Duration::ZERO
    }
}

impl Sim {
    /// Runs `call` on the member at place `to` (if still present) when its CPU is free, charges the time it takes (see
    /// [`CostMode`], scaled by the CPU load), and sends what it produced.
    pub(crate) fn account(
        &mut self,
        to: u32,
        call: impl FnOnce(&mut MemberCore, Duration) -> Result<(), gka_host::member::MemberError>,
    ) {
        let cost_mode = self.config.cost;
        let load_factor = 1.0 + self.cpu_load;
        let Some(m) = self.members.get_mut(to as usize).and_then(Option::as_mut) else { return };
        let mut start = self.now_us.max(m.busy_until_us);
        // On shared cores, the call takes the core that frees first.
        let core_index =
            self.cores_free_us.iter().enumerate().min_by_key(|(_, t)| **t).map(|(i, t)| {
                start = start.max(*t);
                i
            });
        let exps0 = m.core.exponentiations_total();
        let (signed0, verified0) = m.core.crypto_counts();
        let measured = matches!(cost_mode, CostMode::Measured(_));
        let cpu0 = if measured { thread_cpu_time() } else { Duration::ZERO };
        let result = call(&mut m.core, Duration::from_micros(start));
        let cost_ms = match cost_mode {
            CostMode::Measured(_) => thread_cpu_time().saturating_sub(cpu0).as_secs_f64() * 1e3,
            CostMode::Counted(c) => {
                let exps = m.core.exponentiations_total() - exps0;
                let (signed, verified) = m.core.crypto_counts();
                exps as f64 * c.exp_ms
                    + (signed - signed0) as f64 * c.sign_ms
                    + (verified - verified0) as f64 * c.verify_ms
            }
        };
        let end = start + (cost_ms * load_factor * 1e3).round() as u64;
        m.busy_until_us = end;
        if let Some(i) = core_index {
            self.cores_free_us[i] = end;
        }
        if let Err(e) = result {
            self.errors.push(SimError::Member {
                member: self.names[to as usize].to_string(),
                error: e.to_string(),
            });
        }
        let mut out = Vec::new();
        while let Some(o) = m.core.poll_outgoing() {
            out.push(o);
        }
        let mut switching = m.switching;
        while let Some(e) = m.core.poll_event() {
            match e {
                MemberEvent::Key { epoch, fingerprint, protocol, .. } => {
                    m.key = Some((epoch >> 24, fingerprint, end));
                    self.key_log.push(KeyRecord {
                        member: self.names[to as usize].to_string(),
                        epoch,
                        protocol,
                        at_us: end,
                    });
                }
                MemberEvent::View(v) => m.view = Some(v.view_id),
                MemberEvent::Switch(event) => {
                    match &event {
                        SwitchEvent::Committed { .. } => {
                            switching = true;
                            m.switching = true;
                        }
                        SwitchEvent::Completed { .. } | SwitchEvent::Aborted { .. } => {
                            m.switching = false;
                        }
                        _ => {}
                    }
                    self.switch_log.push((self.names[to as usize].to_string(), event, end));
                }
                MemberEvent::Rejected(r) => self.errors.push(SimError::Member {
                    member: self.names[to as usize].to_string(),
                    error: r.to_string(),
                }),
                MemberEvent::ProtocolError { from, error } => self.errors.push(SimError::Member {
                    member: self.names[to as usize].to_string(),
                    error: format!("from {from}: {error}"),
                }),
                _ => {}
            }
        }
        if switching {
            self.switch_overhead.cpu_ms += cost_ms;
            self.switch_overhead.bytes += out.iter().map(|o| o.bytes.len() as u64).sum::<u64>();
        }
        let link = self.config.topology.path(m.site, self.config.topology.sequencer);
        let mut state = m.uplink;
        for o in out {
            let at = self.transmit(link, o.bytes.len(), end, &mut state);
            let event = Event::AtSequencer(Box::new(ToSequencer {
                from: self.names[to as usize].to_string(),
                view_id: o.view_id,
                to: o.to,
                bytes: o.bytes,
            }));
            self.schedule(at, event);
        }
        if let Some(m) = self.members.get_mut(to as usize).and_then(Option::as_mut) {
            m.uplink = state;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_moves_forward() {
        let a = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i * i));
        }
        assert!(thread_cpu_time() > a, "{x}");
    }
}
