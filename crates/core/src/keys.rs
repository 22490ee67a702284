//! Keys built from client input (cache keys, their `Vary` variants): each
//! part is written with its length and with everything but printable ASCII
//! escaped, so the encoding is injective: two different sequences of parts
//! never give one key, whatever bytes a client sends.

use std::fmt::Write;

/// Append one part to `key`.
pub fn push_part(key: &mut String, bytes: &[u8]) {
    let _ = write!(key, "{}:", bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'%' || b == b' ' {
            key.push(b as char);
        } else {
            let _ = write!(key, "%{b:02X}");
        }
    }
}

/// The key of a sequence of parts.
pub fn encode<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut key = String::new();
    for p in parts {
        push_part(&mut key, p);
    }
    key
}

/// Split fuzz or test input into two sequences of parts (byte 0xFF ends a
/// part, 0xFE ends the first sequence) and check that equal keys mean equal
/// parts. `Err` names the colliding pair.
pub fn check_injective(data: &[u8]) -> Result<(), String> {
    let (a, b) = match data.iter().position(|&x| x == 0xFE) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let parts = |s: &[u8]| -> Vec<Vec<u8>> {
        if s.is_empty() {
            Vec::new()
        } else {
            s.split(|&x| x == 0xFF).map(<[u8]>::to_vec).collect()
        }
    };
    let (pa, pb) = (parts(a), parts(b));
    let (ka, kb) = (encode(pa.iter().map(Vec::as_slice)), encode(pb.iter().map(Vec::as_slice)));
    if ka == kb && pa != pb {
        return Err(format!("{pa:?} and {pb:?} both give {ka:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_strings_that_once_collided_do_not() {
        let a = encode([&b"/p?q|x-variant=evil"[..], b""]);
        let b = encode([&b"/p?q"[..], b"evil|x-variant="]);
        assert_ne!(a, b);
        assert_ne!(encode([&b"ab"[..], b"c"]), encode([&b"a"[..], b"bc"]));
        assert_ne!(encode([&b"\xff"[..]]), encode([&b"\xfe"[..]]));
        assert_eq!(encode([&b"a b%"[..]]), "4:a b%25");
    }

    /// Every input in the fuzz corpus keeps the property.
    #[test]
    fn the_fuzz_corpus_keeps_its_properties() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/cache_key");
        for entry in std::fs::read_dir(dir).expect("the corpus is in the repository") {
            let bytes = std::fs::read(entry.expect("a corpus entry").path()).expect("readable");
            assert_eq!(check_injective(&bytes), Ok(()));
        }
    }
}
