//! Commands that work on local files, without the server.

pub mod prune;
