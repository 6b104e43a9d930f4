//! The node agent (kubelet) of krust: the real agent that runs pods through a CRI
//! runtime ([`agent`]), and simulated hollow nodes ([`sim`]) that register Nodes, keep
//! their Leases and conditions fresh and drive pods bound to them through the kubelet's
//! state machine without running containers.

pub mod agent;
pub mod sim;
