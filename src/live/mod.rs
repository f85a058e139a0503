//! The live path: an in-process hub of per-user wake-ups, fed by this
//! instance's commits and by other instances through LISTEN/NOTIFY.

pub mod hub;
pub mod listener;
pub mod wakeup;

pub use hub::{Hub, Wake, Watch};
