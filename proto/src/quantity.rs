//! Quantities as operators write them: memory and disk (`"2048m"`, `"5g"`, `"16GB"`,
//! `"2.1g"`) and CPU cores (`"2"`, `"0.5"`).
//!
//! Units are binary (k = 1024). A bare memory or disk number means MiB, the unit game panels
//! use; `b` is needed for plain bytes. CPU is decimal cores, kept as millicores.

use std::fmt;

/// Why a quantity did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("is empty")]
    Empty,
    #[error("`{0}` is not a number with an optional unit (b, k, m, g, t)")]
    Syntax(String),
    #[error("`{0}` has an unknown unit (use b, k, m, g or t)")]
    Unit(String),
    #[error("`{0}` must be greater than zero")]
    Zero(String),
    #[error("`{0}` is too large")]
    TooLarge(String),
}

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub u64);

impl Bytes {
    pub const MIB: u64 = 1 << 20;
    pub const GIB: u64 = 1 << 30;

    /// Whole MiB, rounded down (what `SERVER_MEMORY` carries).
    pub fn mib(self) -> u64 {
        self.0 / Self::MIB
    }

    /// Whole MiB with an `m` suffix, as the spec writes memory: `"1024m"`.
    pub fn to_mib_string(self) -> String {
        format!("{}m", (self.0 + Self::MIB / 2) / Self::MIB)
    }

    /// Parses a memory or disk quantity. Zero is allowed here; limits reject it separately.
    pub fn parse(s: &str) -> Result<Bytes, QuantityError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(QuantityError::Empty);
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let mult: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "m" | "mb" | "mib" | "mi" => 1 << 20,
            "b" => 1,
            "k" | "kb" | "kib" | "ki" => 1 << 10,
            "g" | "gb" | "gib" | "gi" => 1 << 30,
            "t" | "tb" | "tib" | "ti" => 1 << 40,
            _ => return Err(QuantityError::Unit(s.to_owned())),
        };
        let value = parse_decimal(num).ok_or_else(|| QuantityError::Syntax(s.to_owned()))?;
        let bytes = value * mult as f64;
        // 64 TiB is far beyond any node this manages; it keeps arithmetic well inside u64.
        if !bytes.is_finite() || bytes > (64u64 << 40) as f64 {
            return Err(QuantityError::TooLarge(s.to_owned()));
        }
        Ok(Bytes(bytes.round() as u64))
    }
}

impl fmt::Display for Bytes {
    /// Compact form as the spec writes disk usage: `"300m"`, `"2.1g"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= Self::GIB {
            let g = b as f64 / Self::GIB as f64;
            let rounded = (g * 10.0).round() / 10.0;
            if rounded.fract() == 0.0 {
                write!(f, "{}g", rounded as u64)
            } else {
                write!(f, "{rounded:.1}g")
            }
        } else {
            write!(f, "{}m", (b + Self::MIB / 2) / Self::MIB)
        }
    }
}

/// CPU as thousandths of a core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MilliCpu(pub u32);

impl MilliCpu {
    /// Parses `"2"`, `"0.5"`, `"1.25"` (cores; at most 3 decimals, at most 1024 cores).
    pub fn parse(s: &str) -> Result<MilliCpu, QuantityError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(QuantityError::Empty);
        }
        if t.contains(|c: char| !(c.is_ascii_digit() || c == '.')) {
            return Err(QuantityError::Syntax(s.to_owned()));
        }
        let cores = parse_decimal(t).ok_or_else(|| QuantityError::Syntax(s.to_owned()))?;
        if cores > 1024.0 {
            return Err(QuantityError::TooLarge(s.to_owned()));
        }
        Ok(MilliCpu((cores * 1000.0).round() as u32))
    }

    /// Docker's `NanoCpus`.
    pub fn nano_cpus(self) -> i64 {
        i64::from(self.0) * 1_000_000
    }
}

/// `123`, `1.5`, `.5`; no signs, no exponents, one dot at most.
fn parse_decimal(s: &str) -> Option<f64> {
    if s.is_empty() || s == "." || s.matches('.').count() > 1 || s.len() > 32 {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_quantities() {
        assert_eq!(Bytes::parse("2048m").unwrap(), Bytes(2048 << 20));
        assert_eq!(Bytes::parse("5g").unwrap(), Bytes(5 << 30));
        assert_eq!(Bytes::parse("16GB").unwrap(), Bytes(16 << 30));
        assert_eq!(Bytes::parse("512").unwrap(), Bytes(512 << 20));
        assert_eq!(Bytes::parse("100b").unwrap(), Bytes(100));
        assert_eq!(Bytes::parse("1k").unwrap(), Bytes(1024));
        assert_eq!(Bytes::parse("2.5g").unwrap(), Bytes(5 << 29));
        assert_eq!(Bytes::parse("1Ti").unwrap(), Bytes(1 << 40));
        for bad in ["", " ", "g", "1.2.3m", "-1m", "1e9", "5x", "5 gigs", "1,5g"] {
            assert!(Bytes::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(matches!(
            Bytes::parse("100t"),
            Err(QuantityError::TooLarge(_))
        ));
    }

    #[test]
    fn formatting_is_compact() {
        assert_eq!(Bytes(1024 << 20).to_mib_string(), "1024m");
        assert_eq!(Bytes(1024 << 20).to_string(), "1g");
        assert_eq!(Bytes(1200 << 20).to_string(), "1.2g");
        assert_eq!(Bytes(300 << 20).to_string(), "300m");
        assert_eq!(Bytes(2048 << 20).to_string(), "2g");
        assert_eq!(Bytes((21 << 30) / 10).to_string(), "2.1g");
        assert_eq!(Bytes(0).to_string(), "0m");
    }

    #[test]
    fn cpu_quantities() {
        assert_eq!(MilliCpu::parse("2").unwrap(), MilliCpu(2000));
        assert_eq!(MilliCpu::parse("0.5").unwrap(), MilliCpu(500));
        assert_eq!(MilliCpu::parse("0.5").unwrap().nano_cpus(), 500_000_000);
        for bad in ["", "two", "-1", "1.2.3", "2000", "50%", "500m"] {
            assert!(MilliCpu::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
