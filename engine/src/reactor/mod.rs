//! The busy-poll reactor: one `mio::Poll`, preallocated events, and a fixed table of slots
//! addressed by token.
//!
//! The engine thread runs one [`Reactor`] and calls [`Reactor::turn`] in a loop. Each turn polls
//! once (how depends on the [`PollMode`]) and hands every readiness event to the slot it belongs
//! to; after the turn the driver runs timers and rings, then turns again. The reactor does no I/O
//! itself and knows nothing of sessions: a slot holds whatever the driver puts in it (a
//! connection, a session), and the driver registers that slot's sources with
//! [`Reactor::registry`] under the slot's [`Token`].
//!
//! # Contract (as in mio's `Poll`)
//!
//! ### Draining readiness
//!
//! Sources are registered edge-triggered (mio always is). Once an event says a source is
//! readable, the slot must read it until the read returns [`WouldBlock`]; likewise for writes
//! once it is writable and there is something to send. Otherwise no further event is guaranteed
//! even if more data arrives, and the slot stalls. A slot that stops early on purpose (its
//! buffer filled up) must remember to come back without waiting for an event: the driver visits
//! such slots after the turn (for example with [`Reactor::iter_mut`]).
//!
//! ### Spurious events
//!
//! A slot may receive an event with nothing to do: readable with no data yet, writable while
//! still connecting, or an event meant for an earlier occupant of a reused slot. Handlers must
//! treat every event as a hint, try the operation and accept `WouldBlock`. The reactor drops
//! events whose token names an empty slot or an older generation of a slot
//! ([`Reactor::stale_events`] counts them).
//!
//! ### No allocation while turning
//!
//! The slot table, its free list and the `mio::Events` buffer are allocated in
//! [`Reactor::new`]; [`Reactor::turn`], [`Reactor::get_mut`] and the iterators allocate nothing.
//! [`Reactor::insert_with`] and [`Reactor::remove`] do not allocate either (they reuse the
//! preallocated free list), but they usually come with registering a socket, a system call.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use spinwire_engine::reactor::{PollMode, Reactor};
//!
//! let mut reactor: Reactor<&'static str> =
//!     Reactor::new(16, 64, PollMode::Blocking(Some(Duration::from_millis(1)))).unwrap();
//! let token = reactor.insert_with(|_token, _registry| Ok::<_, ()>("session")).unwrap();
//! assert_eq!(reactor.get_mut(token), Some(&mut "session"));
//! // Nothing is registered, so the turn times out with no events.
//! let dispatched = reactor.turn(|_token, _slot, _event, _registry| {}).unwrap();
//! assert_eq!(dispatched, 0);
//! ```
//!
//! [`WouldBlock`]: std::io::ErrorKind::WouldBlock

use std::io;
use std::sync::Arc;
use std::time::Duration;

use mio::event::Event;
use mio::{Events, Poll, Registry, Token, Waker};

/// How [`Reactor::turn`] waits for events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollMode {
    /// Poll with a zero timeout and return at once: the lowest latency, one core burnt at 100%.
    /// For a pinned engine thread on a core of its own. (mio rounds any non-zero timeout up to
    /// a whole millisecond, so "short timeouts" are not an alternative.)
    BusySpin,
    /// Poll with a zero timeout; when nothing was ready, call [`std::thread::yield_now`] before
    /// returning. Still sub-microsecond to notice readiness when the core is free, but lets other
    /// runnable threads on a shared core go first. For development machines and tests.
    SpinYield,
    /// Spin with zero timeouts, and after `spins` consecutive empty polls wait in the kernel for
    /// up to `park` (epoll wait, rounded up to a millisecond) before spinning again. For a shared
    /// core or quiet periods: near-spin latency under load, little CPU when idle. Rings are only
    /// looked at between turns, so `park` bounds how late a strategy's order is picked up while
    /// parked, unless the strategy wakes the loop with [`Reactor::waker`].
    SpinThenPark {
        /// Empty zero-timeout polls before parking.
        spins: u32,
        /// Longest kernel wait once parked.
        park: Duration,
    },
    /// Always wait in the kernel (`epoll_wait`) for up to the timeout (`None`: until an event).
    /// For machines without a spare core, and as the baseline to compare spinning against.
    Blocking(Option<Duration>),
}

/// The token carried by [`Reactor::waker`] events; never a slot's token.
pub const WAKER_TOKEN: Token = Token(usize::MAX);

/// Bits of a token that hold the slot index; the bits above hold the slot's generation.
const INDEX_BITS: u32 = usize::BITS / 2;
/// Mask of the index bits of a token.
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;
/// Generations wrap within the bits above the index.
const GENERATION_MASK: usize = usize::MAX >> INDEX_BITS;

/// Errors from [`Reactor::insert_with`]: the table is full, or the caller's constructor failed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InsertError<E> {
    /// Every slot is taken. Remove a slot first, or build the reactor with more capacity.
    #[error("reactor slot table is full ({capacity} slots)")]
    Full {
        /// The table's fixed capacity.
        capacity: usize,
    },
    /// The closure passed to `insert_with` failed; nothing was inserted.
    #[error("slot constructor failed: {0}")]
    Init(E),
}

/// One entry of the slot table.
#[derive(Debug)]
struct Slot<S> {
    /// Bumped (wrapping within [`GENERATION_MASK`]) every time the slot is vacated, so a token
    /// handed out for an earlier occupant no longer matches.
    generation: usize,
    /// The occupant, `None` while the slot is on the free list.
    value: Option<S>,
}

/// A `mio::Poll` driven in a loop, with a fixed-capacity token → slot table.
///
/// See the [module docs](self) for the draining contract handlers must follow.
#[derive(Debug)]
pub struct Reactor<S> {
    /// The epoll instance.
    poll: Poll,
    /// Event buffer, allocated once with the capacity given to [`Reactor::new`].
    events: Events,
    /// The slot table; its length never changes after construction.
    slots: Box<[Slot<S>]>,
    /// Indices of empty slots. Invariant: holds exactly the indices whose `value` is `None`,
    /// each once; its capacity equals `slots.len()`, so pushes never reallocate.
    free: Vec<usize>,
    /// How `turn` waits.
    mode: PollMode,
    /// Consecutive empty polls (for [`PollMode::SpinThenPark`]).
    idle_polls: u32,
    /// Events dropped because their token no longer names an occupied slot.
    stale_events: u64,
    /// Events from the waker.
    wakeups: u64,
    /// The single waker mio allows per `Poll`, created on first request.
    waker: Option<Arc<Waker>>,
}

impl<S> Reactor<S> {
    /// Creates a reactor with room for `slots` occupants and `events` readiness events per turn.
    ///
    /// `events` bounds how many events one turn dispatches; the rest wait for the next turn
    /// (mio keeps them). Both must be at least 1, and `slots` below `2^(usize::BITS/2)`.
    pub fn new(slots: usize, events: usize, mode: PollMode) -> io::Result<Self> {
        if slots == 0 || events == 0 || slots >= INDEX_MASK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "reactor needs 1 <= slots < 2^(usize::BITS/2) and events >= 1",
            ));
        }
        let table = (0..slots)
            .map(|_| Slot {
                generation: 0,
                value: None,
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        // Lowest index handed out first.
        let free = (0..slots).rev().collect::<Vec<_>>();
        Ok(Self {
            poll: Poll::new()?,
            events: Events::with_capacity(events),
            slots: table,
            free,
            mode,
            idle_polls: 0,
            stale_events: 0,
            wakeups: 0,
            waker: None,
        })
    }

    /// The registry to register slot sources with (use the slot's token).
    pub fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// The current poll mode.
    pub fn mode(&self) -> PollMode {
        self.mode
    }

    /// Changes the poll mode from the next turn on.
    pub fn set_mode(&mut self, mode: PollMode) {
        self.mode = mode;
        self.idle_polls = 0;
    }

    /// A waker other threads can use to end a kernel wait early ([`PollMode::Blocking`] or a
    /// parked [`PollMode::SpinThenPark`]). Its events carry [`WAKER_TOKEN`] and are counted in
    /// [`Reactor::wakeups`], not dispatched. mio allows one waker per poll, so every call returns
    /// the same one.
    pub fn waker(&mut self) -> io::Result<Arc<Waker>> {
        if let Some(waker) = &self.waker {
            return Ok(Arc::clone(waker));
        }
        let waker = Arc::new(Waker::new(self.poll.registry(), WAKER_TOKEN)?);
        self.waker = Some(Arc::clone(&waker));
        Ok(waker)
    }

    /// Number of occupied slots.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// True when no slot is occupied.
    pub fn is_empty(&self) -> bool {
        self.free.len() == self.slots.len()
    }

    /// The fixed number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Events dropped so far because their slot was empty or reused (see "Spurious events").
    pub fn stale_events(&self) -> u64 {
        self.stale_events
    }

    /// Waker events seen so far.
    pub fn wakeups(&self) -> u64 {
        self.wakeups
    }

    /// Takes a free slot, calls `init` with its token (so the new occupant can register its
    /// sources under that token) and stores what `init` returns.
    ///
    /// If `init` fails the slot stays free and its error comes back in [`InsertError::Init`];
    /// anything `init` registered must be deregistered by `init` itself.
    pub fn insert_with<E>(
        &mut self,
        init: impl FnOnce(Token, &Registry) -> Result<S, E>,
    ) -> Result<Token, InsertError<E>> {
        let Some(&index) = self.free.last() else {
            return Err(InsertError::Full {
                capacity: self.slots.len(),
            });
        };
        let slot = &mut self.slots[index];
        debug_assert!(slot.value.is_none(), "free list holds an occupied slot");
        let token = make_token(index, slot.generation);
        let value = init(token, self.poll.registry()).map_err(InsertError::Init)?;
        slot.value = Some(value);
        self.free.pop();
        Ok(token)
    }

    /// Empties the slot `token` names and returns its occupant; `None` if the token is stale.
    ///
    /// Deregister the occupant's sources before (or right after) removing it: the token is
    /// retired, so later events for it are dropped as stale, but epoll keeps reporting a
    /// registered descriptor until it is deregistered or closed.
    pub fn remove(&mut self, token: Token) -> Option<S> {
        let index = self.live_index(token)?;
        let slot = &mut self.slots[index];
        let value = slot.value.take();
        slot.generation = (slot.generation + 1) & GENERATION_MASK;
        // Cannot reallocate: `free` has capacity for every slot and this one was not in it.
        self.free.push(index);
        value
    }

    /// The occupant `token` names, if the token is current.
    pub fn get(&self, token: Token) -> Option<&S> {
        let index = self.live_index(token)?;
        self.slots[index].value.as_ref()
    }

    /// The occupant `token` names, if the token is current.
    pub fn get_mut(&mut self, token: Token) -> Option<&mut S> {
        let index = self.live_index(token)?;
        self.slots[index].value.as_mut()
    }

    /// Every occupied slot with its token, in slot order (for per-turn work: timers, slots
    /// that stopped before `WouldBlock`, outgoing queues).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Token, &mut S)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, slot)| {
                let token = make_token(index, slot.generation);
                slot.value.as_mut().map(|value| (token, value))
            })
    }

    /// Polls once according to the [`PollMode`] and calls `handler` for every event whose token
    /// names an occupied slot, passing the slot's occupant, the event and the registry (to
    /// reregister or deregister). Returns how many events were dispatched.
    ///
    /// An interrupted wait (`EINTR`) counts as a turn with no events. Handlers must follow the
    /// draining contract in the [module docs](self).
    pub fn turn(
        &mut self,
        handler: impl FnMut(Token, &mut S, &Event, &Registry),
    ) -> io::Result<usize> {
        let timeout = match self.mode {
            PollMode::BusySpin | PollMode::SpinYield => Some(Duration::ZERO),
            PollMode::SpinThenPark { spins, park } => {
                if self.idle_polls >= spins {
                    Some(park)
                } else {
                    Some(Duration::ZERO)
                }
            }
            PollMode::Blocking(timeout) => timeout,
        };
        let dispatched = self.poll(timeout, handler)?;
        if self.events.is_empty() {
            self.idle_polls = self.idle_polls.saturating_add(1);
            if self.mode == PollMode::SpinYield {
                std::thread::yield_now();
            }
        } else {
            self.idle_polls = 0;
        }
        Ok(dispatched)
    }

    /// Polls once with `timeout` (`None`: until an event; mio rounds a non-zero timeout up to
    /// whole milliseconds) — one `epoll_wait` — and calls `handler` for every event whose token
    /// names an occupied slot, as [`turn`](Reactor::turn) does, ignoring the [`PollMode`]: for a
    /// caller that decides the wait itself (the engine loop waits until its sessions' earliest
    /// deadline). Returns how many events were dispatched.
    ///
    /// # Errors
    /// What `epoll_wait` reports, except `EINTR` (a turn with no events).
    pub fn poll(
        &mut self,
        timeout: Option<Duration>,
        mut handler: impl FnMut(Token, &mut S, &Event, &Registry),
    ) -> io::Result<usize> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.events.clear(),
            Err(e) => return Err(e),
        }

        let registry = self.poll.registry();
        let mut dispatched = 0;
        for event in self.events.iter() {
            let token = event.token();
            if token == WAKER_TOKEN {
                self.wakeups += 1;
                continue;
            }
            let (index, generation) = split_token(token);
            match self.slots.get_mut(index) {
                Some(Slot {
                    generation: current,
                    value: Some(value),
                }) if *current == generation => {
                    handler(token, value, event, registry);
                    dispatched += 1;
                }
                _ => self.stale_events += 1,
            }
        }
        Ok(dispatched)
    }

    /// The slot index `token` names if that slot is occupied by the same generation.
    fn live_index(&self, token: Token) -> Option<usize> {
        let (index, generation) = split_token(token);
        let slot = self.slots.get(index)?;
        (slot.generation == generation && slot.value.is_some()).then_some(index)
    }
}

/// Packs a slot index and generation into a token.
fn make_token(index: usize, generation: usize) -> Token {
    debug_assert!(index < INDEX_MASK);
    Token((generation << INDEX_BITS) | index)
}

/// Unpacks a token into (slot index, generation).
fn split_token(token: Token) -> (usize, usize) {
    (token.0 & INDEX_MASK, token.0 >> INDEX_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reactor(slots: usize) -> Reactor<u32> {
        Reactor::new(slots, 8, PollMode::Blocking(Some(Duration::ZERO))).unwrap()
    }

    #[test]
    fn removed_slot_token_goes_stale_and_slot_is_reused_with_new_token() {
        let mut r = reactor(2);
        let a = r.insert_with(|_, _| Ok::<_, ()>(1)).unwrap();
        assert_eq!(r.remove(a), Some(1));
        assert_eq!(r.get(a), None);
        assert_eq!(r.remove(a), None);
        let b = r.insert_with(|_, _| Ok::<_, ()>(2)).unwrap();
        assert_ne!(a, b);
        assert_eq!(split_token(a).0, split_token(b).0, "slot index is reused");
        assert_eq!(r.get(b), Some(&2));
        assert_eq!(r.get(a), None);
    }

    #[test]
    fn full_table_refuses_insert_and_failed_init_leaves_slot_free() {
        let mut r = reactor(1);
        assert_eq!(
            r.insert_with(|_, _| Err::<u32, _>("boom")),
            Err(InsertError::Init("boom"))
        );
        assert!(r.is_empty());
        r.insert_with(|_, _| Ok::<_, ()>(1)).unwrap();
        assert_eq!(
            r.insert_with(|_, _| Ok::<_, ()>(2)),
            Err(InsertError::Full { capacity: 1 })
        );
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn iter_mut_yields_occupied_slots_with_their_tokens() {
        let mut r = reactor(4);
        let a = r.insert_with(|_, _| Ok::<_, ()>(10)).unwrap();
        let b = r.insert_with(|_, _| Ok::<_, ()>(20)).unwrap();
        let c = r.insert_with(|_, _| Ok::<_, ()>(30)).unwrap();
        r.remove(b);
        let seen: Vec<_> = r.iter_mut().map(|(t, v)| (t, *v)).collect();
        assert_eq!(seen, vec![(a, 10), (c, 30)]);
    }

    #[test]
    fn zero_capacity_is_rejected() {
        assert!(Reactor::<u8>::new(0, 8, PollMode::BusySpin).is_err());
        assert!(Reactor::<u8>::new(8, 0, PollMode::BusySpin).is_err());
    }
}
