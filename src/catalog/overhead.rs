//! Node overhead: what the kubelet, the OS and the hypervisor keep for themselves, so
//! that `allocatable` is what pods can actually request. The defaults reproduce
//! Karpenter's estimate for EKS AL2023 nodes with the default 20Gi root volume.

use crate::core::resources::Resources;

const MIB: i64 = 1 << 20;
const GIB: i64 = 1 << 30;

/// Overhead knobs. `Default` gives the EKS / Karpenter AL2023 defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct OverheadSettings {
    /// Fraction (not percent: 0.075 = 7.5%) of memory the hypervisor and firmware keep.
    /// Karpenter rounds this reservation up to a whole MiB.
    pub vm_memory_overhead_percent: f64,
    /// kube-reserved memory: this many MiB per pod of max-pods ...
    pub kube_reserved_memory_per_pod_mib: i64,
    /// ... plus this base.
    pub kube_reserved_memory_base_mib: i64,
    /// Hard eviction threshold `memory.available`.
    pub eviction_memory_mib: i64,
    pub system_reserved_cpu_milli: i64,
    pub system_reserved_memory_mib: i64,
    /// Memory Graviton (arm64) instances reserve for the kernel's contiguous memory
    /// allocator before anything else (Karpenter subtracts 64 MiB). Applied by the
    /// catalog loader before calling [`allocatable`].
    pub arm64_reserved_memory_mib: i64,
    /// Root volume size; it is the node's ephemeral-storage capacity.
    pub root_volume_bytes: i64,
    /// kube-reserved ephemeral-storage.
    pub kube_reserved_ephemeral_bytes: i64,
    pub system_reserved_ephemeral_bytes: i64,
    /// Hard eviction threshold `nodefs.available`, in percent of the root volume.
    pub eviction_nodefs_available_percent: f64,
}

impl Default for OverheadSettings {
    fn default() -> Self {
        OverheadSettings {
            vm_memory_overhead_percent: 0.075,
            kube_reserved_memory_per_pod_mib: 11,
            kube_reserved_memory_base_mib: 255,
            eviction_memory_mib: 100,
            system_reserved_cpu_milli: 0,
            system_reserved_memory_mib: 0,
            arm64_reserved_memory_mib: 64,
            root_volume_bytes: 20 * GIB,
            kube_reserved_ephemeral_bytes: GIB,
            system_reserved_ephemeral_bytes: 0,
            eviction_nodefs_available_percent: 10.0,
        }
    }
}

/// The kube-reserved CPU ladder EKS and Karpenter use: (from millicores, to millicores,
/// fraction reserved of that band). Each band's reservation is truncated to a whole
/// millicore, as Karpenter does.
const KUBE_RESERVED_CPU_LADDER: [(i64, i64, f64); 4] = [
    (0, 1000, 0.06),
    (1000, 2000, 0.01),
    (2000, 4000, 0.005),
    (4000, i64::MAX, 0.0025),
];

/// kube-reserved CPU, in millicores, for a node with `cpu_milli` millicores.
pub fn kube_reserved_cpu_milli(cpu_milli: i64) -> i64 {
    KUBE_RESERVED_CPU_LADDER
        .iter()
        .filter(|(start, _, _)| cpu_milli >= *start)
        .map(|&(start, end, fraction)| {
            let band = cpu_milli.min(end) - start;
            (band as f64 * fraction) as i64
        })
        .sum()
}

/// VM memory overhead, in MiB, for `memory_mib` of instance memory: Karpenter computes
/// `ceil(bytes * percent / 1024 / 1024)` in float64; this does the same.
pub fn vm_memory_overhead_mib(memory_mib: i64, percent: f64) -> i64 {
    ((memory_mib * MIB) as f64 * percent / 1024.0 / 1024.0).ceil() as i64
}

/// Allocatable cpu, memory, ephemeral-storage and pods of a node (no extended
/// resources; the loader adds those).
///
/// `memory_mib` is the memory the kernel can see: for arm64 types the loader passes the
/// instance memory minus [`OverheadSettings::arm64_reserved_memory_mib`]. Each component
/// is clamped at 0.
pub fn allocatable(
    vcpu: i64,
    memory_mib: i64,
    max_pods: i64,
    overhead: &OverheadSettings,
) -> Resources {
    let cpu_capacity = vcpu * 1000;
    let cpu =
        cpu_capacity - kube_reserved_cpu_milli(cpu_capacity) - overhead.system_reserved_cpu_milli;

    let after_vm =
        memory_mib - vm_memory_overhead_mib(memory_mib, overhead.vm_memory_overhead_percent);
    let kube_reserved_mib = overhead.kube_reserved_memory_per_pod_mib * max_pods
        + overhead.kube_reserved_memory_base_mib;
    let memory_alloc_mib = after_vm
        - kube_reserved_mib
        - overhead.system_reserved_memory_mib
        - overhead.eviction_memory_mib;

    let root = overhead.root_volume_bytes;
    let eviction_nodefs =
        (root as f64 / 100.0 * overhead.eviction_nodefs_available_percent).ceil() as i64;
    let ephemeral = root
        - overhead.kube_reserved_ephemeral_bytes
        - overhead.system_reserved_ephemeral_bytes
        - eviction_nodefs;

    Resources {
        cpu_milli: cpu.max(0),
        memory: memory_alloc_mib.max(0) * MIB,
        ephemeral: ephemeral.max(0),
        pods: max_pods.max(0),
        extended: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ladder_matches_eks() {
        assert_eq!(kube_reserved_cpu_milli(1000), 60);
        assert_eq!(kube_reserved_cpu_milli(2000), 70);
        assert_eq!(kube_reserved_cpu_milli(4000), 80);
        assert_eq!(kube_reserved_cpu_milli(8000), 90);
        // 96 vCPU: 80 + 92000 * 0.0025 = 310.
        assert_eq!(kube_reserved_cpu_milli(96_000), 310);
    }

    #[test]
    fn m5_large_matches_karpenter() {
        // m5.large: 2 vCPU, 8 GiB, 29 pods -> Karpenter shows 1930m, 6903Mi, 17Gi, 29.
        let a = allocatable(2, 8192, 29, &OverheadSettings::default());
        assert_eq!(a.cpu_milli, 1930);
        assert_eq!(a.memory, 6903 * MIB);
        assert_eq!(a.ephemeral, 17 * GIB);
        assert_eq!(a.pods, 29);
    }

    #[test]
    fn clamps_at_zero() {
        let o = OverheadSettings {
            eviction_memory_mib: 1 << 20,
            ..OverheadSettings::default()
        };
        assert_eq!(allocatable(1, 512, 4, &o).memory, 0);
    }
}
