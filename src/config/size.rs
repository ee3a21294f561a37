//! Memory sizes as operators write them (`512M`, `2G`, `80%`, `max`) and as
//! the kernel stores them (bytes rounded down to a page, or `max`).
//!
//! Parsing is separate from resolving: a percentage means nothing until the
//! node's RAM is known, and the kernel keeps limits in whole pages, so a value
//! is only comparable with what `memory.max` reads back after both steps.

use std::fmt;

/// A size as written in slices.toml, before the node's RAM is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Bytes(u64),
    /// Hundredths of a percent of the node's RAM (`"12.5%"` is 1250).
    Percent(u32),
    Max,
}

/// A size the kernel can store: whole pages, or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Limit {
    Bytes(u64),
    Max,
}

pub const SIZE_FORMS: &str = "a size such as \"512M\", \"2G\", \"1T\" (K/M/G/T are powers of 1024), a byte count, \"80%\" of the node's RAM, or \"max\"";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a size: {reason}; expected {SIZE_FORMS}")]
pub struct SizeError {
    pub value: String,
    pub reason: &'static str,
}

impl Size {
    pub fn parse(text: &str) -> Result<Size, SizeError> {
        let fail = |reason| SizeError {
            value: text.to_string(),
            reason,
        };
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("max") || trimmed.eq_ignore_ascii_case("infinity") {
            return Ok(Size::Max);
        }
        if let Some(number) = trimmed.strip_suffix('%') {
            return parse_percent(number).map(Size::Percent).map_err(fail);
        }
        let (digits, shift) = match trimmed.char_indices().last() {
            Some((at, unit)) if unit.is_ascii_alphabetic() => {
                let shift = match unit.to_ascii_uppercase() {
                    'K' => 10,
                    'M' => 20,
                    'G' => 30,
                    'T' => 40,
                    _ => return Err(fail("unknown unit")),
                };
                (&trimmed[..at], shift)
            }
            _ => (trimmed, 0),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(fail("not a whole number"));
        }
        let number: u64 = digits.parse().map_err(|_| fail("too large"))?;
        number
            .checked_mul(1u64 << shift)
            .map(Size::Bytes)
            .ok_or_else(|| fail("too large"))
    }

    /// Bytes the kernel will actually store on a node with `node_memory`
    /// bytes of RAM and pages of `page_size` bytes.
    pub fn resolve(self, node_memory: u64, page_size: u64) -> Limit {
        let page = page_size.max(1);
        let round = |bytes: u64| Limit::Bytes(bytes / page * page);
        match self {
            Size::Max => Limit::Max,
            Size::Bytes(bytes) => round(bytes),
            Size::Percent(hundredths) => {
                let bytes = u128::from(node_memory) * u128::from(hundredths) / 10_000;
                round(u64::try_from(bytes).unwrap_or(u64::MAX))
            }
        }
    }
}

fn parse_percent(number: &str) -> Result<u32, &'static str> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) || fraction.len() > 2 {
        return Err("a percentage takes at most two decimals, like \"80%\" or \"12.5%\"");
    }
    let whole: u32 = whole.parse().map_err(|_| "percentage above 100")?;
    let fraction: u32 = format!("{fraction:0<2}").parse().unwrap_or(0);
    let hundredths = whole.saturating_mul(100).saturating_add(fraction);
    if hundredths > 10_000 {
        return Err("percentage above 100");
    }
    Ok(hundredths)
}

impl Limit {
    /// Reads a value as the kernel prints it in memory.max and its siblings.
    pub fn parse_kernel(text: &str) -> Option<Limit> {
        match text.trim() {
            "max" => Some(Limit::Max),
            other => other.parse().ok().map(Limit::Bytes),
        }
    }

    /// The exact text to write into a cgroup file.
    pub fn kernel_text(self) -> String {
        match self {
            Limit::Max => "max".to_string(),
            Limit::Bytes(bytes) => bytes.to_string(),
        }
    }

    pub fn bytes(self) -> Option<u64> {
        match self {
            Limit::Bytes(bytes) => Some(bytes),
            Limit::Max => None,
        }
    }
}

/// Human form for plans and status: `1.5G`, `512M`, `max`.
impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Limit::Max => f.write_str("max"),
            Limit::Bytes(bytes) => f.write_str(&human_bytes(bytes)),
        }
    }
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("T", 40), ("G", 30), ("M", 20), ("K", 10)];
    for (unit, shift) in UNITS {
        let scale = 1u64 << shift;
        if bytes >= scale {
            return if bytes % scale == 0 {
                format!("{}{unit}", bytes / scale)
            } else {
                // Precision loss is fine: this is for reading, not for writing.
                #[allow(clippy::cast_precision_loss)]
                let value = bytes as f64 / scale as f64;
                format!("{value:.1}{unit}")
            };
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_forms_operators_write() {
        assert_eq!(Size::parse("512M"), Ok(Size::Bytes(512 << 20)));
        assert_eq!(Size::parse("2G"), Ok(Size::Bytes(2 << 30)));
        assert_eq!(Size::parse("1t"), Ok(Size::Bytes(1 << 40)));
        assert_eq!(Size::parse("4096"), Ok(Size::Bytes(4096)));
        assert_eq!(Size::parse("max"), Ok(Size::Max));
        assert_eq!(Size::parse("80%"), Ok(Size::Percent(8000)));
        assert_eq!(Size::parse("12.5%"), Ok(Size::Percent(1250)));
        assert_eq!(Size::parse("100%"), Ok(Size::Percent(10_000)));
    }

    #[test]
    fn rejects_what_the_kernel_or_a_reader_would_misread() {
        for bad in [
            "",
            "M",
            "12X",
            "1.5G",
            "-1G",
            "101%",
            "1.234%",
            "ten",
            "99999999999T",
        ] {
            let err = Size::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("expected a size such as"), "{err}");
        }
    }

    #[test]
    fn resolves_percentages_against_ram_in_whole_pages() {
        let ram = 16u64 << 30;
        assert_eq!(
            Size::Percent(8000).resolve(ram, 4096),
            Limit::Bytes(13_743_894_528)
        );
        assert_eq!(Size::Bytes(5000).resolve(ram, 4096), Limit::Bytes(4096));
        assert_eq!(Size::Max.resolve(ram, 4096), Limit::Max);
    }

    #[test]
    fn kernel_text_round_trips() {
        for limit in [Limit::Max, Limit::Bytes(0), Limit::Bytes(1 << 30)] {
            assert_eq!(Limit::parse_kernel(&limit.kernel_text()), Some(limit));
        }
        assert_eq!(Limit::parse_kernel("max\n"), Some(Limit::Max));
        assert_eq!(Limit::parse_kernel("lots"), None);
    }

    #[test]
    fn human_form() {
        assert_eq!(human_bytes(512 << 20), "512M");
        assert_eq!(human_bytes(3 << 29), "1.5G");
        assert_eq!(human_bytes(100), "100B");
    }

    proptest! {
        #[test]
        fn resolved_sizes_are_page_aligned_and_never_exceed_the_request(
            bytes in 0u64..(1 << 50), page_shift in 12u32..17
        ) {
            let page = 1u64 << page_shift;
            match Size::Bytes(bytes).resolve(1 << 34, page) {
                Limit::Bytes(b) => {
                    prop_assert_eq!(b % page, 0);
                    prop_assert!(b <= bytes && bytes - b < page);
                }
                Limit::Max => prop_assert!(false, "bytes resolved to max"),
            }
        }

        #[test]
        fn unit_suffixes_multiply(n in 0u64..1_000_000, unit in 0usize..4) {
            let (suffix, shift) = [("K", 10), ("M", 20), ("G", 30), ("T", 40)][unit];
            let parsed = Size::parse(&format!("{n}{suffix}"));
            prop_assert_eq!(parsed, Ok(Size::Bytes(n << shift)));
        }
    }
}
