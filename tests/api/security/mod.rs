//! The security pass: cross-origin access, headers and limits, slow
//! clients, token headers, user-id isolation on every transport, admin
//! scope on every admin route. SECURITY.md says what each test shows.

mod admin_scope;
mod cors;
mod isolation;
mod limits;
mod slow_clients;
mod tokens;
