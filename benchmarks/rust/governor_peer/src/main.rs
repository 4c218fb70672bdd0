// The Rust `governor` peer of benchmarks/limiter_bench.cc (run by scripts/bench-clock-peers.sh).
//
// Measures the same cases as sluice's limiter_bench, with governor's default clock (the CPU
// timestamp counter through `quanta`):
//   clock_read      one read of governor's DefaultClock
//   hot_key         check_key on one String key of a keyed limiter (limits so large every call admits)
//   hot_key_2t      the same from 2 threads on one shared limiter: wall time / calls of both threads,
//                   the figure Google Benchmark prints for ->Threads(2)->UseRealTime()
//   keys_1m         check_key over 1M distinct keys, already present, in a pseudo-random order
// Each case runs REPS repetitions (default 5) and prints the medians, one line per case:
//   <case> <wall_ns_per_op> <cpu_ns_per_op>
// (CPU time of the process, so a busy machine shows in the gap between the two.)
use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

const HOT_KEY: &str = "tenant-42:app-7";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn process_cpu_nanos() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

// Runs `run` (which performs `ops` operations) and returns (wall, cpu) nanoseconds per operation.
fn measure<F: FnMut()>(ops: u64, mut run: F) -> (f64, f64) {
    let cpu = process_cpu_nanos();
    let start = Instant::now();
    run();
    let wall = start.elapsed().as_nanos() as f64;
    (wall / ops as f64, (process_cpu_nanos() - cpu) / ops as f64)
}

fn report<F: FnMut() -> (f64, f64)>(name: &str, reps: usize, mut once: F) {
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let (w, c) = once();
        wall.push(w);
        cpu.push(c);
    }
    println!("{} {:.2} {:.2}", name, median(wall), median(cpu));
}

fn time_per_op<F: FnMut(u64)>(iters: u64, mut body: F) -> (f64, f64) {
    measure(iters, || {
        for i in 0..iters {
            body(i);
        }
    })
}

fn big_quota() -> Quota {
    // 1e9 a second with a burst of 1e9: every check admits (the common, slower path).
    let n = NonZeroU32::new(1_000_000_000).unwrap();
    Quota::per_second(n).allow_burst(n)
}

fn main() {
    let reps: usize = std::env::var("REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let iters: u64 = 20_000_000;

    let clock = DefaultClock::default();
    report("clock_read", reps, || {
        time_per_op(iters, |_| {
            black_box(clock.now());
        })
    });

    let limiter = RateLimiter::keyed(big_quota());
    let key = HOT_KEY.to_string();
    report("hot_key", reps, || {
        time_per_op(iters, |_| {
            black_box(limiter.check_key(&key).is_ok());
        })
    });

    let shared = Arc::new(RateLimiter::keyed(big_quota()));
    report("hot_key_2t", reps, || {
        measure(iters, || {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let l = Arc::clone(&shared);
                    std::thread::spawn(move || {
                        let key = HOT_KEY.to_string();
                        for _ in 0..iters / 2 {
                            black_box(l.check_key(&key).is_ok());
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
        })
    });

    let n: u64 = 1_000_000;
    let keys: Vec<String> = (0..n).map(|i| format!("tenant:{}", i * 7919 % n)).collect();
    // Mid-window for every key: 1e6 an hour, burst 1e6, as in BM_RateLimiter_1MKeys.
    let per_hour = Quota::per_hour(NonZeroU32::new(1_000_000).unwrap());
    let many = RateLimiter::keyed(per_hour);
    for k in &keys {
        let _ = many.check_key(k);
    }
    // A fixed pseudo-random order of 65536 indices (xorshift), as the C++ benchmark's order table.
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let order: Vec<usize> = (0..65536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n) as usize
        })
        .collect();
    report("keys_1m", reps, || {
        time_per_op(iters / 4, |i| {
            black_box(many.check_key(&keys[order[(i & 0xffff) as usize]]).is_ok());
        })
    });
}
