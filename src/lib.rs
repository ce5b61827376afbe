//! Shears: pruning as a service. Upload a model in Hugging Face layout, prune it with
//! a recipe, download the pruned model.

pub mod api;
pub mod app;
pub mod blob;
pub mod cli;
pub mod config;
pub mod engine;
pub mod layout;
pub mod prune;
pub mod recipe;
pub mod store;
pub mod tensor;
pub mod worker;
