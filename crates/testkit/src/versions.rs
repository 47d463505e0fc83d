//! Every pinned version of the test control plane, in one place.
//!
//! Bumping a version here changes the cache directory name, so the next
//! `cargo xtask cluster build` (or the first `rlaunch_testkit::cluster()` call) rebuilds.
//! The Go lock files live next to the crate in `assets/go/{k8s,kwok}/go.{mod,sum}`;
//! regenerate them with `go get -tool …@<version>` when moving a version.

/// `k8s.io/kubernetes` tag for kube-apiserver, kube-controller-manager and kube-scheduler.
pub const KUBERNETES: &str = "v1.35.4";
/// Minor version of [`KUBERNETES`], for the version ldflags.
pub const KUBERNETES_MINOR: &str = "35";
/// Release time of [`KUBERNETES`] (from the module proxy's `.info`), stamped as the build date.
pub const KUBERNETES_BUILD_DATE: &str = "2026-04-15T18:01:22Z";
/// `sigs.k8s.io/kwok` tag (needs Go >= 1.26).
pub const KWOK: &str = "v0.8.0";
/// etcd version shipped by the `etcd-bin-vendored-linux-amd64` crate (checked against `etcd --version`).
pub const ETCD: &str = "3.7.2";
/// Oldest Go toolchain that builds every pin (kwok v0.8.0 declares `go 1.26.0`).
pub const GO_MIN_MINOR: u32 = 26;
/// `github.com/google/go-containerregistry` tag of the test OCI registry and `crane`
/// ([`crate::servers::Registry`]; lock files in `assets/go/registry/`).
pub const GO_CONTAINERREGISTRY: &str = "v0.22.1";
/// `github.com/chainguard-dev/kaniko` tag (the maintained fork; upstream is archived) of
/// the Kaniko executor the real node's build Jobs run ([`crate::node::kaniko`]).
pub const KANIKO: &str = "v1.25.0";
/// moto (PyPI), whose server mode is the S3 test server.
pub const MOTO: &str = "5.2.5";
/// Azurite (npm), Microsoft's Azure Storage emulator.
pub const AZURITE: &str = "3.37.0";
/// fake-gcs-server (Go module proxy), the GCS test server.
pub const FAKE_GCS_SERVER: &str = "v1.56.1";
/// `github.com/kubeflow/training-operator` tag whose shipped CRDs the clusters install and
/// whose controller [`crate::operators`] runs (lock files in `assets/go/training-operator/`).
pub const TRAINING_OPERATOR: &str = "v1.8.1";
/// `sigs.k8s.io/jobset` tag whose shipped CRD the clusters install and whose controller
/// [`crate::operators`] runs (lock files in `assets/go/jobset/`).
pub const JOBSET: &str = "v0.10.1";
/// `sigs.k8s.io/kueue` tag of the Kueue controller manager ([`crate::operators`]; lock files
/// in `assets/go/kueue/`).
pub const KUEUE: &str = "v0.17.0";
/// `volcano.sh/apis` tag whose API types the Volcano CRD is generated from (lock files in
/// `assets/go/crds/`).
pub const VOLCANO_APIS: &str = "v1.13.0";
/// `sigs.k8s.io/controller-tools` tag of the `controller-gen` that generates it.
pub const CONTROLLER_TOOLS: &str = "v0.23.0";
/// Bump when the build recipe changes in a way that needs fresh binaries.
pub const RECIPE: u32 = 1;

/// Name of the cache directory for this set of pins: `$HOME/.cache/rlaunch/cluster/<this>/`.
pub fn cache_key() -> String {
    format!("k8s-{KUBERNETES}-kwok-{KWOK}-etcd-{ETCD}-r{RECIPE}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_lock_files_pin_the_same_versions() {
        let k8s = include_str!("../assets/go/k8s/go.mod");
        assert!(
            k8s.contains(&format!("k8s.io/kubernetes {KUBERNETES}")),
            "assets/go/k8s/go.mod does not require k8s.io/kubernetes {KUBERNETES}"
        );
        let staging = KUBERNETES.replacen("v1.", "v0.", 1);
        assert!(
            k8s.contains(&format!("k8s.io/api => k8s.io/api {staging}")),
            "staging replaces must point at {staging}"
        );
        assert!(KUBERNETES.starts_with(&format!("v1.{KUBERNETES_MINOR}.")));
        let kwok = include_str!("../assets/go/kwok/go.mod");
        assert!(kwok.contains(&format!("sigs.k8s.io/kwok {KWOK}")));
    }
}
