//! What the broker's flags make: its configuration and its storage, each refused with the
//! flag named when it cannot work.

use std::sync::Arc;

use anyhow::{Context, Result};
use flowgate_broker::{BrokerConfig, DiskOptions, DiskStorage, MemoryStorage, Storage};
use flowgate_core::{Credit, MarkLimits};
use flowgate_observe::units::Size;

use super::{BrokerArgs, StorageKind};

impl BrokerArgs {
    pub(super) fn config(&self) -> Result<BrokerConfig> {
        if self.capacity == 0 || self.capacity_bytes.0 == 0 {
            anyhow::bail!("--capacity and --capacity-bytes must be at least 1");
        }
        let mut config = BrokerConfig {
            default_capacity: Credit::new(self.capacity, self.capacity_bytes.0),
            max_frame: self.max_frame,
            handshake_timeout: self.handshake_timeout.0,
            idle_timeout: self.idle_timeout.0,
            ack_wait: Some(self.ack_wait.0).filter(|w| !w.is_zero()),
            max_topics: usize::try_from(self.max_topics).unwrap_or(usize::MAX),
            max_groups: usize::try_from(self.max_groups).unwrap_or(usize::MAX),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            marks: MarkLimits {
                idle_ttl: self.dedup_ttl.0,
                max_ids: usize::try_from(self.dedup_max_ids).unwrap_or(usize::MAX),
            },
            ..BrokerConfig::default()
        };
        if let Some(path) = &self.config {
            config.load_file(path)?;
        }
        config.memory_budget = match self.memory_budget {
            Some(Size(0)) => anyhow::bail!("--memory-budget must be above 0"),
            Some(Size(n)) => {
                tracing::info!("memory budget {n} bytes (--memory-budget)");
                Some(n)
            }
            None => flowgate_broker::cgroup_limit().map(|(n, from)| {
                tracing::info!(
                    "memory budget {n} bytes, the limit of the broker's cgroup ({from:?})"
                );
                n
            }),
        };
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let tls = flowgate_proto::tls::server_config(cert, key, self.tls_client_ca.as_deref())
                .context("cannot set up TLS")?;
            config.tls = Some(tls);
        }
        Ok(config)
    }

    /// The store the flags ask for; `disk_limits` are the declared topics' own log limits.
    pub(super) fn storage(
        &self,
        disk_limits: &std::collections::BTreeMap<String, u64>,
    ) -> Result<Arc<dyn Storage>> {
        match (self.storage, &self.data_dir) {
            (StorageKind::Memory, None) => Ok(Arc::new(MemoryStorage)),
            (StorageKind::Memory, Some(_)) => {
                anyhow::bail!("--data-dir is only used with --storage disk")
            }
            (StorageKind::Disk, None) => anyhow::bail!("--storage disk needs --data-dir DIR"),
            (StorageKind::Disk, Some(dir)) => {
                if self.segment_bytes.0 < 4096 || self.max_disk_bytes.0 < self.segment_bytes.0 {
                    anyhow::bail!(
                        "--segment-bytes must be at least 4KiB and --max-disk-bytes at least one segment"
                    );
                }
                let storage = DiskStorage::locked(DiskOptions {
                    data_dir: dir.clone(),
                    max_disk_bytes: self.max_disk_bytes.0,
                    segment_bytes: self.segment_bytes.0,
                })?;
                Ok(Arc::new(storage.limit_topics(disk_limits.clone())))
            }
        }
    }
}
