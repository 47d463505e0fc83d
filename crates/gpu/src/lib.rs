//! GPU scheduling helpers for the launch agent: a compact GPU request grammar, validation of
//! extended resources in rendered pod specs, rendering helpers (resources, node affinity,
//! tolerations, `/dev/shm`, Volcano gang, priority class) and a schedulability pre-check that
//! answers in the kube-scheduler's own words, after the target namespace's LimitRanges and
//! ResourceQuotas have had their say.
//!
//! None of this exists in W&B's agent, which neither validates GPU requests nor checks
//! schedulability; the pre-check follows the kube-scheduler's filters and the API server's
//! LimitRanger and ResourceQuota admission instead, in their own words.
//!
//! **Invariant:** this crate is pure. It never does IO, reads the environment or the clock, and
//! has no async runtime or Kubernetes client; node, pod, quota and limit-range lists come in as
//! arguments (k8s-openapi types), manifests as `serde_json::Value`.
//!
//! Main types and functions: [`GpuRequest`], [`validate_extended_resources`],
//! [`apply_gpu_request`] (and the helpers it calls), [`precheck()`] → [`PreCheck`] /
//! [`Verdict`], [`QuantityValue`], [`Error`].
//!
//! # The compact GPU request grammar
//!
//! ```text
//! request  = item *("," option)
//! item     = resource "=" count                 ; nvidia.com/gpu=2, nvidia.com/mig-1g.10gb=1
//!          | [count "x"] product ["-" memory]   ; 4xA100-80GB, 4xA100, H100 (count 1)
//! option   = "shm=" quantity                     ; /dev/shm size, a Kubernetes quantity: 16Gi
//!          | "mem=" memory                       ; minimum GPU memory
//! memory   = digits ("GB" | "G" | "GiB" | "Gi")  ; nominal size, any case: 80GB
//! count    = digits                              ; at least 1
//! resource = vendor-domain "/" name              ; domains nvidia.com, amd.com, gpu.intel.com
//! ```
//!
//! | Input | Count | Resource | Product | Min memory | shm |
//! | --- | --- | --- | --- | --- | --- |
//! | `4xA100-80GB` | 4 | `nvidia.com/gpu` | A100 | 80GB | |
//! | `4xA100` | 4 | `nvidia.com/gpu` | A100 | | |
//! | `H100` | 1 | `nvidia.com/gpu` | H100 | | |
//! | `8xMI300X` | 8 | `amd.com/gpu` | MI300X | | |
//! | `nvidia.com/gpu=2` | 2 | `nvidia.com/gpu` | | | |
//! | `amd.com/gpu=8` | 8 | `amd.com/gpu` | | | |
//! | `nvidia.com/mig-1g.10gb=1` | 1 | `nvidia.com/mig-1g.10gb` | | | |
//! | `2xL4,shm=16Gi` | 2 | `nvidia.com/gpu` | L4 | | 16Gi |
//! | `nvidia.com/gpu=1,mem=24GB` | 1 | `nvidia.com/gpu` | | 24GB | |
//!
//! Known products: A100, A10G, A10, B200, H100, H200, L4, L40S, T4, V100, MI300X, MI325X
//! (case-insensitive). `Display` prints the canonical form (`1xH100`), which parses back to
//! the same request. A queue config can carry `gpu: "4xA100"`: [`GpuRequest`] deserializes
//! from that string.
//!
//! # Label families
//!
//! [`add_node_affinity`] selects nodes by product and memory through one [`LabelFamily`], or
//! through all of them ([`FamilyChoice::Any`]: one `nodeSelectorTerm` per family, ORed).
//! Products match by the list of known label values in [`LABEL_VALUES`], never by regex:
//!
//! | Family | Product label | Example values | Memory label (`Gt`, MiB) |
//! | --- | --- | --- | --- |
//! | `NvidiaGfd` (GPU feature discovery, NFD-style) | `nvidia.com/gpu.product` | `NVIDIA-A100-SXM4-80GB`, `NVIDIA-H100-80GB-HBM3`, `NVIDIA-L4`, `Tesla-T4` | `nvidia.com/gpu.memory` |
//! | `AmdLabeller` (ROCm node labeller) | `amd.com/gpu.product-name` | `AMD_Instinct_MI300X_OAM` | none |
//! | `Gke` | `cloud.google.com/gke-accelerator` | `nvidia-tesla-a100`, `nvidia-a100-80gb`, `nvidia-h100-80gb`, `nvidia-l4`, `nvidia-tesla-t4` | none |
//! | `Karpenter` (EKS) | `karpenter.k8s.aws/instance-gpu-name` | `a100`, `h100`, `l4`, `t4`, `a10g` | `karpenter.k8s.aws/instance-gpu-memory` |
//!
//! A memory minimum becomes `Gt` on the memory label at 90% of the nominal size
//! ([`memory_threshold_mib`]), because drivers report less than the marketing size; families
//! without a memory label keep only the table values with enough memory.
//!
//! # Example
//!
//! ```
//! use rlaunch_gpu::{FamilyChoice, GpuRequest, LabelFamily, RenderOptions, Verdict};
//! use serde_json::json;
//!
//! let request: GpuRequest = "2xL4,shm=16Gi".parse()?;
//! let mut pod_spec = json!({"containers": [{"name": "train", "image": "trainer:1"}]});
//! let options = RenderOptions { container: None, families: FamilyChoice::Only(LabelFamily::Gke) };
//! rlaunch_gpu::apply_gpu_request(&mut pod_spec, &request, &options)?;
//! assert_eq!(pod_spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"], "2");
//! assert!(rlaunch_gpu::validate_extended_resources(&pod_spec, "spec.template.spec").is_empty());
//!
//! let typed: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(pod_spec)?;
//! let check = rlaunch_gpu::precheck(&[], &[], &[], &[], &[typed]);
//! assert_eq!(check.verdict, Verdict::NeverFits);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![doc = include_str!("../README.md")]

mod admission;
mod amounts;
mod error;
mod labels;
mod precheck;
mod quantity;
mod render;
mod request;
mod validate;

#[cfg(test)]
mod fixtures;

pub use amounts::pod_requests;
pub use error::{Error, Result};
pub use labels::{GpuProduct, LABEL_VALUES, LabelFamily, LabelValue, Vendor, memory_threshold_mib};
pub use precheck::{PreCheck, Verdict, matches_node_affinity, precheck, tolerates};
pub use quantity::QuantityValue;
pub use render::{
    FamilyChoice, RenderOptions, SHM_VOLUME_NAME, VOLCANO_GROUP_ANNOTATION, VOLCANO_SCHEDULER,
    add_gpu_tolerations, add_node_affinity, add_shm_volume, add_volcano_gang, apply_gpu_request,
    family_requirements, gpu_tolerations, set_gpu_resources, set_priority_class,
    set_volcano_min_available,
};
pub use request::GpuRequest;
pub use validate::{ValidationError, is_extended_resource, validate_extended_resources};
