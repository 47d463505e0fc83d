//! The crate's one error type.

/// Everything that can go wrong in this crate. Messages are lower-case, name the input or
/// field, and say what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A compact GPU request string did not parse.
    #[error(
        "invalid gpu request {input:?}: {problem} at {token:?}; use one of: \"4xA100-80GB\", \"4xA100\", \"H100\", \"nvidia.com/gpu=2\", \"amd.com/gpu=8\", \"nvidia.com/mig-1g.10gb=1\", \"2xL4,shm=16Gi\", \"nvidia.com/gpu=1,mem=24GB\""
    )]
    InvalidGpuRequest {
        /// The whole input.
        input: String,
        /// The offending token.
        token: String,
        /// What is wrong with it.
        problem: String,
    },

    /// A resource quantity did not parse.
    #[error(
        "invalid quantity {value:?}: {reason}; use a number with an optional suffix such as 500m, 2, 16Gi, 129M or 1e3"
    )]
    InvalidQuantity {
        /// The text that failed.
        value: String,
        /// Why.
        reason: &'static str,
    },

    /// A JSON field that must be an object (or array) is something else.
    #[error("{field} is {found}, expected {expected}; fix the manifest so {field} is {expected}")]
    WrongJsonType {
        /// Field path, relative to the pod spec.
        field: String,
        /// What was expected (`an object`, `an array`).
        expected: &'static str,
        /// What was found (`a string`, ...).
        found: &'static str,
    },

    /// The pod spec has no container to put the GPUs on.
    #[error("{field} is empty; add the training container before applying gpu settings")]
    NoContainer {
        /// `containers`.
        field: String,
    },

    /// The named container is not in the pod spec.
    #[error(
        "container {name:?} not found in containers (have: {available}); name an existing container"
    )]
    ContainerNotFound {
        /// The name asked for.
        name: String,
        /// The names present, comma-separated.
        available: String,
    },

    /// A field already holds a user value that differs from the one the helper would set.
    /// Helpers never overwrite user values.
    #[error(
        "{field}{container_note} is already {existing}, not {wanted}; remove it from the template or make it {wanted}"
    )]
    Conflict {
        /// Field path, relative to the pod spec (or pod template / Volcano Job).
        field: String,
        /// ` in container "name"` or empty.
        container_note: String,
        /// The value found.
        existing: String,
        /// The value the helper would set.
        wanted: String,
    },

    /// The product is not sold in the chosen label family (e.g. MI300X on GKE).
    #[error(
        "gpu product {product} has no known {family} label value; choose another label family ({available}) or drop the product from the request"
    )]
    ProductNotInFamily {
        /// Product name.
        product: String,
        /// Label family name.
        family: String,
        /// Families that do know the product, comma-separated (may be empty).
        available: String,
    },

    /// No known variant of the product (or no known GPU) has the requested memory.
    #[error(
        "no known {product} variant in {family} has at least {min_memory_gb}GB of gpu memory; lower the memory minimum or pick a larger product"
    )]
    NoVariantWithMemory {
        /// Product name, or `gpu` when no product was given.
        product: String,
        /// Label family name.
        family: String,
        /// The minimum asked for.
        min_memory_gb: u32,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
