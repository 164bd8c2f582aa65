//! Choosing where tensors live: one function, explicit about what it picked and why.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// A hardware GPU through wgpu when one exists, else the CPU (with one log line).
    Auto,
    /// wgpu on whatever adapter exists (a software Vulkan adapter such as lavapipe included);
    /// an error when none does.
    Wgpu,
    /// The CPU (burn's flex backend).
    Cpu,
}

/// The device chosen and a description for logs and artifacts.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The device.
    pub device: Device,
    /// `cpu (flex)` or `wgpu (<adapter kind>)`.
    pub description: String,
    /// Whether it is the CPU.
    pub cpu: bool,
}

impl Selected {
    /// Threads a training step should use: every core on the CPU (the batch split over them),
    /// one on a GPU (the device does the work).
    #[must_use]
    pub fn training_threads(&self) -> usize {
        if self.cpu {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        } else {
            1
        }
    }
}

/// No wgpu adapter could be initialised.
#[derive(Debug, thiserror::Error)]
#[error(
    "no wgpu adapter could be initialised ({0}); install GPU (or Mesa Vulkan) drivers, or use --device cpu"
)]
pub struct NoWgpu(String);

/// wgpu runtimes initialise once per process; later selections reuse them.
static INITIALISED: std::sync::Mutex<Vec<(String, Device)>> = std::sync::Mutex::new(Vec::new());

fn init_wgpu(kind: Option<DeviceKind>, name: &str) -> Result<Device, String> {
    let mut cache = INITIALISED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, device)) = cache.iter().find(|(n, _)| n == name) {
        return Ok(device.clone());
    }
    let options = Device::wgpu_options();
    let options = match kind {
        Some(kind) => options.device_kind(kind),
        None => options,
    };
    let device = options.init().map_err(|e| e.to_string())?;
    cache.push((name.to_owned(), device.clone()));
    Ok(device)
}

/// Picks the device for `choice`.
///
/// # Errors
/// [`NoWgpu`] when `choice` is [`DeviceChoice::Wgpu`] and no adapter initialises.
pub fn select(choice: DeviceChoice) -> Result<Selected, NoWgpu> {
    let cpu = || Selected {
        device: Device::flex(),
        description: "cpu (flex)".to_owned(),
        cpu: true,
    };
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        DeviceChoice::Wgpu => init_wgpu(None, "default adapter")
            .map(|device| Selected {
                device,
                description: "wgpu (default adapter)".to_owned(),
                cpu: false,
            })
            .map_err(NoWgpu),
        DeviceChoice::Auto => {
            // Hardware adapters only: a software adapter is many times slower than flex.
            for (kind, name) in [
                (DeviceKind::DiscreteGpu(0), "discrete GPU"),
                (DeviceKind::IntegratedGpu(0), "integrated GPU"),
            ] {
                if let Ok(device) = init_wgpu(Some(kind), name) {
                    return Ok(Selected {
                        device,
                        description: format!("wgpu ({name})"),
                        cpu: false,
                    });
                }
            }
            tracing::info!("no hardware GPU adapter found through wgpu: using the CPU (flex backend)");
            Ok(cpu())
        }
    }
}
