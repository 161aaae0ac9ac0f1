//! novanet's domain core: configuration, addresses, network planning and the records the
//! store keeps. No I/O, no clock, no randomness: callers pass those in.

pub mod config;
pub mod delta;
pub mod error;
pub mod explain;
pub mod firewall;
pub mod floating;
pub mod guest;
pub mod ipv6;
pub mod model;
pub mod net;
pub mod nova_conf;
pub mod plan;
pub mod planning;
pub mod secgroup;
pub mod segment;
pub mod valid;

pub use error::{Error, Result};
