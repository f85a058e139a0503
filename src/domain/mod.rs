//! Parsed values and the event model: user ids, notification content,
//! resume points, events and notifications. Once constructed, a value is
//! valid, so the rest of the code never re-checks it.
//!
//! Owns: what the words of the contract mean. It uses nothing of Herald's.

mod action;
mod content;
mod cursor;
pub mod event;
mod time;
mod topic;
mod user_id;
pub mod webhook;

pub use action::{Action, ActionId, Actions, NotificationKey};
pub use content::{Body, Category, NotificationData, Title};
pub use cursor::ResumePoint;
pub use time::now_micros;
pub use topic::TopicName;
pub use user_id::UserId;
