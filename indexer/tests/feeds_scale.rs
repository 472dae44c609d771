//! The availability reader at a larger scale: duplicate detection on ordered and shuffled
//! input agrees with a plain hash set, and lenient mode keeps the first of each key.

use indexer::feeds::read_availability;
use std::collections::HashSet;
use std::fmt::Write;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn rows(rng: &mut Rng, n: usize, shuffled: bool) -> Vec<(u16, u32, char, u16)> {
    let mut v: Vec<(u16, u32, char, u16)> = (0..n)
        .map(|i| {
            let flight = 1 + (i / 300) as u16 % 9999;
            let day = 1 + (i / 10 % 30) as u32;
            let class = (b'A' + (i % 10) as u8) as char;
            (flight, day, class, (rng.next() % 1000) as u16)
        })
        .collect();
    // Some duplicates.
    for k in 0..n / 100 {
        let src = v[(k * 97) % n];
        v.push((src.0, src.1, src.2, (k % 5) as u16));
    }
    if shuffled {
        for i in (1..v.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    } else {
        v.sort_by_key(|r| (r.0, r.1, r.2));
    }
    v
}

#[test]
fn feeds_scale_availability_duplicates() {
    let mut rng = Rng(42);
    for shuffled in [false, true] {
        let v = rows(&mut rng, 60_000, shuffled);
        let mut text = String::from("carrier,flight_number,date,origin,booking_class,seats\n");
        for r in &v {
            let _ = writeln!(text, "XX,{},2005-06-{:02},RUN,{},{}", r.0, r.1, r.2, r.3);
        }
        let mut seen = HashSet::new();
        let expect: Vec<_> = v.iter().filter(|r| seen.insert((r.0, r.1, r.2))).collect();
        let p = read_availability("a.csv", text.as_bytes(), true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.rows.len(), expect.len());
        assert_eq!(p.skipped.rows, v.len() - expect.len());
        for (got, want) in p.rows.iter().zip(&expect) {
            assert_eq!(
                (got.flight_number, got.booking_class as char, got.seats),
                (want.0, want.2, want.3)
            );
        }
        assert!(read_availability("a.csv", text.as_bytes(), false).is_err());
    }
}
