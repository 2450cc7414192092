//! The compute nodes a web node sends work to, and how it picks one.
//!
//! [`Nodes`] is what the application holds: a node for a new session, a node for a service
//! request, the node that holds a session (by its endpoint, recorded in the database), and the
//! list of every node with its health for `/status`. The one-box server has exactly one node,
//! in the same process ([`SingleNode`]); a web node of a cluster has the registered compute
//! nodes, health-checked (`o16n-cluster`).

use std::sync::Arc;

use o16n_types::RuntimeType;

use crate::{Compute, ComputeError};

/// One compute node and the endpoint it is known by.
#[derive(Clone)]
pub struct Node {
    /// The endpoint (`http://host:port`), or `local` for the node in the same process.
    pub endpoint: Arc<str>,
    /// The node.
    pub compute: Arc<dyn Compute>,
}

/// A registered node and whether it answers.
#[derive(Clone)]
pub struct NodeView {
    /// The node.
    pub node: Node,
    /// Whether its last health check succeeded (and no call broke since).
    pub healthy: bool,
    /// Why it is not healthy, when it is not.
    pub problem: Option<String>,
    /// When the node last started (Unix seconds), if known: a session opened on it before
    /// then was lost with the previous run.
    pub started_at: Option<i64>,
}

/// The compute nodes of a web node.
pub trait Nodes: Send + Sync + 'static {
    /// A node for a new session of `runtime`: the least loaded healthy one.
    fn for_session(&self, runtime: RuntimeType) -> Result<Node, ComputeError>;

    /// A node for a request of the service revision `key`: one that already has it loaded if
    /// it can take the request, else the least loaded healthy one.
    fn for_service(&self, key: &str, runtime: RuntimeType) -> Result<Node, ComputeError>;

    /// The node known by `endpoint` with its health, if it is registered.
    fn get(&self, endpoint: &str) -> Option<NodeView>;

    /// Every registered node with its health, in registration order.
    fn all(&self) -> Vec<NodeView>;

    /// Whether these are the remote nodes of a web node (rather than the node of a one-box
    /// server): `/status` then reports each under its endpoint.
    fn remote(&self) -> bool;

    /// Replaces the registered nodes (expanded endpoints, in order). A one-box server keeps
    /// its own node whatever `/computenodes` says.
    fn set_endpoints(&self, endpoints: Vec<String>);
}

/// The one node of a one-box server.
pub struct SingleNode {
    node: Node,
}

impl SingleNode {
    /// The endpoint the one-box server's node is recorded under.
    pub const ENDPOINT: &'static str = "local";

    /// Wraps the node.
    pub fn new(compute: Arc<dyn Compute>) -> SingleNode {
        SingleNode {
            node: Node {
                endpoint: Arc::from(Self::ENDPOINT),
                compute,
            },
        }
    }

    /// The node, which answers as long as the process runs. Its start time is not needed: the
    /// one-box server forgets the sessions of its previous run when it starts.
    fn view(&self) -> NodeView {
        NodeView {
            node: self.node.clone(),
            healthy: true,
            problem: None,
            started_at: None,
        }
    }
}

impl Nodes for SingleNode {
    fn for_session(&self, _runtime: RuntimeType) -> Result<Node, ComputeError> {
        Ok(self.node.clone())
    }

    fn for_service(&self, _key: &str, _runtime: RuntimeType) -> Result<Node, ComputeError> {
        Ok(self.node.clone())
    }

    fn get(&self, endpoint: &str) -> Option<NodeView> {
        (endpoint == Self::ENDPOINT).then(|| self.view())
    }

    fn all(&self) -> Vec<NodeView> {
        vec![self.view()]
    }

    fn remote(&self) -> bool {
        false
    }

    fn set_endpoints(&self, _endpoints: Vec<String>) {}
}

/// No compute node at all: for processes that only administer the database (`o16n admin`).
pub struct NoNodes;

impl NoNodes {
    fn none() -> ComputeError {
        ComputeError::NodeUnavailable("this process runs no code".to_owned())
    }
}

impl Nodes for NoNodes {
    fn for_session(&self, _runtime: RuntimeType) -> Result<Node, ComputeError> {
        Err(Self::none())
    }

    fn for_service(&self, _key: &str, _runtime: RuntimeType) -> Result<Node, ComputeError> {
        Err(Self::none())
    }

    fn get(&self, _endpoint: &str) -> Option<NodeView> {
        None
    }

    fn all(&self) -> Vec<NodeView> {
        Vec::new()
    }

    fn remote(&self) -> bool {
        false
    }

    fn set_endpoints(&self, _endpoints: Vec<String>) {}
}
