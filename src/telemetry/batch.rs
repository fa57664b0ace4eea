//! The log sink: each thread formats its lines into a buffer of its own, and a background
//! thread writes all the buffers out in batches, off the request path.

use std::{
    cell::RefCell,
    io::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tracing_subscriber::fmt;

/// How often buffered log lines are written out while lines keep coming…
const FLUSH_EVERY: Duration = Duration::from_millis(10);
/// …and how long the writer sleeps at most when they do not (it backs off to this).
const IDLE_FLUSH_EVERY: Duration = Duration::from_millis(250);
/// A thread's buffer this full is written out at once by that thread.
const FLUSH_AT: usize = 1024 * 1024;
/// What each buffer (a thread's, and the spares it swaps with) starts with; they keep
/// what they grow to.
const CAPACITY: usize = 64 * 1024;

/// A log sink that collects lines in memory and writes them out every [`FLUSH_EVERY`]
/// (or when a thread has [`FLUSH_AT`] bytes waiting), from a thread of its own.
///
/// Each thread that logs appends to a buffer of its own (its slot), so threads that
/// log at the same time do not wait for each other or pass a cache line back and forth.
/// A flush swaps every thread's buffer with a spare and writes them out one thread after
/// the other: one thread's lines stay in order, but lines of different threads from the
/// same interval come out grouped by thread rather than strictly by time (each line
/// carries its own timestamp). Buffers take turns with the spares, so after warming up no
/// line costs an allocation or a page fault.
#[derive(Clone)]
pub struct BatchWriter {
    inner: Arc<BatchInner>,
}

struct BatchInner {
    /// Tells this writer's slots from other writers' in a thread's [`SLOTS`].
    id: u64,
    /// Every thread's slot, in the order the threads first logged.
    slots: Mutex<Vec<Arc<Slot>>>,
    /// The buffers being written out, and the destination; held only while flushing.
    draining: Mutex<Draining>,
}

struct Draining {
    /// Buffers that take the place of the slots' buffers at a flush; the first ones hold
    /// what is being written out.
    spares: Vec<Vec<u8>>,
    out: Box<dyn Write + Send>,
}

/// One thread's lines for one writer. Aligned to keep slots of different threads (and the
/// `Arc` counts next to them) off each other's cache lines.
#[repr(align(128))]
struct Slot(Mutex<Lines>);

struct Lines {
    bytes: Vec<u8>,
    /// How much of `bytes` is whole lines; the rest is a line still being written, which a
    /// flush leaves for the next one.
    whole: usize,
}

thread_local! {
    /// This thread's slot in each writer it has logged to, by writer id.
    static SLOTS: RefCell<Vec<(u64, Arc<Slot>)>> = const { RefCell::new(Vec::new()) };
}

/// Gives each writer its id.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

impl BatchWriter {
    pub fn start(out: impl Write + Send + 'static) -> BatchWriter {
        let writer = BatchWriter::new(out);
        let weak = Arc::downgrade(&writer.inner);
        std::thread::Builder::new()
            .name("tandem-logs".into())
            .spawn(move || {
                let mut pause = FLUSH_EVERY;
                while let Some(inner) = weak.upgrade() {
                    let wrote = BatchWriter { inner }.flush();
                    pause = if wrote {
                        FLUSH_EVERY
                    } else {
                        (pause * 2).min(IDLE_FLUSH_EVERY)
                    };
                    std::thread::sleep(pause);
                }
            })
            .expect("starting the log writer thread");
        writer
    }

    /// A writer that writes out only when told to (or when a buffer is full).
    fn new(out: impl Write + Send + 'static) -> BatchWriter {
        BatchWriter {
            inner: Arc::new(BatchInner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                slots: Mutex::new(Vec::new()),
                draining: Mutex::new(Draining {
                    spares: Vec::new(),
                    out: Box::new(out),
                }),
            }),
        }
    }

    /// Writes out everything buffered so far by every thread; says whether there was
    /// anything. A line a thread is still in the middle of writing is left for next time.
    pub fn flush(&self) -> bool {
        let mut draining = lock(&self.inner.draining);
        let Draining { spares, out } = &mut *draining;
        let mut taken = 0;
        lock(&self.inner.slots).retain(|slot| {
            // Only the list holds the slot: its thread has exited, and nothing more will
            // come. Its lines, even an unfinished last one, go out now, and the slot goes.
            let gone = Arc::strong_count(slot) == 1;
            let mut lines = lock(&slot.0);
            let whole = if gone { lines.bytes.len() } else { lines.whole };
            if whole > 0 {
                if taken == spares.len() {
                    spares.push(Vec::with_capacity(CAPACITY));
                }
                let spare = &mut spares[taken];
                std::mem::swap(&mut lines.bytes, spare);
                lines.bytes.extend_from_slice(&spare[whole..]);
                spare.truncate(whole);
                lines.whole = 0;
                taken += 1;
            }
            !gone
        });
        // Nowhere to report a failing log destination; the lines are dropped.
        let _ = spares[..taken]
            .iter()
            .try_for_each(|spare| out.write_all(spare))
            .and_then(|()| out.flush());
        for spare in &mut spares[..taken] {
            spare.clear();
        }
        taken > 0
    }

    /// How many threads' slots the writer keeps.
    #[cfg(test)]
    fn slots(&self) -> usize {
        lock(&self.inner.slots).len()
    }
}

impl BatchInner {
    /// Runs `f` on the calling thread's lines, registering a slot on the thread's first
    /// line for this writer.
    fn with_lines<R>(&self, f: impl FnOnce(&mut Lines) -> R) -> R {
        let mut f = Some(f);
        let done = SLOTS.try_with(|slots| {
            let mut slots = slots.try_borrow_mut().ok()?;
            let index = match slots.iter().position(|(id, _)| *id == self.id) {
                Some(index) => index,
                None => {
                    // Slots of writers that are gone: nothing but this thread holds them.
                    slots.retain(|(_, slot)| Arc::strong_count(slot) > 1);
                    slots.push((self.id, self.register()));
                    slots.len() - 1
                }
            };
            let f = f.take()?;
            Some(f(&mut lock(&slots[index].1.0)))
        });
        match (done, f) {
            (Ok(Some(result)), _) => result,
            // The thread is exiting (its thread-locals are gone) or logging from within
            // the writer: a slot for this line alone, dropped by the next flush.
            (_, Some(f)) => f(&mut lock(&self.register().0)),
            (_, None) => unreachable!("`f` is taken only to be run"),
        }
    }

    fn register(&self) -> Arc<Slot> {
        let slot = Arc::new(Slot(Mutex::new(Lines {
            bytes: Vec::with_capacity(CAPACITY),
            whole: 0,
        })));
        lock(&self.slots).push(slot.clone());
        slot
    }
}

/// A poisoned lock only means a thread panicked while logging; the bytes are still fine.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One log line's writer, appending to the logging thread's own buffer. tracing-subscriber
/// formats a line first and writes it in one piece; should a line come in pieces, it
/// still goes out whole: it counts once its `\n` is written, or its writer is dropped.
pub struct LineWriter<'a> {
    writer: &'a BatchWriter,
    /// Bytes were written since the last `\n`.
    open: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let Some(&last) = bytes.last() else {
            return Ok(0);
        };
        self.open = last != b'\n';
        let open = self.open;
        let full = self.writer.inner.with_lines(|lines| {
            lines.bytes.extend_from_slice(bytes);
            if !open {
                lines.whole = lines.bytes.len();
            }
            lines.whole >= FLUSH_AT
        });
        if full {
            self.writer.flush();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if self.open {
            self.writer
                .inner
                .with_lines(|lines| lines.whole = lines.bytes.len());
        }
    }
}

impl<'a> fmt::MakeWriter<'a> for BatchWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            writer: self,
            open: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        io::Write,
        sync::{Arc, Mutex},
        time::{Duration, Instant},
    };

    use tracing_subscriber::fmt::MakeWriter;

    use super::{BatchWriter, lock};

    /// A destination that keeps what is written, for the test to read.
    #[derive(Clone, Default)]
    struct Out(Arc<Mutex<Vec<u8>>>);

    impl Out {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.0).clone()).unwrap()
        }
    }

    impl Write for Out {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line(writer: &BatchWriter, text: &str) {
        writer.make_writer().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn lines_from_several_threads_all_arrive_whole_once_and_in_order_per_thread() {
        let out = Out::default();
        let writer = BatchWriter::new(out.clone());
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let writer = &writer;
                scope.spawn(move || {
                    for n in 0..1000 {
                        line(writer, &format!("t{thread} {n}\n"));
                        if n % 100 == 0 {
                            // Flushes while other threads write.
                            writer.flush();
                        }
                    }
                });
            }
        });
        writer.flush();

        let text = out.text();
        let mut next = HashMap::new();
        for line in text.lines() {
            let (thread, n) = line.split_once(' ').expect("a whole line");
            let n: usize = n.parse().expect("a whole line");
            let expected = next.entry(thread.to_string()).or_insert(0);
            assert_eq!(n, *expected, "{thread}'s lines out of order or twice");
            *expected += 1;
        }
        assert_eq!(next.len(), 4);
        assert!(next.values().all(|&count| count == 1000), "{next:?}");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn an_exited_threads_lines_are_written_and_its_slot_dropped() {
        let out = Out::default();
        let writer = BatchWriter::new(out.clone());
        line(&writer, "main 1\n");
        let other = writer.clone();
        std::thread::spawn(move || line(&other, "gone 1\n"))
            .join()
            .unwrap();
        assert_eq!(writer.slots(), 2);

        assert!(writer.flush());
        assert_eq!(out.text(), "main 1\ngone 1\n");
        assert_eq!(writer.slots(), 1, "the exited thread's slot is dropped");

        line(&writer, "main 2\n");
        assert!(writer.flush());
        assert_eq!(out.text(), "main 1\ngone 1\nmain 2\n");
        assert_eq!(writer.slots(), 1);
    }

    #[test]
    fn flush_says_whether_there_was_anything() {
        let out = Out::default();
        let writer = BatchWriter::new(out.clone());
        assert!(!writer.flush());
        line(&writer, "one\n");
        assert!(writer.flush());
        assert!(!writer.flush());
        assert_eq!(out.text(), "one\n");
    }

    #[test]
    fn a_line_written_in_pieces_goes_out_whole() {
        let out = Out::default();
        let writer = BatchWriter::new(out.clone());
        let mut pieces = writer.make_writer();
        pieces.write_all(b"one ").unwrap();
        assert!(!writer.flush(), "half a line is not written");
        pieces.write_all(b"line\n").unwrap();
        pieces.write_all(b"no newline").unwrap();
        assert!(writer.flush());
        assert_eq!(out.text(), "one line\n");
        drop(pieces);
        assert!(writer.flush());
        assert_eq!(out.text(), "one line\nno newline");
    }

    #[test]
    fn writers_keep_their_lines_apart() {
        let (first_out, second_out) = (Out::default(), Out::default());
        let first = BatchWriter::new(first_out.clone());
        let second = BatchWriter::new(second_out.clone());
        line(&first, "first\n");
        line(&second, "second\n");
        drop(first);
        let third = BatchWriter::new(Out::default());
        line(&third, "third\n");
        assert!(second.flush());
        assert_eq!(second_out.text(), "second\n");
        assert_eq!(first_out.text(), "");
        assert!(third.flush());
    }

    #[test]
    fn a_full_buffer_is_written_by_its_thread() {
        let out = Out::default();
        let writer = BatchWriter::new(out.clone());
        let long = format!("{}\n", "x".repeat(1023));
        for _ in 0..super::FLUSH_AT / long.len() {
            line(&writer, &long);
        }
        assert_eq!(lock(&out.0).len(), super::FLUSH_AT);
        assert!(!writer.flush());
    }

    #[test]
    fn the_background_thread_writes_lines_out() {
        let out = Out::default();
        let writer = BatchWriter::start(out.clone());
        line(&writer, "soon\n");
        let deadline = Instant::now() + Duration::from_secs(5);
        while out.text().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.text(), "soon\n");
    }
}
