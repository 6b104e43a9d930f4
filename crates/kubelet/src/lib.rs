//! The node agent (kubelet) of krust. Today: simulated hollow nodes ([`sim`]) that
//! register Nodes, keep their Leases and conditions fresh and drive pods bound to them
//! through the kubelet's state machine without running containers.

pub mod sim;
