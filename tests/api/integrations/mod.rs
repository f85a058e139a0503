//! Integrations (issue #14): publishing from SQL inside the application's
//! own transaction.

mod sql_publish;
