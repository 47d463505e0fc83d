//! GPU products, the node-label families that name them, and the table of known label values.
//!
//! Product matching is by this table, never by regex: a product matches a node when the node's
//! label value is one of the values listed for the product in the chosen family. Values are
//! what the labelling component writes, e.g. NVIDIA GPU feature discovery turns the
//! `nvidia-smi` name "NVIDIA A100-SXM4-80GB" into `NVIDIA-A100-SXM4-80GB`.

use std::fmt;

/// Who makes a GPU; decides the default extended resource and the taint to tolerate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vendor {
    /// `nvidia.com/*` resources.
    Nvidia,
    /// `amd.com/*` resources.
    Amd,
    /// `gpu.intel.com/*` resources.
    Intel,
}

impl Vendor {
    /// The whole-GPU extended resource of this vendor's device plugin.
    pub fn default_resource(self) -> &'static str {
        match self {
            Vendor::Nvidia => "nvidia.com/gpu",
            Vendor::Amd => "amd.com/gpu",
            Vendor::Intel => "gpu.intel.com/i915",
        }
    }

    /// The resource-name domain (`nvidia.com`, `amd.com`, `gpu.intel.com`).
    pub fn domain(self) -> &'static str {
        match self {
            Vendor::Nvidia => "nvidia.com",
            Vendor::Amd => "amd.com",
            Vendor::Intel => "gpu.intel.com",
        }
    }

    /// The vendor whose device plugin serves `resource`, if any.
    pub fn of_resource(resource: &str) -> Option<Vendor> {
        let (domain, _) = resource.split_once('/')?;
        [Vendor::Nvidia, Vendor::Amd, Vendor::Intel]
            .into_iter()
            .find(|vendor| vendor.domain() == domain)
    }
}

macro_rules! products {
    ($($variant:ident => $name:literal, $vendor:ident;)*) => {
        /// A GPU product the compact grammar and the label table know.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum GpuProduct {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl GpuProduct {
            /// Every known product.
            pub const ALL: &'static [GpuProduct] = &[$(GpuProduct::$variant),*];

            /// The canonical name used by the compact grammar (`A100`, `L40S`, `MI300X`).
            pub fn name(self) -> &'static str {
                match self { $(GpuProduct::$variant => $name,)* }
            }

            /// The product's vendor.
            pub fn vendor(self) -> Vendor {
                match self { $(GpuProduct::$variant => Vendor::$vendor,)* }
            }
        }
    };
}

products! {
    A100 => "A100", Nvidia;
    A10G => "A10G", Nvidia;
    A10 => "A10", Nvidia;
    B200 => "B200", Nvidia;
    H100 => "H100", Nvidia;
    H200 => "H200", Nvidia;
    L4 => "L4", Nvidia;
    L40S => "L40S", Nvidia;
    T4 => "T4", Nvidia;
    V100 => "V100", Nvidia;
    MI300X => "MI300X", Amd;
    MI325X => "MI325X", Amd;
}

impl GpuProduct {
    /// Looks a product up by name, ignoring ASCII case (`a100`, `A100`).
    pub fn from_name(name: &str) -> Option<GpuProduct> {
        GpuProduct::ALL
            .iter()
            .copied()
            .find(|product| product.name().eq_ignore_ascii_case(name))
    }

    /// The known label values of this product in `family`, largest memory last.
    pub fn label_values(self, family: LabelFamily) -> impl Iterator<Item = &'static LabelValue> {
        LABEL_VALUES
            .iter()
            .filter(move |entry| entry.family == family && entry.product == self)
    }
}

impl fmt::Display for GpuProduct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A family of node labels that identifies the GPU product (and maybe its memory).
///
/// | Family | Product label | Memory label (MiB, `Gt`) |
/// | --- | --- | --- |
/// | [`NvidiaGfd`](LabelFamily::NvidiaGfd) | `nvidia.com/gpu.product` | `nvidia.com/gpu.memory` |
/// | [`AmdLabeller`](LabelFamily::AmdLabeller) | `amd.com/gpu.product-name` | none (values filtered by the table) |
/// | [`Gke`](LabelFamily::Gke) | `cloud.google.com/gke-accelerator` | none (values filtered by the table) |
/// | [`Karpenter`](LabelFamily::Karpenter) | `karpenter.k8s.aws/instance-gpu-name` | `karpenter.k8s.aws/instance-gpu-memory` |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LabelFamily {
    /// NVIDIA GPU feature discovery (GPU operator, NFD side-car): `nvidia.com/gpu.product`.
    NvidiaGfd,
    /// The ROCm node labeller: `amd.com/gpu.product-name`.
    AmdLabeller,
    /// GKE node pools: `cloud.google.com/gke-accelerator`.
    Gke,
    /// EKS with Karpenter: `karpenter.k8s.aws/instance-gpu-name`.
    Karpenter,
}

impl LabelFamily {
    /// Every family, in the order "any" emits node selector terms.
    pub const ALL: &'static [LabelFamily] = &[
        LabelFamily::NvidiaGfd,
        LabelFamily::AmdLabeller,
        LabelFamily::Gke,
        LabelFamily::Karpenter,
    ];

    /// Short name for messages (`nvidia-gfd`, `amd-labeller`, `gke`, `karpenter`).
    pub fn name(self) -> &'static str {
        match self {
            LabelFamily::NvidiaGfd => "nvidia-gfd",
            LabelFamily::AmdLabeller => "amd-labeller",
            LabelFamily::Gke => "gke",
            LabelFamily::Karpenter => "karpenter",
        }
    }

    /// The label whose value names the product.
    pub fn product_label(self) -> &'static str {
        match self {
            LabelFamily::NvidiaGfd => "nvidia.com/gpu.product",
            LabelFamily::AmdLabeller => "amd.com/gpu.product-name",
            LabelFamily::Gke => "cloud.google.com/gke-accelerator",
            LabelFamily::Karpenter => "karpenter.k8s.aws/instance-gpu-name",
        }
    }

    /// The label holding per-GPU memory in MiB, when the family has one.
    pub fn memory_label(self) -> Option<&'static str> {
        match self {
            LabelFamily::NvidiaGfd => Some("nvidia.com/gpu.memory"),
            LabelFamily::Karpenter => Some("karpenter.k8s.aws/instance-gpu-memory"),
            LabelFamily::AmdLabeller | LabelFamily::Gke => None,
        }
    }

    /// Every label key this family uses.
    pub fn label_keys(self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.product_label()).chain(self.memory_label())
    }
}

impl fmt::Display for LabelFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One known label value: `family`'s product label is `value` on nodes with `product`, whose
/// nominal memory is `memory_gb` (the largest variant when one value covers several sizes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabelValue {
    /// The label family.
    pub family: LabelFamily,
    /// The product.
    pub product: GpuProduct,
    /// The label value.
    pub value: &'static str,
    /// Nominal GPU memory in GB (as marketed: `80` for an 80GB part).
    pub memory_gb: u32,
}

const fn entry(
    family: LabelFamily,
    product: GpuProduct,
    value: &'static str,
    memory_gb: u32,
) -> LabelValue {
    LabelValue {
        family,
        product,
        value,
        memory_gb,
    }
}

use GpuProduct as P;
use LabelFamily as F;

/// The table of known label values. Extend it when a new product or cloud SKU appears; a
/// product missing from a family is an error ([`crate::Error::ProductNotInFamily`]), not a guess.
pub const LABEL_VALUES: &[LabelValue] = &[
    // NVIDIA GPU feature discovery: the nvidia-smi name with spaces replaced by '-'.
    entry(F::NvidiaGfd, P::A100, "NVIDIA-A100-SXM4-40GB", 40),
    entry(F::NvidiaGfd, P::A100, "NVIDIA-A100-PCIE-40GB", 40),
    entry(F::NvidiaGfd, P::A100, "NVIDIA-A100-SXM4-80GB", 80),
    entry(F::NvidiaGfd, P::A100, "NVIDIA-A100-80GB-PCIe", 80),
    entry(F::NvidiaGfd, P::A10G, "NVIDIA-A10G", 24),
    entry(F::NvidiaGfd, P::A10, "NVIDIA-A10", 24),
    entry(F::NvidiaGfd, P::B200, "NVIDIA-B200", 180),
    entry(F::NvidiaGfd, P::H100, "NVIDIA-H100-80GB-HBM3", 80),
    entry(F::NvidiaGfd, P::H100, "NVIDIA-H100-PCIe", 80),
    entry(F::NvidiaGfd, P::H100, "NVIDIA-H100-NVL", 94),
    entry(F::NvidiaGfd, P::H200, "NVIDIA-H200", 141),
    entry(F::NvidiaGfd, P::H200, "NVIDIA-H200-NVL", 141),
    entry(F::NvidiaGfd, P::L4, "NVIDIA-L4", 24),
    entry(F::NvidiaGfd, P::L40S, "NVIDIA-L40S", 48),
    entry(F::NvidiaGfd, P::T4, "Tesla-T4", 16),
    entry(F::NvidiaGfd, P::V100, "Tesla-V100-SXM2-16GB", 16),
    entry(F::NvidiaGfd, P::V100, "Tesla-V100-PCIE-16GB", 16),
    entry(F::NvidiaGfd, P::V100, "Tesla-V100-SXM2-32GB", 32),
    entry(F::NvidiaGfd, P::V100, "Tesla-V100-PCIE-32GB", 32),
    // ROCm node labeller.
    entry(F::AmdLabeller, P::MI300X, "AMD_Instinct_MI300X_OAM", 192),
    entry(F::AmdLabeller, P::MI325X, "AMD_Instinct_MI325_OAM", 256),
    // GKE accelerator names.
    entry(F::Gke, P::A100, "nvidia-tesla-a100", 40),
    entry(F::Gke, P::A100, "nvidia-a100-80gb", 80),
    entry(F::Gke, P::B200, "nvidia-b200", 180),
    entry(F::Gke, P::H100, "nvidia-h100-80gb", 80),
    entry(F::Gke, P::H100, "nvidia-h100-mega-80gb", 80),
    entry(F::Gke, P::H200, "nvidia-h200-141gb", 141),
    entry(F::Gke, P::L4, "nvidia-l4", 24),
    entry(F::Gke, P::T4, "nvidia-tesla-t4", 16),
    entry(F::Gke, P::V100, "nvidia-tesla-v100", 16),
    // Karpenter on EKS: one name per product; memory comes from instance-gpu-memory.
    entry(F::Karpenter, P::A100, "a100", 80),
    entry(F::Karpenter, P::A10G, "a10g", 24),
    entry(F::Karpenter, P::B200, "b200", 180),
    entry(F::Karpenter, P::H100, "h100", 80),
    entry(F::Karpenter, P::H200, "h200", 141),
    entry(F::Karpenter, P::L4, "l4", 24),
    entry(F::Karpenter, P::L40S, "l40s", 48),
    entry(F::Karpenter, P::T4, "t4", 16),
    entry(F::Karpenter, P::V100, "v100", 32),
];

/// The `Gt` threshold (MiB) for a memory minimum of `min_memory_gb`.
///
/// Drivers report a little less than the marketing size (an "80GB" H100 reports 81559 MiB, a
/// "24GB" L4 23034 MiB), so the threshold is 90% of the nominal size in MiB, minus one because
/// `Gt` is strict: `80` gives `Gt 73727`, matching every 80GB part and no 48GB one.
pub fn memory_threshold_mib(min_memory_gb: u32) -> u64 {
    (u64::from(min_memory_gb) * 1024 * 9 / 10).saturating_sub(1)
}
