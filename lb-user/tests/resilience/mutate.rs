//! Deterministic mutations of text seeds (configurations): line deletions and duplications,
//! value swaps between `key = value` lines, splices from other seeds, interesting tokens, byte
//! flips and truncations.
use crate::common::Rng;

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "[[",
    "]]",
    "\"",
    "'",
    "=",
    "\n",
    "#",
    "!",
    "0",
    "-1",
    "65536",
    "4294967296",
    "18446744073709551616",
    "1e309",
    "nan",
    "inf",
    "-0.0",
    "true",
    "\"\"",
    "\"198.18.0.1\"",
    "\"2001:db8::1\"",
    "\"198.18.0.0/33\"",
    "[global]",
    "[timeouts]",
    "[[virtual_server]]",
    "[[virtual_server.real_server]]",
    "[[vrrp_instance]]",
    "include",
    "virtual_server",
    "real_server",
    "vrrp_instance",
    "\u{0}",
    "\u{feff}",
    "é",
    "\\u0000",
];

fn pick<'a, T>(rng: &mut Rng, v: &'a [T]) -> &'a T {
    &v[rng.next() as usize % v.len()]
}

/// The value part of a `key = value` line, if it is one.
fn value_of(line: &str) -> Option<&str> {
    let (k, v) = line.split_once('=')?;
    (!k.trim().is_empty() && !k.contains('[')).then_some(v)
}

/// One mutant of `seeds[i]` (1-4 edits), as bytes (may not be UTF-8).
pub fn mutant(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let seed = pick(rng, seeds).clone();
    let text = String::from_utf8_lossy(&seed).into_owned();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let edits = 1 + rng.next() % 4;
    let mut bytes_edits = Vec::new();
    for _ in 0..edits {
        let n = lines.len().max(1);
        let i = rng.next() as usize % n;
        match rng.next() % 9 {
            0 if !lines.is_empty() => {
                lines.remove(i);
            }
            1 if !lines.is_empty() => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            2 => {
                // Swap the values of two `key = value` lines.
                let kv: Vec<usize> = (0..lines.len())
                    .filter(|&j| value_of(&lines[j]).is_some())
                    .collect();
                if kv.len() >= 2 {
                    let a = *pick(rng, &kv);
                    let b = *pick(rng, &kv);
                    let (va, vb) = (
                        value_of(&lines[a]).unwrap().to_string(),
                        value_of(&lines[b]).unwrap().to_string(),
                    );
                    let ka = lines[a].split_once('=').unwrap().0.to_string();
                    let kb = lines[b].split_once('=').unwrap().0.to_string();
                    lines[a] = format!("{ka}={vb}");
                    lines[b] = format!("{kb}={va}");
                }
            }
            3 => {
                // A line from another seed.
                let other = String::from_utf8_lossy(pick::<Vec<u8>>(rng, seeds)).into_owned();
                let ol: Vec<&str> = other.lines().collect();
                if !ol.is_empty() {
                    lines.insert(i.min(lines.len()), pick(rng, &ol).to_string());
                }
            }
            4 if !lines.is_empty() => {
                // A token inside a line.
                let l = &mut lines[i];
                let mut at = rng.next() as usize % (l.len() + 1);
                while !l.is_char_boundary(at) {
                    at -= 1;
                }
                l.insert_str(at, pick::<&str>(rng, TOKENS));
            }
            5 if !lines.is_empty() => {
                // Replace a value with a token.
                if let Some((k, _)) = lines[i].split_once('=') {
                    lines[i] = format!("{k}= {}", pick(rng, TOKENS));
                }
            }
            6 => bytes_edits.push(0),
            7 => bytes_edits.push(1),
            _ => {
                // Move a block of lines (sections out of order).
                if lines.len() > 4 {
                    let start = rng.next() as usize % (lines.len() - 2);
                    let len = 1 + rng.next() as usize % (lines.len() - start - 1).min(8);
                    let block: Vec<String> = lines.drain(start..start + len).collect();
                    let to = rng.next() as usize % (lines.len() + 1);
                    for (k, l) in block.into_iter().enumerate() {
                        lines.insert(to + k, l);
                    }
                }
            }
        }
    }
    let mut out = lines.join("\n").into_bytes();
    out.push(b'\n');
    for kind in bytes_edits {
        if out.is_empty() {
            break;
        }
        let at = rng.next() as usize % out.len();
        if kind == 0 {
            out[at] ^= 1 << (rng.next() % 8);
        } else {
            out.truncate(at);
        }
    }
    out
}
