//! Parsed values: once constructed, they are valid, so the rest of the code
//! never re-checks them.

mod content;
mod cursor;
mod user_id;

pub use content::{Body, Category, NotificationData, Title};
pub use cursor::ResumePoint;
pub use user_id::UserId;
