//! The GPU request model and its compact string grammar.
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
//! Products and the `x` are case-insensitive (`4xa100` is `4xA100`). Spaces around tokens
//! are ignored. Each option may appear once. A product implies its vendor's whole-GPU resource
//! (`A100` → `nvidia.com/gpu`, `MI300X` → `amd.com/gpu`). MIG resources must look like
//! `nvidia.com/mig-<slices>g.<memory>gb`.

use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Deserialize;

use crate::labels::{GpuProduct, Vendor};
use crate::{Error, QuantityValue, Result};

/// What a run asks for: how many GPUs, of which extended resource, optionally which product,
/// how much GPU memory at least, and how large a `/dev/shm`.
///
/// Build one by parsing the compact grammar ([`GpuRequest::parse`], [`FromStr`], or serde
/// from a string such as `gpu: "4xA100"`) or with the constructors.
///
/// ```
/// use rlaunch_gpu::{GpuProduct, GpuRequest};
///
/// let request: GpuRequest = "4xA100-80GB,shm=16Gi".parse().unwrap();
/// assert_eq!(request.count(), 4);
/// assert_eq!(request.resource(), "nvidia.com/gpu");
/// assert_eq!(request.product(), Some(GpuProduct::A100));
/// assert_eq!(request.min_memory_gb(), Some(80));
/// assert_eq!(request.shm_size(), Some("16Gi"));
///
/// let mig = GpuRequest::parse("nvidia.com/mig-1g.10gb=1").unwrap();
/// assert_eq!(mig.product(), None);
/// assert_eq!(GpuRequest::parse("H100").unwrap().to_string(), "1xH100");
///
/// let error = GpuRequest::parse("4xZ9000").unwrap_err().to_string();
/// assert!(error.contains("\"Z9000\""), "{error}");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct GpuRequest {
    count: u32,
    resource: String,
    product: Option<GpuProduct>,
    min_memory_gb: Option<u32>,
    shm_size: Option<String>,
}

impl GpuRequest {
    /// `count` GPUs of `product`, on its vendor's whole-GPU resource.
    pub fn of_product(count: u32, product: GpuProduct) -> Result<Self> {
        check_count(count, &count.to_string(), &count.to_string())?;
        Ok(Self {
            count,
            resource: product.vendor().default_resource().to_owned(),
            product: Some(product),
            min_memory_gb: None,
            shm_size: None,
        })
    }

    /// `count` of the extended resource `resource` (`nvidia.com/gpu`, `nvidia.com/mig-1g.10gb`).
    pub fn of_resource(count: u32, resource: &str) -> Result<Self> {
        check_count(count, resource, &count.to_string())?;
        check_resource(resource, resource)?;
        Ok(Self {
            count,
            resource: resource.to_owned(),
            product: None,
            min_memory_gb: None,
            shm_size: None,
        })
    }

    /// The same request with a minimum GPU memory in GB (nominal, as in `A100-80GB`).
    pub fn with_min_memory_gb(mut self, min_memory_gb: u32) -> Result<Self> {
        if min_memory_gb == 0 {
            return Err(invalid(
                &self.to_string(),
                "0GB",
                "gpu memory must be at least 1GB",
            ));
        }
        self.min_memory_gb = Some(min_memory_gb);
        Ok(self)
    }

    /// The same request with a `/dev/shm` size (a Kubernetes quantity such as `16Gi`).
    pub fn with_shm_size(mut self, shm_size: &str) -> Result<Self> {
        check_shm(shm_size, shm_size)?;
        self.shm_size = Some(shm_size.to_owned());
        Ok(self)
    }

    /// Parses the compact grammar (see the crate docs).
    pub fn parse(input: &str) -> Result<Self> {
        let mut parts = input.split(',');
        let item = parts.next().unwrap_or_default().trim();
        let mut request = parse_item(input, item)?;
        let mut seen_mem = false;
        for option in parts {
            let option = option.trim();
            let Some((key, value)) = option.split_once('=') else {
                return Err(invalid(
                    input,
                    option,
                    "options must be key=value, one of shm= and mem=",
                ));
            };
            match key.trim() {
                "shm" if request.shm_size.is_none() => {
                    let value = value.trim();
                    check_shm(input, value)?;
                    request.shm_size = Some(value.to_owned());
                }
                "mem" if !seen_mem && request.min_memory_gb.is_none() => {
                    seen_mem = true;
                    request.min_memory_gb = Some(parse_memory(input, value.trim())?);
                }
                "shm" | "mem" => return Err(invalid(input, option, "this option is given twice")),
                _ => {
                    return Err(invalid(
                        input,
                        option,
                        "unknown option; the options are shm= and mem=",
                    ));
                }
            }
        }
        Ok(request)
    }

    /// Number of GPUs (or MIG slices).
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The extended resource name, e.g. `nvidia.com/gpu`.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The vendor serving [`resource`](Self::resource).
    pub fn vendor(&self) -> Vendor {
        // check_resource guarantees a known vendor domain.
        Vendor::of_resource(&self.resource).unwrap_or(Vendor::Nvidia)
    }

    /// The product, when one was named.
    pub fn product(&self) -> Option<GpuProduct> {
        self.product
    }

    /// The minimum GPU memory in nominal GB, when one was given.
    pub fn min_memory_gb(&self) -> Option<u32> {
        self.min_memory_gb
    }

    /// The `/dev/shm` size as written, when one was given.
    pub fn shm_size(&self) -> Option<&str> {
        self.shm_size.as_deref()
    }

    /// The `/dev/shm` size as a k8s-openapi [`Quantity`].
    pub fn shm_quantity(&self) -> Option<Quantity> {
        self.shm_size.clone().map(Quantity)
    }
}

impl fmt::Display for GpuRequest {
    /// The canonical compact form; it parses back to an equal request.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.product {
            Some(product) => {
                write!(f, "{}x{}", self.count, product)?;
                if let Some(memory) = self.min_memory_gb {
                    write!(f, "-{memory}GB")?;
                }
            }
            None => {
                write!(f, "{}={}", self.resource, self.count)?;
                if let Some(memory) = self.min_memory_gb {
                    write!(f, ",mem={memory}GB")?;
                }
            }
        }
        if let Some(shm) = &self.shm_size {
            write!(f, ",shm={shm}")?;
        }
        Ok(())
    }
}

impl FromStr for GpuRequest {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        Self::parse(input)
    }
}

impl TryFrom<String> for GpuRequest {
    type Error = Error;

    fn try_from(input: String) -> Result<Self> {
        Self::parse(&input)
    }
}

fn invalid(input: &str, token: &str, problem: &str) -> Error {
    Error::InvalidGpuRequest {
        input: input.to_owned(),
        token: token.to_owned(),
        problem: problem.to_owned(),
    }
}

fn check_count(count: u32, input: &str, token: &str) -> Result<()> {
    if count == 0 {
        return Err(invalid(input, token, "the gpu count must be at least 1"));
    }
    Ok(())
}

fn check_shm(input: &str, value: &str) -> Result<()> {
    match QuantityValue::parse(value) {
        Ok(quantity) if quantity.nanos() > 0 => Ok(()),
        Ok(_) => Err(invalid(input, value, "the shm size must be above zero")),
        Err(_) => Err(invalid(
            input,
            value,
            "the shm size is not a Kubernetes quantity like 16Gi",
        )),
    }
}

fn parse_count(input: &str, token: &str) -> Result<u32> {
    let count = token
        .parse::<u32>()
        .map_err(|_| invalid(input, token, "the gpu count is not a whole number"))?;
    check_count(count, input, token)?;
    Ok(count)
}

fn parse_memory(input: &str, token: &str) -> Result<u32> {
    let digits_end = token
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(token.len());
    let (digits, unit) = token.split_at(digits_end);
    let unit_ok = ["GB", "G", "GiB", "Gi"]
        .iter()
        .any(|known| known.eq_ignore_ascii_case(unit));
    if digits.is_empty() || !unit_ok {
        return Err(invalid(
            input,
            token,
            "gpu memory must be whole gigabytes like 80GB",
        ));
    }
    match digits.parse::<u32>() {
        Ok(0) | Err(_) => Err(invalid(input, token, "gpu memory must be at least 1GB")),
        Ok(memory) => Ok(memory),
    }
}

fn check_resource(input: &str, resource: &str) -> Result<()> {
    let Some((domain, name)) = resource.split_once('/') else {
        return Err(invalid(
            input,
            resource,
            "a resource must be domain/name like nvidia.com/gpu",
        ));
    };
    if Vendor::of_resource(resource).is_none() {
        return Err(invalid(
            input,
            domain,
            "unknown gpu vendor domain; use nvidia.com, amd.com or gpu.intel.com",
        ));
    }
    let name_ok = !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'_'
        })
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !name_ok {
        return Err(invalid(
            input,
            resource,
            "the resource name must be lower-case letters, digits, '.', '-' or '_'",
        ));
    }
    if let Some(profile) = name.strip_prefix("mig-")
        && !is_mig_profile(profile)
    {
        return Err(invalid(
            input,
            resource,
            "a MIG resource must look like nvidia.com/mig-1g.10gb",
        ));
    }
    Ok(())
}

/// `1g.10gb`, optionally followed by a `.suffix` such as `.me`.
fn is_mig_profile(profile: &str) -> bool {
    let Some((slices, rest)) = profile.split_once("g.") else {
        return false;
    };
    let memory = rest.split_once('.').map_or(rest, |(memory, _)| memory);
    let Some(memory_digits) = memory.strip_suffix("gb") else {
        return false;
    };
    let all_digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    all_digits(slices) && all_digits(memory_digits)
}

fn parse_item(input: &str, item: &str) -> Result<GpuRequest> {
    if item.is_empty() {
        return Err(invalid(input, item, "the request is empty"));
    }
    if let Some((resource, count)) = item.split_once('=') {
        let resource = resource.trim();
        let count = parse_count(input, count.trim())?;
        check_resource(input, resource)?;
        return Ok(GpuRequest {
            count,
            resource: resource.to_owned(),
            product: None,
            min_memory_gb: None,
            shm_size: None,
        });
    }
    let digits_end = item
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(item.len());
    let (count, rest) = if digits_end == 0 {
        (1, item)
    } else {
        let rest = item[digits_end..].trim_start();
        let Some(product) = rest.strip_prefix(['x', 'X']) else {
            return Err(invalid(
                input,
                item,
                "write the count as 4xA100 (a count, 'x', then the product)",
            ));
        };
        (parse_count(input, &item[..digits_end])?, product.trim())
    };
    let (product_name, memory) = match rest.split_once('-') {
        Some((product, memory)) => (product, Some(parse_memory(input, memory)?)),
        None => (rest, None),
    };
    let Some(product) = GpuProduct::from_name(product_name) else {
        let known: Vec<&str> = GpuProduct::ALL
            .iter()
            .map(|product| product.name())
            .collect();
        let problem = format!(
            "unknown gpu product; known products are {}",
            known.join(", ")
        );
        return Err(invalid(input, product_name, &problem));
    };
    Ok(GpuRequest {
        count,
        resource: product.vendor().default_resource().to_owned(),
        product: Some(product),
        min_memory_gb: memory,
        shm_size: None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compact_forms_parse() {
        type Case<'a> = (
            &'a str,
            u32,
            &'a str,
            Option<GpuProduct>,
            Option<u32>,
            Option<&'a str>,
        );
        let cases: &[Case] = &[
            (
                "4xA100-80GB",
                4,
                "nvidia.com/gpu",
                Some(GpuProduct::A100),
                Some(80),
                None,
            ),
            (
                "4xA100",
                4,
                "nvidia.com/gpu",
                Some(GpuProduct::A100),
                None,
                None,
            ),
            (
                "H100",
                1,
                "nvidia.com/gpu",
                Some(GpuProduct::H100),
                None,
                None,
            ),
            (
                "8Xmi300x",
                8,
                "amd.com/gpu",
                Some(GpuProduct::MI300X),
                None,
                None,
            ),
            ("nvidia.com/gpu=2", 2, "nvidia.com/gpu", None, None, None),
            ("amd.com/gpu=8", 8, "amd.com/gpu", None, None, None),
            (
                "gpu.intel.com/i915=1",
                1,
                "gpu.intel.com/i915",
                None,
                None,
                None,
            ),
            (
                "nvidia.com/mig-1g.10gb=1",
                1,
                "nvidia.com/mig-1g.10gb",
                None,
                None,
                None,
            ),
            (
                "2xL4,shm=16Gi",
                2,
                "nvidia.com/gpu",
                Some(GpuProduct::L4),
                None,
                Some("16Gi"),
            ),
            (
                " 2 x L4 , shm = 16Gi ",
                2,
                "nvidia.com/gpu",
                Some(GpuProduct::L4),
                None,
                Some("16Gi"),
            ),
            (
                "nvidia.com/gpu=1,mem=24gb",
                1,
                "nvidia.com/gpu",
                None,
                Some(24),
                None,
            ),
            (
                "A10G-24Gi",
                1,
                "nvidia.com/gpu",
                Some(GpuProduct::A10G),
                Some(24),
                None,
            ),
        ];
        for (input, count, resource, product, memory, shm) in cases {
            let request =
                GpuRequest::parse(input).unwrap_or_else(|error| panic!("{input}: {error}"));
            assert_eq!(request.count(), *count, "{input}");
            assert_eq!(request.resource(), *resource, "{input}");
            assert_eq!(request.product(), *product, "{input}");
            assert_eq!(request.min_memory_gb(), *memory, "{input}");
            assert_eq!(request.shm_size(), *shm, "{input}");
        }
    }

    #[test]
    fn bad_tokens_are_named_with_the_valid_forms() {
        let cases = [
            ("4xZ9000", "\"Z9000\""),
            ("0xA100", "\"0\""),
            ("4A100", "\"4A100\""),
            ("nvidia.com/gpu=two", "\"two\""),
            ("nvidia.com/gpu=0", "\"0\""),
            ("example.com/gpu=1", "\"example.com\""),
            ("nvidia.com/mig-big=1", "\"nvidia.com/mig-big\""),
            ("A100-80TB", "\"80TB\""),
            ("2xL4,shm=lots", "\"lots\""),
            ("2xL4,shm=0", "\"0\""),
            ("2xL4,color=red", "\"color=red\""),
            ("2xL4,shm=1Gi,shm=2Gi", "\"shm=2Gi\""),
            ("A100-80GB,mem=40GB", "\"mem=40GB\""),
            ("", "\"\""),
        ];
        for (input, token) in cases {
            let message = GpuRequest::parse(input).unwrap_err().to_string();
            assert!(
                message.contains(&format!("at {token}")),
                "{input}: {message}"
            );
            assert!(
                message.contains("4xA100-80GB"),
                "valid forms missing: {message}"
            );
        }
    }

    #[test]
    fn deserializes_from_a_string_field() {
        #[derive(Deserialize)]
        struct QueueConfig {
            gpu: GpuRequest,
        }
        let config: QueueConfig = serde_json::from_str(r#"{"gpu": "4xA100"}"#).unwrap();
        assert_eq!(
            config.gpu,
            GpuRequest::of_product(4, GpuProduct::A100).unwrap()
        );
        let error = serde_json::from_str::<QueueConfig>(r#"{"gpu": "4xA1000"}"#)
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(error.contains("unknown gpu product"), "{error}");
    }

    #[test]
    fn constructors_validate() {
        assert!(GpuRequest::of_resource(1, "nvidia.com/gpu").is_ok());
        assert!(GpuRequest::of_resource(1, "cpu").is_err());
        assert!(GpuRequest::of_product(0, GpuProduct::L4).is_err());
        assert!(
            GpuRequest::of_product(1, GpuProduct::L4)
                .unwrap()
                .with_shm_size("x")
                .is_err()
        );
    }

    pub(crate) fn any_request() -> impl Strategy<Value = GpuRequest> {
        let product = proptest::sample::select(GpuProduct::ALL.to_vec());
        let resource = proptest::sample::select(vec![
            "nvidia.com/gpu",
            "amd.com/gpu",
            "gpu.intel.com/i915",
            "nvidia.com/mig-1g.10gb",
            "nvidia.com/mig-3g.40gb",
        ]);
        let shm =
            proptest::option::of(proptest::sample::select(vec!["16Gi", "512Mi", "1G", "2e9"]));
        (
            1_u32..=64,
            proptest::option::of(product),
            resource,
            proptest::option::of(1_u32..=200),
            shm,
        )
            .prop_map(|(count, product, resource, memory, shm)| {
                let mut request = match product {
                    Some(product) => GpuRequest::of_product(count, product).unwrap(),
                    None => GpuRequest::of_resource(count, resource).unwrap(),
                };
                if let Some(memory) = memory {
                    request = request.with_min_memory_gb(memory).unwrap();
                }
                if let Some(shm) = shm {
                    request = request.with_shm_size(shm).unwrap();
                }
                request
            })
    }

    proptest! {
        #[test]
        fn display_parses_back(request in any_request()) {
            let text = request.to_string();
            prop_assert_eq!(GpuRequest::parse(&text).unwrap(), request);
        }

        #[test]
        fn parse_never_panics(input in "\\PC{0,24}") {
            let _ = GpuRequest::parse(&input);
        }
    }
}
