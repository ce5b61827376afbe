//! Pruning kernels.
