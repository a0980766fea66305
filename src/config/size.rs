//! Docker-style sizes (`256m`, `1g`, binary units) and CPU counts.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use std::fmt;

/// A byte size, written in config as an integer (bytes) or a string with Docker's binary units:
/// `b`, `k`, `m`, `g`, `t` (optionally followed by `b`/`ib`), so `256m` = 256 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        if t.is_empty() {
            return Err("empty size".into());
        }
        let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(digits_end);
        if num.is_empty() {
            return Err(format!(
                "size {s:?} must start with a number, e.g. \"256m\""
            ));
        }
        let n: u64 = num
            .parse()
            .map_err(|_| format!("size {s:?} is too large"))?;
        let shift = match unit.trim() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            other => {
                return Err(format!(
                    "size {s:?} has unknown unit {other:?} (use b, k, m, g or t)"
                ));
            }
        };
        n.checked_mul(1u64 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }

    /// Human form in the largest binary unit that divides exactly (`256m`, `1g`, `1536k`).
    pub fn human(self) -> String {
        let units = [(40, "t"), (30, "g"), (20, "m"), (10, "k")];
        for (shift, u) in units {
            let unit = 1u64 << shift;
            if self.0 >= unit && self.0.is_multiple_of(unit) {
                return format!("{}{u}", self.0 / unit);
            }
        }
        format!("{}b", self.0)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.human())
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: bytes as an integer or a string like \"256m\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("size must not be negative, got {v}")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
                if v >= 0.0 && v.fract() == 0.0 && v < u64::MAX as f64 {
                    Ok(ByteSize(v as u64))
                } else {
                    Err(E::custom(format!(
                        "size must be a whole number of bytes, got {v}"
                    )))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A positive CPU count (`1`, `0.5`, `"1.5"`), stored as nano-CPUs as Docker wants them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cpus(pub u64);

impl Cpus {
    pub const NANOS: u64 = 1_000_000_000;

    pub fn from_f64(v: f64) -> Result<Self, String> {
        if !v.is_finite() || v <= 0.0 {
            return Err(format!("cpus must be a positive number, got {v}"));
        }
        if v > 4096.0 {
            return Err(format!("cpus {v} is not a plausible CPU count"));
        }
        let nanos = (v * Self::NANOS as f64).round() as u64;
        if nanos == 0 {
            return Err(format!("cpus {v} is too small"));
        }
        Ok(Cpus(nanos))
    }

    pub fn nano_cpus(self) -> u64 {
        self.0
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / Self::NANOS as f64
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_f64())
    }
}

impl Serialize for Cpus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Cpus;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive decimal CPU count, e.g. 1 or 0.5")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cpus, E> {
                Cpus::from_f64(v as f64).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cpus, E> {
                Cpus::from_f64(v as f64).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cpus, E> {
                Cpus::from_f64(v).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cpus, E> {
                let f: f64 = v
                    .trim()
                    .parse()
                    .map_err(|_| E::custom(format!("cpus {v:?} is not a decimal number")))?;
                Cpus::from_f64(f).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        let table = [
            ("0", 0),
            ("512", 512),
            ("512b", 512),
            ("1k", 1024),
            ("256m", 256 << 20),
            ("256M", 256 << 20),
            ("1g", 1 << 30),
            ("1gb", 1 << 30),
            ("2GiB", 2 << 30),
            (" 64m ", 64 << 20),
            ("1t", 1 << 40),
        ];
        for (s, want) in table {
            assert_eq!(ByteSize::parse(s), Ok(ByteSize(want)), "{s}");
        }
    }

    #[test]
    fn bad_sizes_are_refused() {
        for s in [
            "",
            "m",
            "-1m",
            "1.5g",
            "1x",
            "99999999999999999999",
            "16777216t",
        ] {
            assert!(ByteSize::parse(s).is_err(), "{s} should be refused");
        }
    }

    #[test]
    fn size_human_round_trips() {
        for s in ["256m", "1g", "1536k", "7b", "3t"] {
            let b = ByteSize::parse(s).unwrap();
            assert_eq!(b.human(), s);
            assert_eq!(ByteSize::parse(&b.human()), Ok(b));
        }
    }

    #[test]
    fn cpus_accept_positive_decimals_only() {
        assert_eq!(Cpus::from_f64(1.0), Ok(Cpus(1_000_000_000)));
        assert_eq!(Cpus::from_f64(0.5), Ok(Cpus(500_000_000)));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-12, 1e9] {
            assert!(Cpus::from_f64(bad).is_err(), "{bad}");
        }
        let c: Cpus = serde_json::from_str("\"1.5\"").unwrap();
        assert_eq!(c.nano_cpus(), 1_500_000_000);
        assert!(serde_json::from_str::<Cpus>("\"abc\"").is_err());
    }
}
