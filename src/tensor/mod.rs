//! Safetensors files.
