//! What the tests share: the application under test and the clients and
//! checks they drive it with.

mod app;

pub use app::*;
