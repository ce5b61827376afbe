//! Shears: pruning as a service.

pub mod prune;
pub mod tensor;
