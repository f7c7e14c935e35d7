//! Where the model runs. wgpu on a real GPU; Burn's pure-Rust CPU backend
//! (flex) otherwise — including when the only wgpu adapter is a software
//! rasterizer such as Mesa's lavapipe, which is ~10× slower than flex and
//! spends about a minute compiling kernels for every new tensor shape.

use burn::tensor::{Device, DeviceKind};

pub use crate::embed::DeviceChoice;

/// The device chosen, and words for the user.
#[derive(Clone, Debug)]
pub struct ComputeDevice {
    pub device: Device,
    pub description: String,
    pub is_gpu: bool,
}

impl ComputeDevice {
    pub fn cpu() -> Self {
        Self {
            device: Device::flex(),
            description: format!(
                "CPU (Burn flex backend, {} threads)",
                rayon::current_num_threads()
            ),
            is_gpu: false,
        }
    }

    pub fn select(choice: DeviceChoice) -> anyhow::Result<Self> {
        match choice {
            DeviceChoice::Cpu => Ok(Self::cpu()),
            DeviceChoice::Gpu => {
                let device = Device::wgpu(DeviceKind::DefaultDevice);
                let identity = std::panic::catch_unwind(|| device.identity())
                    .ok()
                    .flatten()
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "no wgpu adapter is usable on this machine (install a Vulkan driver, \
                             e.g. mesa-vulkan-drivers), or use `--device cpu`"
                        )
                    })?;
                let software = identity.physical.is_none();
                Ok(Self {
                    description: format!(
                        "GPU via wgpu: {}{}",
                        identity.name,
                        if software {
                            " (a software adapter: `--device cpu` is faster)"
                        } else {
                            ""
                        }
                    ),
                    device,
                    is_gpu: true,
                })
            }
            DeviceChoice::Auto => {
                // Only cards count: a software adapter has no physical device.
                let gpus = std::panic::catch_unwind(Device::enumerate_physical).unwrap_or_default();
                match gpus.into_iter().next() {
                    Some(gpu) if !gpu.devices.is_empty() => Ok(Self {
                        device: gpu.devices[0].clone(),
                        description: format!("GPU via wgpu: {}", gpu.name),
                        is_gpu: true,
                    }),
                    _ => Ok(Self::cpu()),
                }
            }
        }
    }
}
