//! The process: the command line (`serve`, `migrate`, `token`), building the
//! application from its parts, and the private PostgreSQL used when no
//! `DATABASE_URL` is set.
//!
//! Owns: wiring. It may use every other layer; nothing uses it.

pub mod cli;
pub mod embedded_pg;
pub mod logging;
mod private_files;
pub mod startup;
