//! What the commands print on stdout. `println!` panics when stdout is a pipe whose reader has
//! gone (`outpost search … | head`); commands print through [`outln!`] and [`print_json`]
//! instead, which return the write error, and `main` ends quietly with status 0 when it is a
//! broken pipe ([`is_broken_pipe`]), as ripgrep does.

use std::fmt;
use std::io::{self, Write};

use anyhow::Result;

/// `println!` that returns the `io::Result` of the write instead of panicking on it.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Writes one line to stdout (the body of [`outln!`]).
pub fn write_line(args: fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")
}

/// Writes `text` to stdout as it is.
pub fn write_str(text: &str) -> io::Result<()> {
    io::stdout().lock().write_all(text.as_bytes())
}

/// Prints `value` as pretty JSON on a line of its own.
pub fn print_json(value: &serde_json::Value) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// Writes out what stdout still buffers, so that its failure is reported like any other.
pub fn flush() -> io::Result<()> {
    io::stdout().flush()
}

/// Whether `err` comes from writing to a pipe that nobody reads any more.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// A writer that remembers a broken pipe, for APIs that report write errors only as text
/// (`outpost_core::ingest::import::export_jsonl`): [`PipeWatch::check`] gives it back as the
/// `io::Error` that [`is_broken_pipe`] recognises.
pub struct PipeWatch<W> {
    inner: W,
    broken: bool,
}

impl<W: Write> PipeWatch<W> {
    /// Watches `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            broken: false,
        }
    }

    /// `Err(BrokenPipe)` if a write or flush failed on a broken pipe.
    pub fn check(&self) -> io::Result<()> {
        if self.broken {
            Err(io::ErrorKind::BrokenPipe.into())
        } else {
            Ok(())
        }
    }

    fn watch<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result {
            self.broken |= e.kind() == io::ErrorKind::BrokenPipe;
        }
        result
    }
}

impl<W: Write> Write for PipeWatch<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.inner.write(buf);
        self.watch(result)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.inner.flush();
        self.watch(result)
    }
}
