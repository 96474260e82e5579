//! HVNCP protocol versions.

use core::fmt;

/// Protocol version carried in every HVNCP header. Only the major number must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version {
    /// Incompatible changes.
    pub major: u8,
    /// Compatible changes; informational.
    pub minor: u8,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_display() {
        assert_eq!(Version { major: 2, minor: 0 }.to_string(), "2.0");
        assert_eq!(
            Version {
                major: 255,
                minor: 17
            }
            .to_string(),
            "255.17"
        );
    }
}
