//! The presence queries a shard is answering. One gather per room (and
//! kind: counts, or counts and members) at a time: a query that arrives
//! while one for the same room is out waits for that one's answer, so a
//! crowd asking about one room costs one answer. At most [`MAX_IN_FLIGHT`]
//! gathers at once per shard; beyond, a query is refused ([`Busy`]) rather
//! than holding more. The answer is shared ([`SharedPresence`]), and so is
//! its client frame: a crowd's answer is encoded once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use async_tungstenite::tungstenite::Utf8Bytes;
use futures_channel::oneshot;

use crate::presence::RoomPresence;

/// Gathers a shard has out at once (rooms and users together).
pub const MAX_IN_FLIGHT: usize = 32;

/// A room query: the room, and whether its members are asked for.
pub type RoomKey = (String, bool);

/// Too many gathers are out on this shard.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("too many presence queries are being answered; retry in a moment")]
pub struct Busy;

/// The gathers out on one shard.
#[derive(Default)]
pub struct Queries {
    /// Rooms being gathered, and the queries waiting for each answer.
    rooms: HashMap<RoomKey, Vec<oneshot::Sender<Rc<SharedPresence>>>>,
    users: usize,
}

impl Queries {
    fn full(&self) -> bool {
        self.rooms.len() + self.users >= MAX_IN_FLIGHT
    }
}

/// A room's merged presence, given to every query that waited for it, with
/// the client frame that answers it, encoded by the first that asks under
/// a name and reused by the others asking under the same one.
pub struct SharedPresence {
    pub presence: RoomPresence,
    frame: RefCell<Option<(String, Utf8Bytes)>>,
}

impl SharedPresence {
    pub fn new(presence: RoomPresence) -> Self {
        Self { presence, frame: RefCell::new(None) }
    }

    /// The frame answering a query for `requested`: the one already made
    /// for that name, else `encode`'s (kept for the next).
    pub fn frame(&self, requested: &str, encode: impl FnOnce(&RoomPresence) -> Utf8Bytes) -> Utf8Bytes {
        let mut kept = self.frame.borrow_mut();
        match &*kept {
            Some((name, frame)) if name == requested => frame.clone(),
            _ => {
                let frame = encode(&self.presence);
                *kept = Some((requested.to_owned(), frame.clone()));
                frame
            }
        }
    }
}

/// What a room query does.
pub enum Turn<'a> {
    /// Waits for the gather already out; a cancelled one (its asker went
    /// away) means asking again.
    Wait(oneshot::Receiver<Rc<SharedPresence>>),
    /// Gathers, and answers the queries that wait meanwhile.
    Gather(Gathering<'a>),
}

/// A gather out; dropped, it is no longer out (and its waiters ask again).
pub struct Gathering<'a> {
    queries: &'a RefCell<Queries>,
    /// A room's, until answered.
    room: Option<RoomKey>,
    user: bool,
}

/// A room query's turn: waiting for the gather out, or gathering.
pub fn room(queries: &RefCell<Queries>, key: RoomKey) -> Result<Turn<'_>, Busy> {
    let mut book = queries.borrow_mut();
    if let Some(waiting) = book.rooms.get_mut(&key) {
        let (reply, answer) = oneshot::channel();
        waiting.push(reply);
        return Ok(Turn::Wait(answer));
    }
    if book.full() {
        return Err(Busy);
    }
    book.rooms.insert(key.clone(), Vec::new());
    Ok(Turn::Gather(Gathering { queries, room: Some(key), user: false }))
}

/// A user query's gather.
pub fn user(queries: &RefCell<Queries>) -> Result<Gathering<'_>, Busy> {
    let mut book = queries.borrow_mut();
    if book.full() {
        return Err(Busy);
    }
    book.users += 1;
    Ok(Gathering { queries, room: None, user: true })
}

impl Gathering<'_> {
    /// Gives the answer to every query that waited for it.
    pub fn answered(mut self, presence: &Rc<SharedPresence>) {
        let waiting = self.room.take().and_then(|key| self.queries.borrow_mut().rooms.remove(&key));
        for reply in waiting.into_iter().flatten() {
            let _ = reply.send(presence.clone());
        }
    }
}

impl Drop for Gathering<'_> {
    fn drop(&mut self) {
        let mut book = self.queries.borrow_mut();
        if let Some(key) = self.room.take() {
            book.rooms.remove(&key);
        }
        if self.user {
            book.users -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(room: &str) -> RoomKey {
        (room.to_owned(), false)
    }

    #[test]
    fn one_gather_per_room_the_others_wait_for_it() {
        let queries = RefCell::new(Queries::default());
        let Ok(Turn::Gather(first)) = room(&queries, key("orders")) else { panic!("the first gathers") };
        let Ok(Turn::Wait(mut answer)) = room(&queries, key("orders")) else { panic!("the second waits") };
        let Ok(Turn::Gather(_other)) = room(&queries, ("orders".into(), true)) else {
            panic!("members apart")
        };
        let presence = Rc::new(SharedPresence::new(RoomPresence { users: 2, ..RoomPresence::default() }));
        first.answered(&presence);
        assert_eq!(answer.try_recv().ok().flatten().map(|p| p.presence.users), Some(2));
        assert!(
            matches!(room(&queries, key("orders")), Ok(Turn::Gather(_))),
            "nothing left out once answered"
        );
    }

    #[test]
    fn a_shared_answer_is_encoded_once_per_name() {
        let shared = SharedPresence::new(RoomPresence::default());
        let encodes = &std::cell::Cell::new(0);
        let encode = |name: &'static str| {
            move |_: &RoomPresence| {
                encodes.set(encodes.get() + 1);
                Utf8Bytes::from_static(name)
            }
        };
        assert_eq!(shared.frame("all", encode("all")).as_str(), "all");
        assert_eq!(shared.frame("all", encode("again")).as_str(), "all", "reused");
        assert_eq!(shared.frame("cart", encode("cart")).as_str(), "cart", "another name, its own");
        assert_eq!(encodes.get(), 2);
    }

    #[test]
    fn a_gather_given_up_lets_its_waiters_ask_again() {
        let queries = RefCell::new(Queries::default());
        let first = room(&queries, key("orders"));
        let Ok(Turn::Wait(mut answer)) = room(&queries, key("orders")) else { panic!("waits") };
        drop(first);
        assert!(answer.try_recv().is_err(), "cancelled");
        assert!(matches!(room(&queries, key("orders")), Ok(Turn::Gather(_))));
    }

    #[test]
    fn gathers_out_are_bounded() {
        let queries = RefCell::new(Queries::default());
        let out: Vec<_> = (0..MAX_IN_FLIGHT - 1).map(|i| room(&queries, key(&i.to_string()))).collect();
        let user_query = user(&queries).expect("one more");
        assert!(matches!(room(&queries, key("one too many")), Err(Busy)));
        assert!(matches!(user(&queries), Err(Busy)));
        assert!(matches!(room(&queries, key("0")), Ok(Turn::Wait(_))), "waiting costs no gather");
        drop(user_query);
        assert!(user(&queries).is_ok());
        drop(out);
    }
}
