//! Sizes computed from user input: checked arithmetic that fails with a message stating the
//! limit (libtorch's sizes are i64, so nothing may exceed 2**63 − 1), and the check that a
//! buffer fits in this machine's physical memory, made before anything is allocated.

use crate::error::{Error, Result};

/// The error for a size `what` that does not fit in an i64.
pub fn too_large(what: &str) -> Error {
    Error::InvalidArgument(format!("{what} is too large: it exceeds 2**63 - 1 = {}", i64::MAX))
}

/// The product of `factors` (non-negative), or an error naming `what` when it exceeds 2**63 − 1.
pub fn product(factors: &[i64], what: &str) -> Result<i64> {
    factors.iter().try_fold(1i64, |acc, &f| acc.checked_mul(f)).ok_or_else(|| too_large(what))
}

/// The sum of `terms` (non-negative), or an error naming `what` when it exceeds 2**63 − 1.
pub fn sum(terms: &[i64], what: &str) -> Result<i64> {
    terms.iter().try_fold(0i64, |acc, &t| acc.checked_add(t)).ok_or_else(|| too_large(what))
}

/// Bytes of physical memory of this machine, or None where the system does not say.
pub fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf only reads a system setting; it has no preconditions.
    let (pages, page_size) =
        unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    u64::try_from(pages).ok()?.checked_mul(u64::try_from(page_size).ok()?)
}

/// `bytes` for people: "512 B", "1.5 GiB", "16.0 TiB".
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = None;
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = Some(u);
    }
    match unit {
        Some(u) => format!("{value:.1} {u}"),
        None => format!("{bytes} B"),
    }
}

/// Fails, before anything is allocated, when `elements` values of `elt_bytes` bytes each would
/// not fit in this machine's physical memory: the message says `what` needs how many bytes and
/// how many the machine has, then `hint` (what to do instead).
pub fn check_fits(elements: i64, elt_bytes: i64, what: &str, hint: &str) -> Result<()> {
    let bytes = product(&[elements, elt_bytes], &format!("the number of bytes of {what}"))?;
    check_bytes(bytes.unsigned_abs(), physical_memory(), what, hint)
}

/// [`check_fits`] against `available` bytes (None: unknown, everything passes).
fn check_bytes(bytes: u64, available: Option<u64>, what: &str, hint: &str) -> Result<()> {
    match available {
        Some(have) if bytes > have => Err(Error::InvalidArgument(format!(
            "{what} would need {bytes} bytes ({}) of memory, but this machine has {have} bytes ({}); {hint}",
            human(bytes),
            human(have)
        ))),
        _ => Ok(()),
    }
}

/// The short message of an allocation that failed in libtorch: the amount it asked for when
/// libtorch says (`tried to allocate N bytes` on the CPU, `Tried to allocate 4.00 GiB` on a GPU)
/// and, on the CPU, the physical memory of this machine.
pub fn out_of_memory_message(torch_message: &str) -> String {
    let lower = torch_message.to_ascii_lowercase(); // same byte offsets as the original
                                                    // libtorch's trace may name libtorch_cuda.so even for a CPU allocation: the CPU markers win.
    let on_cpu = lower.contains("cpuallocator") || lower.contains("alloc_cpu");
    let on_gpu = !on_cpu && (lower.contains("cuda") || lower.contains("hip"));
    let asked = lower.find("tried to allocate ").and_then(|at| {
        let mut words = torch_message[at + "tried to allocate ".len()..].split_whitespace();
        let (amount, unit) = (words.next()?, words.next()?.trim_end_matches('.'));
        Some(match (amount.parse::<u64>(), unit) {
            (Ok(bytes), "bytes") => format!("{bytes} bytes ({})", human(bytes)),
            _ => format!("{amount} {unit}"),
        })
    });
    let asked = asked.unwrap_or_else(|| "a buffer".to_string());
    if on_gpu {
        return format!(
            "out of GPU memory: libtorch could not allocate {asked}. Use smaller batches, less data \
             at once or a smaller model"
        );
    }
    let have = match physical_memory() {
        Some(bytes) => format!("; this machine has {bytes} bytes ({})", human(bytes)),
        None => String::new(),
    };
    format!(
        "out of memory: libtorch could not allocate {asked}{have}. Use smaller batches, less data \
         at once or a smaller model"
    )
}

/// True when a libtorch error message reports a failed allocation (CPU or CUDA).
pub fn is_allocation_failure(torch_message: &str) -> bool {
    ["can't allocate memory", "DefaultCPUAllocator", "out of memory"]
        .iter()
        .any(|needle| torch_message.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_and_sums_fail_past_the_i64_range_with_the_limit_in_the_message() {
        assert_eq!(product(&[3, 5, 7], "x").unwrap(), 105);
        assert_eq!(product(&[], "x").unwrap(), 1);
        assert_eq!(sum(&[i64::MAX - 1, 1], "x").unwrap(), i64::MAX);
        let msg = product(&[8, 1 << 62], "the weight").unwrap_err().to_string();
        assert!(msg.contains("the weight is too large") && msg.contains("2**63 - 1"), "{msg}");
        assert!(matches!(sum(&[i64::MAX, 1], "x"), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn buffers_larger_than_memory_are_refused_with_both_sizes() {
        assert!(check_bytes(10, Some(10), "a buffer", "hint").is_ok());
        assert!(check_bytes(10, None, "a buffer", "hint").is_ok());
        let msg = check_bytes(1 << 40, Some(1 << 30), "the parameters", "use fewer").unwrap_err().to_string();
        assert!(msg.contains("1099511627776 bytes (1.0 TiB)"), "{msg}");
        assert!(msg.contains("this machine has 1073741824 bytes (1.0 GiB); use fewer"), "{msg}");
        let have = physical_memory().expect("sysconf reports the physical memory on Linux");
        assert!(have >= 1 << 26, "{have} bytes");
        let msg = check_fits(1 << 60, 4, "the model", "smaller").unwrap_err().to_string();
        assert!(msg.contains(&format!("this machine has {have} bytes")), "{msg}");
        assert!(check_fits(1 << 62, 4, "the model", "").unwrap_err().to_string().contains("2**63 - 1"));
        assert!(check_fits(1000, 4, "the model", "").is_ok());
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(17_592_186_044_416), "16.0 TiB");
    }

    #[test]
    fn libtorch_allocation_failures_are_recognised_and_summarised() {
        let raw = "Internal torch error: [enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: \
                   can't allocate memory: you tried to allocate 17592186044416 bytes. Error code 12\n\
                   frame #3: <unknown function> + 0x1234 (0x7f in /torch/lib/libtorch_cuda.so)";
        assert!(is_allocation_failure(raw));
        assert!(!is_allocation_failure("Expected all tensors to be on the same device"));
        let msg = out_of_memory_message(raw);
        assert!(msg.starts_with("out of memory: libtorch could not allocate 17592186044416 bytes (16.0 TiB)"));
        assert!(!msg.contains("alloc_cpu") && msg.contains("; this machine has "), "{msg}");
        let cuda = "CUDA out of memory. Tried to allocate 4.00 TiB. GPU 0 has a total capacity of 139.80 GiB";
        assert!(is_allocation_failure(cuda));
        assert!(out_of_memory_message(cuda)
            .starts_with("out of GPU memory: libtorch could not allocate 4.00 TiB."));
        assert!(out_of_memory_message("CUDA error: out of memory").contains("allocate a buffer"));
    }
}
