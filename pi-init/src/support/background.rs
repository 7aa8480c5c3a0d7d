//! Work on a thread of its own when the kernel gives one, inline when it does not: PID 1
//! must not panic because a thread could not be had (EAGAIN under memory pressure), and the
//! work still has to happen.

use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

pub enum Background<'scope, T> {
    Thread(ScopedJoinHandle<'scope, Option<T>>),
    /// No thread: it already ran, inline (`None` only if it had run already, which a
    /// thread that never started cannot have done).
    Done(Option<T>),
}

/// Start `f` on a thread named `what` in `s`, or run it now if no thread can be started.
pub fn start<'scope, T, F>(s: &'scope Scope<'scope, '_>, what: &str, f: F) -> Background<'scope, T>
where
    T: Send + 'scope,
    F: FnOnce() -> T + Send + 'scope,
{
    // Shared so that whichever side gets to run it can take it.
    let slot = Arc::new(Mutex::new(Some(f)));
    let theirs = Arc::clone(&slot);
    let spawned = std::thread::Builder::new()
        .name(what.to_string())
        .spawn_scoped(s, move || take(&theirs).map(|f| f()));
    match spawned {
        Ok(handle) => Background::Thread(handle),
        Err(e) => {
            log::warn!("{what}: no thread ({e}); running it here instead");
            Background::Done(take(&slot).map(|f| f()))
        }
    }
}

fn take<F>(slot: &Mutex<Option<F>>) -> Option<F> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

impl<T> Background<'_, T> {
    /// The result; `None` when the work panicked.
    pub fn join(self) -> Option<T> {
        match self {
            Background::Thread(h) => h.join().ok().flatten(),
            Background::Done(t) => t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_thread_and_hands_back_the_result() {
        let here = std::thread::current().id();
        let (value, there) = std::thread::scope(|s| {
            start(s, "test", || (41 + 1, std::thread::current().id()))
                .join()
                .unwrap()
        });
        assert_eq!(value, 42);
        assert_ne!(there, here, "it ran on a thread of its own");
    }

    #[test]
    fn a_panic_is_none_not_a_panic_of_the_caller() {
        let r: Option<u8> = std::thread::scope(|s| start(s, "test", || panic!("boom")).join());
        assert!(r.is_none());
    }
}
