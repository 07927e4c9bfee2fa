//! Helpers the benches share (`mod common;` in each). Each bench uses only some of them.
#![allow(dead_code)]

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// User + system CPU of `pid` in clock ticks (10 ms on Linux).
pub fn cpu_ticks(pid: u32) -> u64 {
    stat_ticks(&format!("/proc/{pid}/stat"))
}

/// User + system CPU in clock ticks from a `/proc/.../stat` file (a process's or a thread's).
pub fn stat_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // After the `(comm)` field: state is field 3, utime 14 and stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(14) + get(15)
}

/// The command line's `--name value` pairs (a flag followed by another flag, like cargo bench's `--bench`, comes
/// with an empty value), for a bench to match the ones it knows.
pub fn flag_pairs() -> Vec<(String, String)> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut pairs = Vec::new();
    let mut i = 0;
    while i < argv.len() {
        match argv.get(i + 1).filter(|v| !v.starts_with("--")) {
            Some(value) => {
                pairs.push((argv[i].clone(), value.clone()));
                i += 2;
            }
            None => {
                pairs.push((argv[i].clone(), String::new()));
                i += 1;
            }
        }
    }
    pairs
}

/// A flag's value as a number, or a panic naming the flag.
pub fn number(flag: &str, value: &str) -> usize {
    value.parse().unwrap_or_else(|_| panic!("{flag} needs a number, got `{value}`"))
}
