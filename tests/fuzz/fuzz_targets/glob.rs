//! pi-init's modalias matcher (fnmatch without flags, written by hand to stay small)
//! against a slow, obviously right dynamic-programming reference: same answer for every
//! pattern and text. The input splits at its first NUL into pattern and text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pureboot_contract::modules_list::glob_match;

fuzz_target!(|data: &[u8]| {
    let (pattern, text) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    // The reference is quadratic in memory: keep it small.
    if pattern.len() > 200 || text.len() > 200 {
        return;
    }
    assert_eq!(
        glob_match(pattern, text),
        reference(pattern, text),
        "{:?} against {:?}",
        String::from_utf8_lossy(pattern),
        String::from_utf8_lossy(text)
    );
});

/// can[i][j]: pattern from i matches text from j. Classes and escapes are spelled out
/// here again rather than borrowed from the code under test.
fn reference(p: &[u8], t: &[u8]) -> bool {
    let mut can = vec![vec![false; t.len() + 1]; p.len() + 1];
    can[p.len()][t.len()] = true;
    for i in (0..p.len()).rev() {
        for j in (0..=t.len()).rev() {
            can[i][j] = if p[i] == b'*' {
                can[i + 1][j] || (j < t.len() && can[i][j + 1])
            } else if j == t.len() {
                false
            } else {
                match one(p, i, t[j]) {
                    Some(len) => can[i + len][j + 1],
                    None => false,
                }
            };
        }
    }
    can[0][0]
}

/// How many pattern bytes at `i` match the byte `c` (`None`: no match).
fn one(p: &[u8], i: usize, c: u8) -> Option<usize> {
    match p[i] {
        b'?' => Some(1),
        b'\\' if i + 1 < p.len() => (p[i + 1] == c).then_some(2),
        b'[' => {
            let body = &p[i + 1..];
            let negated = matches!(body.first(), Some(b'!' | b'^'));
            let mut k = usize::from(negated);
            // A `]` first is a member.
            let mut members = Vec::new();
            if body.get(k) == Some(&b']') {
                members.push(b']');
                k += 1;
            }
            while k < body.len() && body[k] != b']' {
                members.push(body[k]);
                k += 1;
            }
            if k >= body.len() {
                // Unclosed: a literal `[`.
                return (c == b'[').then_some(1);
            }
            let mut hit = false;
            let mut m = 0;
            while m < members.len() {
                if m + 2 < members.len() && members[m + 1] == b'-' {
                    hit |= members[m] <= c && c <= members[m + 2];
                    m += 3;
                } else {
                    hit |= members[m] == c;
                    m += 1;
                }
            }
            (hit != negated).then_some(k + 2)
        }
        lit => (lit == c).then_some(1),
    }
}
