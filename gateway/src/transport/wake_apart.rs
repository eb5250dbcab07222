//! Two futures in one task, each woken on its own: a wake-up for one polls only that one.
//!
//! A session's bridge future and its writer share a task (one task per connection keeps an
//! idle session cheap), but a fan-out delivery wakes only the writer: re-polling the
//! bridge's `select!` (its reads, timers and cancellation) for every delivery would cost
//! more than the delivery itself. `futures::select` polls both halves on every wake-up.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures::future::Either;
use futures::task::{waker, ArcWake, AtomicWaker};

/// One half's wake-up: marks it due and wakes the task.
struct Due {
    due: AtomicBool,
    task: Arc<AtomicWaker>,
}

impl ArcWake for Due {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.due.store(true, Ordering::Release);
        arc_self.task.wake();
    }
}

struct Half<F> {
    fut: Option<F>,
    due: Arc<Due>,
    waker: Waker,
}

impl<F: Future + Unpin> Half<F> {
    fn new(fut: F, task: &Arc<AtomicWaker>) -> Self {
        let due = Arc::new(Due {
            due: AtomicBool::new(true),
            task: task.clone(),
        });
        Half {
            fut: Some(fut),
            waker: waker(due.clone()),
            due,
        }
    }

    fn poll_if_due(&mut self) -> Poll<F::Output> {
        if !self.due.due.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let Some(fut) = self.fut.as_mut() else {
            return Poll::Pending;
        };
        Pin::new(fut).poll(&mut Context::from_waker(&self.waker))
    }
}

/// Like `futures::future::select`, but each future is polled only when it was woken.
pub struct WakeApart<A, B> {
    task: Arc<AtomicWaker>,
    a: Half<A>,
    b: Half<B>,
}

pub fn wake_apart<A, B>(a: A, b: B) -> WakeApart<A, B>
where
    A: Future + Unpin,
    B: Future + Unpin,
{
    let task = Arc::new(AtomicWaker::new());
    WakeApart {
        a: Half::new(a, &task),
        b: Half::new(b, &task),
        task,
    }
}

impl<A, B> Future for WakeApart<A, B>
where
    A: Future + Unpin,
    B: Future + Unpin,
{
    type Output = Either<(A::Output, B), (B::Output, A)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        // Registered before polling, so a wake-up during the polls below is not lost.
        this.task.register(cx.waker());
        if let Poll::Ready(out) = this.a.poll_if_due() {
            let b = this.b.fut.take().expect("polled after completion");
            return Poll::Ready(Either::Left((out, b)));
        }
        if let Poll::Ready(out) = this.b.poll_if_due() {
            let a = this.a.fut.take().expect("polled after completion");
            return Poll::Ready(Either::Right((out, a)));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `ready` is set (waking whoever polled it last).
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<std::sync::Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    type SharedWaker = Arc<std::sync::Mutex<Option<Waker>>>;

    fn probe() -> (Probe, Arc<AtomicUsize>, Arc<AtomicBool>, SharedWaker) {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let waker = Arc::new(std::sync::Mutex::new(None));
        (
            Probe {
                polls: polls.clone(),
                ready: ready.clone(),
                waker: waker.clone(),
            },
            polls,
            ready,
            waker,
        )
    }

    #[tokio::test]
    async fn a_wake_up_polls_only_the_woken_half() {
        let (a, a_polls, _a_ready, a_waker) = probe();
        let (b, b_polls, b_ready, b_waker) = probe();
        let mut both = wake_apart(a, b);
        let noop = futures::task::noop_waker();
        let mut cx = Context::from_waker(&noop);
        assert!(Pin::new(&mut both).poll(&mut cx).is_pending());
        assert_eq!(
            (
                a_polls.load(Ordering::SeqCst),
                b_polls.load(Ordering::SeqCst)
            ),
            (1, 1)
        );
        for _ in 0..5 {
            b_waker.lock().unwrap().take().unwrap().wake();
            assert!(Pin::new(&mut both).poll(&mut cx).is_pending());
        }
        assert_eq!(
            a_polls.load(Ordering::SeqCst),
            1,
            "the idle half was not re-polled"
        );
        assert_eq!(b_polls.load(Ordering::SeqCst), 6);
        b_ready.store(true, Ordering::SeqCst);
        b_waker.lock().unwrap().take().unwrap().wake();
        match Pin::new(&mut both).poll(&mut cx) {
            Poll::Ready(Either::Right(((), _a))) => {}
            _ => panic!("b finished"),
        }
        assert!(a_waker.lock().unwrap().is_some());
    }
}
