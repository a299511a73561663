//! xtask's error: a message that carries its causes (`context` prefixes them, as `anyhow` would),
//! with the `bail!`, `ensure!` and `err!` macros.
//!
//! Not the `anyhow` crate, on purpose: a normal dependency of xtask alone that the workspace's
//! proc macros also use (`anyhow`, through `prost-derive`) is built with the normal profile when
//! xtask is part of the build (`cargo test --workspace --all-targets`) and with the
//! build-override profile when it is not (`cargo test --workspace --doc`), and the difference
//! propagates to `pg_query`: CI compiled libpg_query twice.

use std::fmt;

/// What went wrong, with its causes after `: `.
pub(crate) struct Error(String);

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn msg(message: impl fmt::Display) -> Error {
        Error(message.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Error {
        Error(e.to_string())
    }
}

/// `context` and `with_context` on results and options, as in `anyhow`.
pub(crate) trait Context<T> {
    fn context(self, context: impl fmt::Display) -> Result<T>;
    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error(format!("{context}: {e}")))
    }

    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error(format!("{}: {e}", context())))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.ok_or_else(|| Error::msg(context))
    }

    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| Error::msg(context()))
    }
}

/// An [`Error`] from a format string.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::error::Error::msg(format!($($arg)*))
    };
}

/// Returns an [`Error`] from a format string.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::err!($($arg)*))
    };
}

/// Returns an [`Error`] from a format string unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::error::bail!($($arg)*);
        }
    };
}

pub(crate) use {bail, ensure, err};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_prefixes_the_cause() {
        let failed: Result<(), std::io::Error> = Err(std::io::Error::other("disk full"));
        let e = failed.context("writing out.json").unwrap_err();
        assert_eq!(e.to_string(), "writing out.json: disk full");
        assert_eq!(None::<u8>.context("--out needs a path").unwrap_err().to_string(), "--out needs a path");
    }

    #[test]
    fn the_macros_format_and_return() {
        fn check(n: u32) -> Result<u32> {
            ensure!(n > 1, "{n} is too small");
            if n > 9 {
                bail!("{n} is too large");
            }
            Ok(n)
        }
        assert_eq!(check(1).unwrap_err().to_string(), "1 is too small");
        assert_eq!(check(10).unwrap_err().to_string(), "10 is too large");
        assert_eq!(check(5).unwrap(), 5);
        assert_eq!(err!("x{}", 1).to_string(), "x1");
    }
}
