//! The server's log lines reach stderr in batches: one `write` per 32 KiB of lines, or 100 ms
//! after a line was logged, whichever comes first. A write per line was a system call per
//! admission request — a tenth of the request path's CPU. Nothing is dropped: a line waits at
//! most 100 ms, and [`flush`] writes out what waits (before the process prints anything else
//! on stderr, and before it exits).

use std::io::{self, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// Bytes of lines held before they are written out at once.
const BATCH_BYTES: usize = 32 * 1024;
/// The longest a line waits.
const BATCH_DELAY: Duration = Duration::from_millis(100);

static PENDING: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

fn pending() -> &'static Mutex<Vec<u8>> {
    PENDING.get_or_init(|| {
        // Writes out, every 100 ms, what the size threshold has not.
        let _ = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(BATCH_DELAY);
                    flush();
                }
            });
        Mutex::new(Vec::with_capacity(BATCH_BYTES * 2))
    })
}

/// Writes out the lines that wait.
pub fn flush() {
    let Some(pending) = PENDING.get() else {
        return;
    };
    let mut lines = pending.lock().unwrap_or_else(|e| e.into_inner());
    if !lines.is_empty() {
        // stderr gone: nowhere to report it.
        let _ = io::stderr().lock().write_all(&lines);
        lines.clear();
    }
}

/// The `tracing_subscriber` writer that batches lines for stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchedStderr;

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = BatchedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        BatchedStderr
    }
}

impl Write for BatchedStderr {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut lines = pending().lock().unwrap_or_else(|e| e.into_inner());
        lines.extend_from_slice(bytes);
        if lines.len() >= BATCH_BYTES {
            let written = io::stderr().lock().write_all(&lines);
            lines.clear();
            written?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
