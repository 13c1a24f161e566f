//! The session state machine and its effect on metering (pure; storage applies the result).
//!
//! | event                              | from                | to       | metering                      |
//! |------------------------------------|---------------------|----------|-------------------------------|
//! | `started`, `resumed`               | created, paused     | running  | open an interval at now       |
//! | `started`, `resumed`               | running             | running  | sign of life                  |
//! | `paused`                           | running             | paused   | close the interval            |
//! | `paused`                           | created, paused     | paused   | –                             |
//! | `stopped`                          | running             | stopped  | close the interval            |
//! | `stopped`                          | created, paused     | stopped  | –                             |
//! | `created`, `heartbeat`, `task_*`   | any but stopped     | same     | sign of life                  |
//! | anything                           | stopped             | –        | rejected (409)                |
//!
//! A running session's interval never extends past its last sign of life + grace: when the next
//! event arrives later than that, the interval is closed at last sign of life + grace and (unless
//! the event pauses or stops the session) a new one opens at now. Readers apply the same cut to the
//! open interval ([`effective_end`]), so a session left running by a crashed client stops billing.

use crate::model::EventKind;

/// The metering-relevant part of a session row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meter {
    pub state: State,
    /// Unix seconds of the last event (any kind).
    pub last_seen_s: i64,
    /// Start of the open active interval, when running.
    pub active_since_s: Option<i64>,
}

/// Session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Paused,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "created" => State::Created,
            "running" => State::Running,
            "paused" => State::Paused,
            "stopped" => State::Stopped,
            _ => return None,
        })
    }
}

/// What applying an event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub meter: Meter,
    /// A closed interval `[start_s, end_s)` to record (never empty).
    pub closed: Option<(i64, i64)>,
}

/// Why an event cannot be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("session is stopped; it accepts no more events")]
    Stopped,
}

/// End of the open interval as seen at `now_s`: never past last sign of life + grace.
pub fn effective_end(m: &Meter, now_s: i64, grace_s: i64) -> Option<(i64, i64)> {
    let since = m.active_since_s?;
    let end = now_s.min(m.last_seen_s.saturating_add(grace_s)).max(since);
    Some((since, end))
}

/// Applies event `kind` at `now_s` (already clamped to `>= last_seen_s`).
pub fn apply(
    m: Meter,
    kind: EventKind,
    now_s: i64,
    grace_s: i64,
) -> Result<Transition, TransitionError> {
    if m.state == State::Stopped {
        return Err(TransitionError::Stopped);
    }
    let now_s = now_s.max(m.last_seen_s);
    let cut = m.last_seen_s.saturating_add(grace_s);
    let mut closed = None;
    let mut active_since = m.active_since_s;
    let close = |since: i64| -> Option<(i64, i64)> {
        let end = now_s.min(cut);
        (end > since).then_some((since, end))
    };
    let state = match (kind, m.state) {
        (EventKind::Started | EventKind::Resumed, State::Created | State::Paused) => {
            active_since = Some(now_s);
            State::Running
        }
        (EventKind::Paused | EventKind::Stopped, State::Running) => {
            if let Some(since) = m.active_since_s {
                closed = close(since);
            }
            active_since = None;
            if kind == EventKind::Paused {
                State::Paused
            } else {
                State::Stopped
            }
        }
        (EventKind::Paused, _) => State::Paused,
        (EventKind::Stopped, _) => State::Stopped,
        // Signs of life: started/resumed while running, created, heartbeat, task_*.
        (_, state) => {
            if state == State::Running
                && now_s > cut
                && let Some(since) = m.active_since_s
            {
                // The client vanished and came back: bill up to last sign of life + grace,
                // then start a fresh interval now.
                closed = close(since);
                active_since = Some(now_s);
            }
            state
        }
    };
    Ok(Transition {
        meter: Meter {
            state,
            last_seen_s: now_s,
            active_since_s: if state == State::Running {
                active_since
            } else {
                None
            },
        },
        closed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: i64 = 300;

    fn run(events: &[(EventKind, i64)]) -> (Meter, Vec<(i64, i64)>) {
        let mut m = Meter {
            state: State::Created,
            last_seen_s: 0,
            active_since_s: None,
        };
        let mut closed = vec![];
        for &(k, t) in events {
            let tr = apply(m, k, t, G).unwrap();
            closed.extend(tr.closed);
            m = tr.meter;
        }
        (m, closed)
    }

    #[test]
    fn pause_resume_cycles() {
        use EventKind::*;
        let (m, closed) = run(&[
            (Started, 100),
            (Heartbeat, 200),
            (Paused, 250),
            (Heartbeat, 5000), // paused: no billing
            (Resumed, 6000),
            (Stopped, 6100),
        ]);
        assert_eq!(m.state, State::Stopped);
        assert_eq!(closed, vec![(100, 250), (6000, 6100)]);
    }

    #[test]
    fn crashed_client_is_cut_at_grace() {
        use EventKind::*;
        let (m, closed) = run(&[(Started, 100), (Heartbeat, 160)]);
        assert_eq!(effective_end(&m, 100_000, G), Some((100, 460)));
        assert_eq!(effective_end(&m, 300, G), Some((100, 300)));
        assert!(closed.is_empty());
        // The client comes back hours later: the gap is not billed.
        let (m, closed) = run(&[
            (Started, 100),
            (Heartbeat, 160),
            (Heartbeat, 10_000),
            (Stopped, 10_060),
        ]);
        assert_eq!(closed, vec![(100, 460), (10_000, 10_060)]);
        assert_eq!(m.active_since_s, None);
        // Stopping after a long silence bills only up to the cut.
        let (_, closed) = run(&[(Started, 100), (Stopped, 10_000)]);
        assert_eq!(closed, vec![(100, 400)]);
    }

    #[test]
    fn stopped_is_terminal() {
        let m = Meter {
            state: State::Stopped,
            last_seen_s: 0,
            active_since_s: None,
        };
        assert_eq!(
            apply(m, EventKind::Heartbeat, 1, G),
            Err(TransitionError::Stopped)
        );
    }

    #[test]
    fn clock_going_backwards_is_clamped() {
        use EventKind::*;
        let (_, closed) = run(&[(Started, 100), (Paused, 90)]);
        assert!(closed.is_empty()); // zero-length interval is not recorded
    }
}
