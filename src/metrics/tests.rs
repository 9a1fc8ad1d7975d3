use super::*;
use std::sync::Arc;

#[test]
fn sharded_sums_every_thread() {
    let traffic = Arc::new(Sharded::<Traffic>::new());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let t = traffic.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    let open = t.open();
                    t.meter().a_to_b().add(3);
                    t.meter().b_to_a().add(5);
                    drop(open);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("counting thread");
    }
    let open = traffic.open();
    open.failed();
    assert_eq!(
        traffic.totals(),
        TrafficTotals {
            total: 4001,
            active: 1,
            received_bytes: 12_000,
            sent_bytes: 20_000,
            failed: 1,
        }
    );
    drop(open);
    assert_eq!(traffic.totals().active, 0);
    Meter::NONE.a_to_b().add(7);
}

#[test]
fn histogram_is_cumulative() {
    let h = Sharded::<Histogram>::new();
    h.observe(Duration::from_micros(50));
    h.observe(Duration::from_millis(3));
    h.observe(Duration::from_secs(60));
    let t = h.totals();
    assert_eq!(t.count, 3);
    assert_eq!(t.cumulative[0], 1);
    assert_eq!(t.cumulative[5], 2, "{:?}", t.cumulative);
    assert_eq!(*t.cumulative.last().expect("buckets"), 2);
    assert!((t.sum_seconds - 60.00305).abs() < 1e-9, "{}", t.sum_seconds);
    let mut out = Exposition::new();
    out.family("x_seconds", Kind::Histogram, "waits");
    out.histogram("x_seconds", &[("service", "a")], &t);
    let text = out.finish();
    assert!(
        text.contains("x_seconds_bucket{service=\"a\",le=\"0.0001\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("x_seconds_bucket{service=\"a\",le=\"+Inf\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("x_seconds_count{service=\"a\"} 3\n"),
        "{text}"
    );
}

#[test]
fn exposition_escapes_labels_and_help() {
    let mut out = Exposition::new();
    out.family("porthole_x_total", Kind::Counter, "a \\ b\nc")
        .sample("porthole_x_total", &[("service", "q\"\\\n")], 7);
    out.single("porthole_y", Kind::Gauge, "y", 1.5);
    assert_eq!(
        out.finish(),
        "# HELP porthole_x_total a \\\\ b\\nc\n# TYPE porthole_x_total counter\n\
         porthole_x_total{service=\"q\\\"\\\\\\n\"} 7\n\
         # HELP porthole_y y\n# TYPE porthole_y gauge\nporthole_y 1.5\n"
    );
}

#[test]
fn by_label_counts_each_index() {
    let b = Sharded::<ByLabel<3>>::new();
    b.bump(0);
    b.bump(2);
    b.bump(2);
    b.bump(9);
    assert_eq!((b.get(0), b.get(1), b.get(2)), (1, 0, 2));
}

#[test]
fn proc_stat_parses_odd_command_names() {
    let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 \
                1000 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
    let u = process::parse_stat(stat, 100, 4096).expect("parses");
    assert_eq!(u.resident_bytes, 2048 * 4096);
    assert_eq!(u.virtual_bytes, 123_456_789);
    assert!((u.cpu_seconds - 3.0).abs() < 1e-9);
    assert_eq!(u.start_ticks, 1000);
    assert_eq!(
        process::boot_time("cpu 1 2\nbtime 1700000000\nprocesses 9\n"),
        Some(1_700_000_000)
    );
    let started = process::start_time();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        started <= now && started > now - 3600.0,
        "started {started}, now {now}"
    );
    assert_eq!(process::parse_stat("garbage", 100, 4096), None);
}

#[test]
fn process_metrics_are_written() {
    let mut out = Exposition::new();
    process::write(&mut out);
    let text = out.finish();
    for name in [
        "process_open_fds ",
        "process_resident_memory_bytes ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(name), "{name} missing from {text}");
    }
}
