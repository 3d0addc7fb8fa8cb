//! The client (SDK) side: what a Rust SDK would link.
