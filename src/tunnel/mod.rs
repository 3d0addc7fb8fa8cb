//! The WireGuard-compatible tunnel.
//!
//! [`conf`] reads the wg-quick style configuration file that `tun_node` and other embedders use.

pub mod conf;
