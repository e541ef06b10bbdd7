//! `AppState`: everything a request handler may use. No globals: a test can run many servers
//! in one process, each with its own state.

use std::sync::Arc;

use chaperone_core::Clock;
use chaperone_store::{KvSettings, Store};

use crate::seal::SealState;

/// Server settings that handlers read.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Key/value defaults (versions kept, check-and-set required).
    pub kv: KvSettings,
    /// Largest accepted request body, in bytes.
    pub max_request_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            kv: KvSettings::default(),
            max_request_bytes: 1024 * 1024,
        }
    }
}

/// Shared state of one server.
#[derive(Debug)]
pub struct AppState {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: Settings,
    pub(crate) seal: SealState,
}

impl AppState {
    /// A sealed server over `store`. It loads the keyring from the store on first use.
    pub fn new(store: Store, clock: Arc<dyn Clock>, settings: Settings) -> Self {
        Self {
            store,
            clock,
            settings,
            seal: SealState::default(),
        }
    }

    /// The store, for the binary's own start-up steps.
    pub fn store(&self) -> &Store {
        &self.store
    }
}
