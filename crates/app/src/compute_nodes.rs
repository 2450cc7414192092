//! The registered compute nodes (the reference's Centralized Configuration APIs): entries
//! stored verbatim and returned verbatim, expanded into endpoints for routing. Only an Owner
//! may change them; every web node follows a change at once.

use o16n_compute::entries;
use o16n_types::Role;

use crate::events::Event;
use crate::{App, AppError, Principal};

/// How `/computenodes` changes the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntriesChange {
    /// Replaces the whole list (`POST`).
    Set,
    /// Adds entries (`PUT`).
    Add,
    /// Removes entries (`DELETE`).
    Remove,
}

impl App {
    /// The entries, as stored.
    pub async fn compute_node_entries(&self) -> Result<Vec<String>, AppError> {
        Ok(self.store().compute_node_entries().await?)
    }

    /// Changes the entries. Every entry must be valid and all of them together must name at
    /// most [`entries::MAX_ENDPOINTS`] nodes, else nothing changes.
    pub async fn change_compute_node_entries(
        &self,
        caller: &Principal,
        change: EntriesChange,
        given: Vec<String>,
    ) -> Result<(), AppError> {
        if caller.role != Role::Owner {
            return Err(AppError::Forbidden(
                "only an Owner may change the compute nodes (the user does not have admin role)"
                    .to_owned(),
            ));
        }
        if given.is_empty() && change != EntriesChange::Set {
            return Err(AppError::InvalidInput("`entries` is empty".to_owned()));
        }
        entries::expand_all(given.iter().map(String::as_str))
            .map_err(|err| AppError::InvalidInput(err.to_string()))?;
        let store = self.store();
        match change {
            EntriesChange::Set => store.set_compute_node_entries(&given).await?,
            EntriesChange::Add => {
                let mut all = store.compute_node_entries().await?;
                all.extend(given.iter().cloned());
                entries::expand_all(all.iter().map(String::as_str))
                    .map_err(|err| AppError::InvalidInput(err.to_string()))?;
                store.add_compute_node_entries(&given).await?;
            }
            EntriesChange::Remove => store.remove_compute_node_entries(&given).await?,
        }
        tracing::info!(?change, entries = ?given, "compute nodes changed");
        self.reload_compute_nodes().await?;
        self.announce(&Event::ComputeNodes).await;
        Ok(())
    }

    /// Points routing at the nodes the configuration and the stored entries name.
    pub async fn reload_compute_nodes(&self) -> Result<(), AppError> {
        let mut all = self.inner.config.configured_compute_nodes.clone();
        all.extend(self.store().compute_node_entries().await?);
        let endpoints = entries::expand_all(all.iter().map(String::as_str))
            .map_err(|err| AppError::Internal(format!("a stored compute node entry: {err}")))?;
        self.nodes().set_endpoints(endpoints);
        Ok(())
    }
}
