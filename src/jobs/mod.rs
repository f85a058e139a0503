//! Background work that runs on a timer in every instance: purging what is
//! past its retention, firing timers (snoozes, expiries), and recording that
//! this instance is alive.
//!
//! Owns: loops and their schedules; the SQL they run is in `db`. It may use
//! `db`, `domain` and `settings`; never HTTP.

pub mod heartbeat;
pub mod purge;
pub mod schedules;
pub mod timers;
