//! Checks on untrusted JSON before it is parsed.

/// Whether `text` nests arrays and objects deeper than `max`, found in one
/// pass without parsing (strings and their escapes are skipped).
pub fn deeper_than(text: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_containers_and_skips_strings() {
        assert!(!deeper_than(br#"{"a":[1,{"b":"[[[[\"{{{{"}]}"#, 3));
        assert!(deeper_than(br#"{"a":[1,{"b":[]}]}"#, 3));
        assert!(deeper_than("[".repeat(10_000).as_bytes(), 32));
        assert!(!deeper_than(b"\"\\\\\" []", 1));
    }
}
