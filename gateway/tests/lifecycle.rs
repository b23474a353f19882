//! Stopping and upgrading a running gateway: SIGTERM drains, SIGQUIT plus a
//! new process started with `--upgrade` hands the listening sockets over.

mod support;

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{Gateway, get, signal_pid, try_get};
use testkit::Upstream;

/// The shared fixture with every pool on `pool`: acme is on shard-a.
fn snapshot(pool: &str) -> String {
    let pool = format!("\"{pool}\"");
    support::snapshot(1, &pool, &pool, &pool)
}

/// A process killed when the test ends, whatever happens.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_then_exits_0() {
    let slow = Upstream::builder()
        .name("slow")
        .delay(Duration::from_millis(700))
        .start()
        .unwrap();
    let mut gateway = Gateway::start(&snapshot(&slow.addr().to_string()), "");
    let addr = gateway.addr;
    let in_flight = std::thread::spawn(move || get(addr, "acme.app.example.test", "/").status);
    while slow.request_count() == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    gateway.signal("TERM");
    assert_eq!(in_flight.join().unwrap(), 200);
    gateway.terminate();
}

#[test]
fn graceful_upgrade_with_a_request_loop_refuses_no_connection() {
    let up = Upstream::echo("shard-a").unwrap();
    let mut old = Gateway::start(&snapshot(&up.addr().to_string()), "");
    let addr = old.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let load = std::thread::spawn(move || {
        let mut results = Vec::new();
        // Bounded in count and time; a new connection for every request.
        let started = Instant::now();
        while !flag.load(Ordering::Relaxed)
            && results.len() < 20_000
            && started.elapsed() < Duration::from_secs(60)
        {
            results.push(try_get(addr, "acme.app.example.test"));
            std::thread::sleep(Duration::from_millis(2));
        }
        results
    });

    std::thread::sleep(Duration::from_millis(300));
    let new = Reaped(old.spawn_upgrade());
    // The new process listens on the upgrade socket for the old one's fds.
    let sock = old.dir.path().join("upgrade.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "the new gateway never opened the upgrade socket"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    old.signal("QUIT");
    let status = old
        .wait_exit(Duration::from_secs(15))
        .expect("the old gateway did not exit after handing over");
    assert!(status.success(), "{status:?}");
    let served_before = up.request_count();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        up.request_count() > served_before,
        "nothing was served after the old process exited"
    );

    stop.store(true, Ordering::Relaxed);
    let results = load.join().unwrap();
    let failures: Vec<_> = results.iter().filter(|r| !matches!(r, Ok(200))).collect();
    assert!(
        results.len() > 100,
        "the loop barely ran: {}",
        results.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        results.len(),
        &failures[..failures.len().min(5)]
    );
    signal_pid(new.0.id(), "TERM");
}
