//! What a stage occupies while it runs: cores and GPUs (the local executor's slots), and the
//! memory and wall time a cluster scheduler must reserve. Kinds declare them from their params.

use serde::{Deserialize, Serialize};

/// What one attempt at a stage asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Cores; `u32::MAX` means every core the machine (or a cluster node) has.
    pub cpu: u32,
    pub gpu: u32,
    /// A GPU model the scheduler must pick (`a100`, as the cluster names it in `--gres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_type: Option<String>,
    /// Memory in MiB; `None` leaves it to the scheduler's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Wall-time limit in seconds; `None` leaves it to the scheduler's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_s: Option<u64>,
}

impl Resources {
    pub const ONE_CPU: Resources = Resources {
        cpu: 1,
        gpu: 0,
        gpu_type: None,
        memory_mb: None,
        time_s: None,
    };

    pub fn cpus(cpu: u32) -> Resources {
        Resources {
            cpu,
            ..Resources::ONE_CPU
        }
    }

    pub fn gpus(gpu: u32) -> Resources {
        Resources {
            cpu: 1,
            gpu,
            ..Resources::ONE_CPU
        }
    }
}
